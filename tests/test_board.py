"""Board descriptions: parsing with errors that name the key, and the running board."""

import errno
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from amplink.app import demo
from amplink.board import Board, BoardError, load_board, parse_board
from amplink.board.system import make_rproc
from amplink.errors import AmplinkError
from amplink.firmware.demo import ECHO_SERVICE, RAW_SERVICE, SERVICES
from amplink.remoteproc.emulated import EmulatedPlatformDriver
from amplink.remoteproc.resources import Memory
from amplink.rpmsg.config import RpmsgLimits
from amplink.rpmsg.core import RpmsgBus
from resources import snapshot

MINIMAL = """
[board]
name = "mini"
[[mailbox]]
name = "mu"
[[core]]
name = "m4"
firmware = "amplink.firmware.demo"
mailbox = "mu"
"""


def test_default_board_has_an_imx_core_and_a_k3_core():
    spec = load_board()
    assert spec.name == "amplink-default" and spec.names() == ["m4", "r5f"]
    m4, r5f = spec.cores
    assert (m4.personality, m4.graceful_shutdown, m4.delivery) == ("imx", False, "thread")
    assert (r5f.personality, r5f.graceful_shutdown) == ("k3", True)
    assert m4.firmware == r5f.firmware == "amplink.firmware.demo"
    assert r5f.wiring().tx == 1 and r5f.wiring().host_irq == 34
    assert m4.memories[0].memory() == Memory("m4-dma", 0x0100_0000, 0x0010_0000)


def test_minimal_board_takes_the_documented_defaults():
    core = parse_board(MINIMAL).core("m4")
    assert (core.personality, core.tx, core.rx, core.rpmsg, core.recovery) == (
        "imx",
        0,
        0,
        "virtio",
        "enabled",
    )
    assert core.auto_boot and core.coredump == "disabled" and core.cpu is None
    assert core.limits == RpmsgLimits()


def test_limits_are_set_per_core_and_reach_its_rpmsg_drivers():
    spec = parse_board(_with_core_line("limits = { channels = 3, ttys = 0 }"))
    assert spec.core("m4").limits == RpmsgLimits(channels=3, ttys=0)
    assert make_rproc(spec.core("m4"), RpmsgBus()).rpmsg.limits.channels == 3


def _with_core_line(line: str) -> str:
    return MINIMAL + line + "\n"


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        (_with_core_line('firmwre = "x"'), "core 'm4'.firmwre", "did you mean 'firmware'"),
        (_with_core_line('tx = "0"'), "core 'm4'.tx", "expected an integer, got a string ('0')"),
        (_with_core_line("tx = 4"), "core 'm4'.tx", "expected 0..3, got 4"),
        (_with_core_line("auto_boot = 1"), "core 'm4'.auto_boot", "expected true or false"),
        (_with_core_line('personality = "omap"'), "core 'm4'.personality", "one of 'imx', 'k3'"),
        (_with_core_line('rpmsg = "smd"'), "core 'm4'.rpmsg", "'virtio', 'glink'"),
        (_with_core_line("limits = { chanels = 3 }"), "core 'm4'.limits.chanels",
         "did you mean 'channels'"),
        (_with_core_line("limits = { ttys = -1 }"), "core 'm4'.limits.ttys", "at least 0"),
        (_with_core_line('coredump = "yes"'), "core 'm4'.coredump", "'inline'"),
        (_with_core_line('memories = ["nope"]'), "core 'm4'.memories[0]", "'nope' is not defined"),
        (MINIMAL.replace('mailbox = "mu"\n', 'mailbox = "mu9"\n'), "core 'm4'.mailbox",
         "mailbox 'mu9' is not defined (defined: mu)"),
        (MINIMAL.replace('firmware = "amplink.firmware.demo"\n', ""), "core 'm4'.firmware",
         "required key is missing"),
        (MINIMAL.replace('name = "mini"', 'name = "2fast"'), "board.name", "not a usable name"),
        (MINIMAL + '[[core]]\nname = "m4"\nfirmware = "amplink.firmware.echo"\nmailbox = "mu"\n',
         "core 'm4'.name",
         "defined twice"),
        (MINIMAL + '[[core]]\nname = "a53"\nfirmware = "amplink.firmware.echo"\nmailbox = "mu"\n',
         "core 'a53'.mailbox", "mailbox 'mu' is already used by core 'm4'"),
        (MINIMAL.replace('name = "mu"', 'name = "mu"\nhost_irq = 33'), "mailbox 'mu'.host_irq",
         "core-exit line"),
        (MINIMAL.replace('name = "mu"', 'name = "mu"\nmodel = "rockchip"'),
         "mailbox 'mu'.model", "expected one of 'imx-mu'"),
        (MINIMAL.replace('name = "mu"', 'name = "mu"\nchannels = 2'), "mailbox 'mu'.channels",
         "an imx-mu has 4 channels, not 2"),
        (MINIMAL.replace('mailbox = "mu"\n', 'mailbox = "mu"\nmemories = ["big", "b2"]\n')
         + '[[memory]]\nname = "big"\nbase = 0x3000000\nsize = 0x200000\n'
         + '[[memory]]\nname = "b2"\nbase = 0x3100000\nsize = 0x1000\n',
         "core 'm4'.memories", "overlap"),
        (MINIMAL + "[extra]\n", "extra", "unknown key"),
        ("[board]\nname = 'x'\n", "core", "at least one [[core]]"),
        ("[board\n", "TOML", "Expected ']'"),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_what_is_expected(text, key, says):
    with pytest.raises(BoardError) as info:
        parse_board(text, "b.toml")
    assert info.value.errno == errno.EINVAL
    assert info.value.key == key, str(info.value)
    assert says in info.value.strerror and info.value.strerror.startswith("b.toml: ")


def test_cpu_must_be_one_this_process_may_run_on():
    cpus = sorted(os.sched_getaffinity(0))
    assert parse_board(MINIMAL + f"cpu = {cpus[-1]}\n").core("m4").cpu == cpus[-1]
    with pytest.raises(BoardError) as info:
        parse_board(MINIMAL + "cpu = 999\n", "b.toml")
    assert info.value.key == "core 'm4'.cpu"
    assert "expected one of" in info.value.strerror and "got 999" in info.value.strerror


def test_a_core_process_refused_its_cpu_says_so_in_one_line():
    """The host's board check stops this first; a core started by hand (or on a
    machine whose CPUs changed) ends with a clear error, not a traceback."""
    run = subprocess.run(
        [sys.executable, "-m", "amplink.remote", "--name", "m4", "--firmware", "x",
         "--boot-addr", "0", "--region-fd", "0", "--mmio-fd", "0", "--irq-fd", "0",
         "--peer-irq-fd", "0", "--table-da", "0", "--table-len", "0", "--cpu", "999"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "cannot run on CPU 999" in run.stderr and len(run.stderr.splitlines()) == 1


EMULATED = """
[board]
name = "emu"
[[memory]]
name = "ddr"
base = 0x5500_0000
size = 0x10_0000
[[memory]]
name = "tcm"
base = 0
size = 0x2_0000
[[mailbox]]
name = "mu"
core_irq = 97
[[core]]
name = "cm7"
platform = "emulated"
firmware = "rpmsg-lite-echo.elf"
mailbox = "mu"
memory_map = ["ddr", "tcm"]
"""


@pytest.fixture
def emu_dir(tmp_path):
    """A board file's folder holding the image EMULATED names (only its existence is
    checked at parse time), so these tests do not need ``make firmware``'s images."""
    (tmp_path / "rpmsg-lite-echo.elf").write_bytes(b"\x7fELF")
    return tmp_path


def test_an_emulated_core_takes_its_memory_map_and_cpu(emu_dir):
    core = parse_board(EMULATED, "emu.toml", emu_dir).core("cm7")
    assert core.emulated is not None
    assert core.firmware == str(emu_dir / "rpmsg-lite-echo.elf")
    (driver,) = core.platforms()
    assert isinstance(driver, EmulatedPlatformDriver)
    soc = driver.soc
    assert (soc.cpu, soc.mu_base) == ("cortex-m7", 0x30AB_0000)
    wiring = driver.wiring(core.rproc_config())  # what a boot wires: the MU's NVIC line
    assert (wiring.unit, wiring.core_irq) == ("mu", 97)
    assert [(w.name, w.da, w.size) for w in soc.windows] == [
        ("ddr", 0x5500_0000, 0x10_0000),
        ("tcm", 0, 0x2_0000),
    ]
    assert "cortex-m7, emulated" in core.describe()


@pytest.mark.parametrize(
    ("change", "key", "says"),
    [
        (('platform = "emulated"\n', ""), "core 'cm7'.memory_map",
         'only for a core with platform = "emulated"'),
        (('memory_map = ["ddr", "tcm"]', 'memory_map = ["ddr"]\nmemories = ["tcm"]'),
         "core 'cm7'.memories", "an emulated core's memory is its memory_map"),
        (("core_irq = 97", "core_irq = 240"), "mailbox 'mu'.core_irq", "lines 0..239"),
        (("size = 0x2_0000", "size = 0x2_0100"), "core 'cm7'.memory_map", "aligned to 4 KiB"),
        (("base = 0\n", "base = 0x5500_8000\n"), "core 'cm7'.memory_map", "overlap"),
        (('memory_map = ["ddr", "tcm"]', 'memory_map = ["ddr", "itcm"]'),
         "core 'cm7'.memory_map[1]", "memory 'itcm' is not defined"),
        (('platform = "emulated"', 'platform = "emulated"\ncpu_model = "cortex-a53"'),
         "core 'cm7'.cpu_model", "'cortex-m7'"),
    ],
)  # fmt: skip
def test_emulated_core_errors_name_the_key(change, key, says, emu_dir):
    with pytest.raises(BoardError) as info:
        parse_board(EMULATED.replace(*change), "emu.toml", emu_dir)
    assert info.value.key == key, str(info.value)
    assert says in info.value.strerror


def test_memory_must_fit_the_cores_memory():
    text = MINIMAL.replace('mailbox = "mu"\n', 'mailbox = "mu"\nmemories = ["m"]\n')
    text += "memory_size = 0x100000\n[[memory]]\nname = 'm'\nbase = 0xff000\nsize = 0x2000\n"
    with pytest.raises(BoardError, match=r"ends at 0x101000, beyond the core's memory_size"):
        parse_board(text)


def test_memory_is_bounded_by_what_a_resource_table_can_describe():
    """A carveout's da and len are 32-bit: a core has at most 4 GiB of device memory."""
    core = MINIMAL.replace('mailbox = "mu"\n', 'mailbox = "mu"\nmemory_size = 1000000000000000\n')
    with pytest.raises(BoardError) as info:
        parse_board(core, "big.toml")
    assert info.value.strerror == (
        "big.toml: core 'm4'.memory_size: must be at most 0x100000000 (4 GiB: a resource "
        "table's carveout da and len are 32-bit), got 1000000000000000 (0x38d7ea4c68000)"
    )
    exact = MINIMAL.replace('mailbox = "mu"\n', 'mailbox = "mu"\nmemory_size = 0x100000000\n')
    assert parse_board(exact).cores[0].memory_size == 1 << 32
    far = MINIMAL + "[[memory]]\nname = 'm'\nbase = 0xffffff00\nsize = 0x200\n"
    with pytest.raises(BoardError, match=r"memory 'm'.size: the memory ends at 0x100000100, "):
        parse_board(far)


def test_firmware_references_follow_one_rule_and_must_exist(tmp_path):
    """A dotted name is a module; a path or a name ending in .py/.elf is a file, taken
    from the board file's folder; a missing one is an error naming what and where."""
    (tmp_path / "fw.py").write_text("def main(core):\n    core.run()\n")
    board = tmp_path / "b.toml"
    for firmware, expect in [
        ("amplink.firmware.echo", "amplink.firmware.echo"),
        ("fw.py", str(tmp_path / "fw.py")),
        ("./fw.py", str(tmp_path / "fw.py")),
    ]:
        board.write_text(MINIMAL.replace("amplink.firmware.demo", firmware))
        assert load_board(board).cores[0].firmware == expect
    for firmware, says in [
        ("does_not_exist.elf", f"firmware file {tmp_path}/does_not_exist.elf not found"),
        ("no.such.module", "firmware module 'no.such.module' not found"),
        ("sub/x.py", f"firmware file {tmp_path}/sub/x.py not found"),
    ]:
        board.write_text(MINIMAL.replace("amplink.firmware.demo", firmware))
        with pytest.raises(BoardError) as info:
            load_board(board)
        assert info.value.key == "core 'm4'.firmware" and says in str(info.value)


def test_a_bare_elf_name_is_looked_up_on_the_firmware_search_path(tmp_path, monkeypatch):
    """A bare ``*.elf`` name not in the board file's folder is found on
    AMPLINK_FIRMWARE_PATH (as request_firmware searches /lib/firmware); one in the folder
    wins; one that is nowhere names the search path."""
    shelf, here = tmp_path / "shelf", tmp_path / "here"
    shelf.mkdir()
    here.mkdir()
    (shelf / "fw.elf").write_bytes(b"\x7fELF")
    monkeypatch.setenv("AMPLINK_FIRMWARE_PATH", str(shelf))
    monkeypatch.setenv("AMPLINK_FIRMWARE_CACHE", str(tmp_path / "no-builds"))
    board = here / "b.toml"
    board.write_text(MINIMAL.replace("amplink.firmware.demo", "fw.elf"))
    assert load_board(board).cores[0].firmware == str(shelf / "fw.elf")
    (here / "fw.elf").write_bytes(b"\x7fELF")
    assert load_board(board).cores[0].firmware == str(here / "fw.elf")
    board.write_text(MINIMAL.replace("amplink.firmware.demo", "other.elf"))
    with pytest.raises(BoardError, match=rf"nor on the firmware search path \({shelf};"):
        load_board(board)


def test_a_relative_board_path_still_names_the_firmware_absolutely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("b.toml").write_text(MINIMAL.replace("amplink.firmware.demo", "absent.elf"))
    with pytest.raises(BoardError) as info:
        load_board("b.toml")
    assert f"firmware file {tmp_path}/absent.elf not found (given as 'absent.elf')" in str(
        info.value
    )


def test_a_board_file_that_is_not_text_is_a_clear_error():
    with pytest.raises(BoardError, match="not a text file"):
        load_board("/bin/ls")


def test_missing_board_file_is_a_clear_error(tmp_path):
    with pytest.raises(AmplinkError) as info:
        load_board(tmp_path / "nope.toml")
    assert info.value.errno == errno.ENOENT and "nope.toml" in str(info.value)


def test_default_board_runs_and_releases_everything():
    before = snapshot()
    board = Board(load_board())
    for rp in board.cores.values():
        rp.spin = False  # every message needs its kick: the wiring must be right
    board.start()
    try:
        for name in board.cores:
            board.wait_channels(name, SERVICES)
        names = {t.name for t in threading.enumerate()}
        # m4 on MU channel 0 and line 32; r5f on channel 1 and line 34, as the file says
        assert "irq/32-m4-mu-m4a_chan[1-0]" in names
        assert "irq/34-r5f-mu-r5fa_chan[1-1]" in names
        for name in board.cores:
            with board.core(name).wait_channel(ECHO_SERVICE, 10).create_ept() as ept:
                for i in range(20):
                    ept.send(b"%d" % i)
                    assert ept.recv(10).data == b"%d" % i
        m4 = {s.name: s for s in board.status()}["m4"]
        assert m4.state == "running" and m4.channels == tuple(sorted(SERVICES))
        assert m4.messages_out >= 20 and m4.messages_in >= 20 + len(SERVICES)
        assert m4.tty is not None and m4.tty.startswith("/dev/pts/")
        raw = [f for f in board.files.files.values() if f.ept.link is board.core("r5f").link]
        raw[0].write(b"abc")
        assert raw[0].read(timeout=10) == b"ABC"
        board.core("r5f").shutdown()
        board.core("m4").shutdown()
        assert board.core("r5f").last_stop == "graceful shutdown"  # k3: the handshake
        assert board.core("m4").last_stop == "reset"  # imx: no handshake on this platform
    finally:
        board.stop()
    assert snapshot() == before
    with pytest.raises(AmplinkError, match="was stopped"):
        board.start()


def test_failed_start_stops_the_cores_already_running(tmp_path):
    bad = tmp_path / "broken.elf"
    bad.write_bytes(b"\x7fELF but nothing else")  # there, so the board loads; boots fail
    text = MINIMAL + f'[[mailbox]]\nname = "mu2"\n[[core]]\nname = "r5"\nfirmware = "{bad}"\n'
    text += 'mailbox = "mu2"\n'
    before = snapshot()
    board = Board(parse_board(text))
    with pytest.raises(AmplinkError):
        board.start()
    assert board.core("m4").state == "offline"
    assert snapshot() == before


def test_unknown_core_lists_the_cores():
    board = Board(load_board())
    try:
        with pytest.raises(
            AmplinkError, match=r"no core 'x' \(cores: m4, r5f, or remoteproc0..1\)"
        ):
            board.core("x")
    finally:
        board.stop()


def test_auto_boot_false_leaves_a_core_offline():
    text = MINIMAL + "auto_boot = false\n"
    with Board(parse_board(text)) as board:
        assert board.core("m4").state == "offline"
        assert board.status()[0].channels == ()
        board.core("m4").start()
        board.wait_channels("m4", (RAW_SERVICE,))


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_examples_default_board_is_the_built_in_one():
    example = load_board(EXAMPLES / "default.toml")
    assert replace(example, source="") == replace(load_board(), source="")


def test_four_core_example_runs_the_demo(capsys):
    spec = load_board(EXAMPLES / "four-cores.toml")
    assert [(c.name, c.personality, c.rpmsg, c.delivery) for c in spec.cores] == [
        ("m7", "imx", "virtio", "thread"),
        ("m4", "imx", "virtio", "workqueue"),
        ("r5f", "k3", "virtio", "thread"),
        ("dsp", "k3", "glink", "thread"),
    ]
    before = snapshot()
    result = demo.run(spec)
    assert [r.messages for r in result.cores] == [496, 496, 496, 503]
    shown = {r.name: (r.shown, r.final) for r in result.cores}
    assert shown["r5f"] == ("stop: graceful shutdown", "offline")
    assert shown["m7"] == ("crash, recovered", "running")
    assert snapshot() == before


def test_sensor_firmware_example():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import sensor_fw  # noqa: PLC0415
        import sensor_host  # noqa: PLC0415
    finally:
        sys.path.remove(str(EXAMPLES))
    samples = sensor_host.main()
    assert [seq for seq, _ in samples] == [1, 2, 3, 4, 5, 6]  # one read, then a stream of 5
    assert [sensor_fw.SAMPLE.pack(*s) for s in samples] == [
        sensor_fw.sample(i) for i in range(1, 7)
    ]
