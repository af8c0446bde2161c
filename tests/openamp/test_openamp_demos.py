"""amplink against OpenAMP's own demo applications, unmodified, built from the pinned
sources by ``tools/openamp/build-demos.sh`` and run as real processes (each isolated
in a private mount namespace where its hard-coded ``/dev/shm/openamp.shm`` and
``/tmp/openamp.event.0`` are amplink's, so runs never collide).

amplink as the host: ``rpmsg-echo`` (every size 1..496, every byte), ``rpmsg-nocopy-echo``
and ``matrix_multiplyd`` (the products checked).  amplink as the remote:
``rpmsg-sample-ping``, ``rpmsg-nocopy-ping`` and ``rpmsg-echo-ping``, whose own success
output is checked.  Each in both socket arrangements, plus a peer killed mid-traffic on
either side and met again.  Run with ``make test-openamp`` (``pytest --openamp``).
"""

from __future__ import annotations

import errno
import os
import random
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from amplink.app.openamp import echo_payload
from amplink.errors import RpmsgError
from amplink.host import OpenAmpRemote
from amplink.remote.openamp import OpenAmpHostDevice
from amplink.remoteproc.fwref import resolve
from amplink.rpmsg.core import announce
from amplink.transport.openamp_peer import PeerProcess, demo_argv, find_demos
from amplink.wire import openamp_linux as ol
from kept_host import KeptHost
from resources import snapshot
from rpmsg_helpers import Traffic
from waiting import wait_for

pytestmark = [pytest.mark.openamp, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools/openamp/build-demos.sh"
SERVICE = "rpmsg-openamp-demo-channel"
TIMEOUT = 30.0
ARRANGEMENTS = pytest.mark.parametrize(
    "amplink_server", [False, True], ids=["demo-serves", "amplink-serves"]
)


@pytest.fixture(scope="session")
def demos() -> Path:
    found = find_demos()
    if found is None:
        subprocess.run(["bash", str(BUILD)], check=True, stdout=subprocess.DEVNULL)
        found = find_demos()
    assert found is not None, "tools/openamp/build-demos.sh built no demos"
    return found


def role_args(demo_serves: bool) -> list[str]:
    """A demo's argv[1]: 0 (the default) makes it the socket server, 1 the client."""
    return [] if demo_serves else ["1"]


def amplink_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amplink.app.cli", "openamp", *args],
        capture_output=True, text=True, timeout=TIMEOUT * 4, check=False,
    )  # fmt: skip


# -- amplink as the host -------------------------------------------------------------
@ARRANGEMENTS
def test_host_echo_check_against_rpmsg_echo(demos: Path, amplink_server: bool) -> None:
    before = snapshot()
    role = ["--server"] if amplink_server else ["--client"]
    run = amplink_cli(
        "host", *role, "--", *demo_argv(demos, "rpmsg-echo", *role_args(not amplink_server))
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "echo check passed: 496 messages of 1..496 bytes, every byte compared" in run.stdout
    assert "exited with 0" in run.stdout
    assert snapshot()["shm"] == before["shm"]


def started(demos: Path, name: str, amplink_server: bool) -> OpenAmpRemote:
    rp = OpenAmpRemote(
        server=amplink_server,
        command=demo_argv(demos, name, *role_args(not amplink_server)),
        send_timeout=TIMEOUT,
    )
    rp.start(TIMEOUT)
    return rp


def goodbye(rp: OpenAmpRemote, ept_addr: int) -> int | None:
    """End the demo as OpenAMP's hosts do (name-service destroy); its exit status."""
    assert rp.link is not None and rp.peer is not None
    announce(rp.link, SERVICE, ept_addr, destroy=True)
    assert rp.shutdown(TIMEOUT), "the demo did not close its socket after the goodbye"
    return rp.peer.returncode


@ARRANGEMENTS
def test_host_against_rpmsg_nocopy_echo(demos: Path, amplink_server: bool) -> None:
    rp = started(demos, "rpmsg-nocopy-echo", amplink_server)
    try:
        ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
        for size in range(1, 497):
            data = echo_payload(size)
            ept.send(data)
            assert ept.recv(timeout=TIMEOUT).data == data
        assert goodbye(rp, ept.addr) == 0
    finally:
        rp.stop()


MATRIX = struct.Struct("=I36I")  # {u32 size; u32 elements[6][6]}


@ARRANGEMENTS
def test_host_against_matrix_multiplyd(demos: Path, amplink_server: bool) -> None:
    rng = random.Random(19)
    rp = started(demos, "matrix_multiplyd", amplink_server)
    try:
        ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
        for n in (1, 3, 6):
            a = [[rng.randrange(1000) for _ in range(6)] for _ in range(6)]
            b = [[rng.randrange(1000) for _ in range(6)] for _ in range(6)]
            flat = [x for m in (a, b) for row in m for x in row]
            ept.send(MATRIX.pack(n, *flat[:36]) + MATRIX.pack(n, *flat[36:]))
            got = MATRIX.unpack(ept.recv(timeout=TIMEOUT).data)
            want = [
                sum(a[i][k] * b[k][j] for k in range(n)) if i < n and j < n else 0
                for i in range(6)
                for j in range(6)
            ]
            assert got == (n, *want)
        assert goodbye(rp, ept.addr) == 0
    finally:
        rp.stop()


def test_host_meets_a_killed_remote_again(demos: Path) -> None:
    rp = started(demos, "rpmsg-echo", False)
    try:
        ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
        traffic = Traffic(ept, b"y" * 100, TIMEOUT)
        time.sleep(0.2)  # traffic flows; the kill lands mid-traffic
        assert rp.peer is not None and rp.peer.proc is not None
        rp.peer.proc.kill()
        errors = traffic.join(TIMEOUT)
        assert errors and errors[0].errno == errno.EPIPE, errors
        assert not rp.bus.devices(SERVICE)
        with pytest.raises(RpmsgError) as dead:
            ept.send(b"after")
        assert dead.value.errno == errno.EPIPE
        rp.stop()
        rp.start(TIMEOUT)  # a restarted rpmsg-echo
        ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
        ept.send(b"again")
        assert ept.recv(timeout=TIMEOUT).data == b"again"
        assert goodbye(rp, ept.addr) == 0
    finally:
        rp.stop()


# -- amplink as the remote -----------------------------------------------------------
@ARRANGEMENTS
@pytest.mark.parametrize(
    ("demo", "firmware", "success"),
    [
        ("rpmsg-sample-ping", "amplink.firmware.client_sample", "rpmsg sample test end"),
        ("rpmsg-nocopy-ping", "amplink.firmware.echo", "Echo test end"),
        ("rpmsg-echo-ping", "amplink.firmware.echo", "Echo test end"),
    ],
)
def test_remote_against_host_demo(
    demos: Path, demo: str, firmware: str, success: str, amplink_server: bool
) -> None:
    before = snapshot()
    role = ["--server"] if amplink_server else ["--client"]
    run = amplink_cli(
        "remote", firmware, *role, "--", *demo_argv(demos, demo, *role_args(not amplink_server))
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Test Results: Error count = 0" in run.stdout, out
    assert f"Quitting application .. {success}" in run.stdout, out
    assert "exited with 0" in run.stdout, out
    assert snapshot()["shm"] == before["shm"]


def test_remote_serves_the_next_host_after_one_is_killed(demos: Path, tmp_path: Path) -> None:
    shm = f"amplink-demo-test-{os.getpid()}"
    device = OpenAmpHostDevice(
        resolve("amplink.firmware.echo").program(),
        server=True,
        shm=shm,
        socket_path=str(tmp_path / "openamp.event.0"),
        spin=False,
    )
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(device.run()))
    runner.start()
    ping = demo_argv(demos, "rpmsg-echo-ping", "1")
    first = PeerProcess(ping, folder=str(tmp_path))
    second = PeerProcess(ping, folder=str(tmp_path))
    try:
        first.start(ol.shm_path(shm))
        deadline = time.monotonic() + TIMEOUT
        while "received payload number 20 " not in first.output():
            assert time.monotonic() < deadline, first.describe()
            time.sleep(0.01)
        first.proc.kill()  # type: ignore[union-attr]
        second.start(ol.shm_path(shm))
        assert second.wait(TIMEOUT) == 0, second.describe()
        assert "Test Results: Error count = 0" in second.output()
        wait_for(lambda: device.hosts == 2, "the server to count the second host's driver")
    finally:
        first.close()
        second.close()
        device.stop()
        runner.join(TIMEOUT)
    assert result == [0]
    assert not os.path.exists(ol.shm_path(shm))


def test_host_keep_against_rpmsg_echo(demos: Path) -> None:
    """``amplink openamp host --keep``: the demo's channel is printed, typed lines come
    back as its echo, and Ctrl-C says goodbye (on which the demo exits 0)."""
    host = KeptHost("--", *demo_argv(demos, "rpmsg-echo"), timeout=TIMEOUT)
    try:
        host.wait_for(f"channel {SERVICE}")
        host.type("typed at the terminal")
        host.wait_for("<- ", "typed at the terminal")
        assert host.interrupt() == 130, "".join(host.lines)
        assert "rpmsg-echo-shared: exited with 0" in "".join(host.lines)
    finally:
        host.close()


def test_bench_rows(demos: Path) -> None:
    from amplink.app.bench import openamp as bench_openamp  # noqa: PLC0415 (only this test)

    report = bench_openamp.bench_openamp(runs=2, rounds=50)
    assert report is not None
    names = [r["name"] for r in report["whole_runs"]]
    assert names == [
        "C ping <-> C rpmsg-echo",
        "C ping <-> amplink remote",
        "amplink host <-> C rpmsg-echo",
    ]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in report["whole_runs"])
    for key in ("rtt", "rtt_in_process"):
        assert [r["size"] for r in report[key]] == [64, 496]
        assert all(0 < r["p50_us"] <= r["p99_us"] for r in report[key])
    text = "\n".join(bench_openamp.format_openamp(report, 2))
    assert "C ping <-> amplink remote" in text and "mapped in-process (baseline)" in text
