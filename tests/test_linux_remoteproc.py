"""amplink.linux's remoteproc part against a directory tree laid out like the kernel's
documented sysfs and debugfs ABI (no real remote processor exists here): the paths, the
words written, and how a refused write is reported."""

from __future__ import annotations

import errno

import pytest

from amplink.errors import AmplinkError
from amplink.linux import RemoteProc, remote_procs


@pytest.fixture
def tree(tmp_path):
    sysfs, debugfs = tmp_path / "sys", tmp_path / "debug"
    for i, (name, state) in enumerate((("m4", "offline"), ("r5f", "running"))):
        d = sysfs / "class/remoteproc" / f"remoteproc{i}"
        d.mkdir(parents=True)
        for attr, value in (("name", name), ("state", state), ("firmware", f"{name}.elf"),
                            ("recovery", "enabled"), ("coredump", "disabled")):  # fmt: skip
            (d / attr).write_text(value + "\n")
        g = debugfs / "remoteproc" / f"remoteproc{i}"
        g.mkdir(parents=True)
        (g / "trace0").write_text(f"{name} booted\n")
        (g / "trace1").write_text("second\n")
        (g / "crash").write_text("")
        (g / "resource_table").write_text("Entry 0 is of type vdev\n")
    (sysfs / "class/remoteproc/unrelated").mkdir()
    return str(sysfs), str(debugfs), sysfs / "class/remoteproc"


def test_lists_and_reads(tree):
    sysfs, debugfs, _ = tree
    procs = remote_procs(sysfs, debugfs)
    assert [(p.index, p.name, p.state, p.firmware) for p in procs] == [
        (0, "m4", "offline", "m4.elf"),
        (1, "r5f", "running", "r5f.elf"),
    ]
    assert procs[0].recovery == "enabled" and procs[0].coredump == "disabled"
    assert procs[1].traces() == [0, 1]
    assert procs[1].trace(0) == "r5f booted"
    assert "vdev" in procs[1].resource_table()


def test_writes_go_to_the_documented_files(tree):
    sysfs, debugfs, root = tree
    rp = RemoteProc(0, sysfs=sysfs, debugfs=debugfs)
    rp.firmware = "new.elf"
    assert (root / "remoteproc0/firmware").read_text() == "new.elf"
    rp.start()
    assert (root / "remoteproc0/state").read_text() == "start"
    rp.stop()
    assert (root / "remoteproc0/state").read_text() == "stop"
    rp.recovery = "disabled"
    rp.coredump = "inline"
    assert (root / "remoteproc0/recovery").read_text() == "disabled"
    assert (root / "remoteproc0/coredump").read_text() == "inline"
    rp.crash(2)
    assert (rp.debug_dir / "crash").read_text() == "2"


def test_bad_values_and_refusals_are_clear_errors(tree):
    sysfs, debugfs, root = tree
    rp = RemoteProc(1, sysfs=sysfs, debugfs=debugfs)
    with pytest.raises(AmplinkError) as exc:
        rp.recovery = "sometimes"
    assert exc.value.errno == errno.EINVAL and "enabled, disabled, recover" in str(exc.value)
    with pytest.raises(AmplinkError) as exc:
        rp.firmware = ""
    assert exc.value.errno == errno.EINVAL
    (root / "remoteproc1/coredump").unlink()
    (root / "remoteproc1/coredump").mkdir()  # a write the "kernel" refuses
    with pytest.raises(AmplinkError) as exc:
        rp.coredump = "enabled"
    assert exc.value.errno == errno.EISDIR and "remoteproc1/coredump" in str(exc.value)
    with pytest.raises(AmplinkError) as exc:
        rp.trace(7)
    assert exc.value.errno == errno.ENOENT
    with pytest.raises(AmplinkError) as exc:
        RemoteProc(9, sysfs=sysfs, debugfs=debugfs)
    assert exc.value.errno == errno.ENODEV


def test_no_remoteproc_class(tmp_path):
    assert remote_procs(str(tmp_path), str(tmp_path)) == []
