"""``amplink bench``'s OpenAMP figures: amplink against OpenAMP's own demo applications
over the linux-machine transport, next to the C <-> C pair measured in the same run.

OpenAMP's ping demos print no timings, so what they allow timing is a whole run: start
the host demo, let it echo its 480 messages of 17..496 bytes, each checked, and time
until it exits.  Three such runs are interleaved, ``runs`` times each:

* C ``rpmsg-echo-ping`` <-> C ``rpmsg-echo`` (the baseline);
* C ``rpmsg-echo-ping`` <-> ``amplink openamp remote amplink.firmware.echo``;
* amplink host (:class:`OpenAmpRemote`) <-> C ``rpmsg-echo``: the same 480 messages,
  timed from connecting to the goodbye (the C ping's run includes its process start,
  a few ms; amplink's host is a library in a running process).

In each run the remote is already listening when the host side starts.

Then amplink host <-> C ``rpmsg-echo`` round trips of 64 and 496 bytes (``rounds``
each), p50 and p99, as the host runs (the peer's object mapped only by the relay
process, :mod:`amplink.transport.openamp_relay`), and, as the baseline for what the
relay costs, with the object mapped in this process and the vdev bound over it
directly (what amplink does not do: a peer that shrinks the object would kill the
process; the bench trusts OpenAMP's own demo).  Every demo runs isolated
(:mod:`amplink.transport.openamp_peer`) and unpinned: OpenAMP's demos spin at 100 % of
a CPU each, and on two CPUs a pinned pair would share one with amplink's side.  Taken
only when the demos are built (``tools/openamp/build-demos.sh``).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amplink.app.stats import latency_summary_us, percentile
from amplink.errors import RpmsgError
from amplink.host import OpenAmpRemote, host_drivers
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.remoteproc.devmem import DmaPool
from amplink.remoteproc.vdev import RprocVdev
from amplink.rpmsg.core import Endpoint, RpmsgBus, RpmsgLinks, announce
from amplink.transport.openamp_linux import KickSocket, ShmFile, connect, map_shm
from amplink.transport.openamp_peer import SOCKET_NAME, PeerProcess, demo_argv, find_demos
from amplink.transport.unix import readable
from amplink.virtio.device import DRIVER
from amplink.wire import openamp_linux as ol
from amplink.wording import counted

SERVICE = "rpmsg-openamp-demo-channel"
PING_MESSAGES = 480  # rpmsg-echo-ping: payloads of 1..480 bytes after a 16-byte head
RTT_SIZES = (64, 496)
TIMEOUT = 30.0


def _ping_run(prefix: Path, folder: str, shm_path: str) -> float:
    """One run of C ``rpmsg-echo-ping`` (as the client) against the remote listening in
    ``folder``; its duration in ms.  RuntimeError if it did not pass."""
    ping = PeerProcess(demo_argv(prefix, "rpmsg-echo-ping", "1"), folder=folder)
    try:
        t0 = time.perf_counter()
        ping.start(shm_path)
        status = ping.wait(TIMEOUT)
        elapsed = time.perf_counter() - t0
        if status != 0 or "Test Results: Error count = 0" not in ping.output():
            raise RuntimeError(f"rpmsg-echo-ping failed: {ping.describe()}")
        return elapsed * 1e3
    finally:
        ping.close()


def _listening_echo(prefix: Path, folder: str, shm_path: str) -> PeerProcess:
    """C ``rpmsg-echo`` started as the server, once it listens in ``folder``."""
    echo = PeerProcess(demo_argv(prefix, "rpmsg-echo"), folder=folder)
    echo.start(shm_path)
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(os.path.join(folder, SOCKET_NAME)):
        if echo.returncode is not None or time.monotonic() > deadline:
            echo.close()
            raise RuntimeError(f"rpmsg-echo did not start: {echo.describe()}")
        time.sleep(0.001)
    return echo


def _c_pair_run(prefix: Path, folder: str, shm_path: str) -> float:
    echo = _listening_echo(prefix, folder, shm_path)
    try:
        took = _ping_run(prefix, folder, shm_path)
        if echo.wait(TIMEOUT) != 0:
            raise RuntimeError(f"rpmsg-echo failed: {echo.describe()}")
        return took
    finally:
        echo.close()


def _echo_ping_pattern(ept: Endpoint) -> None:
    """What rpmsg-echo-ping sends: {u64 num; u64 size; size x 0xA5}, size 1..480."""
    for num in range(PING_MESSAGES):
        size = num + 1
        data = num.to_bytes(8, "little") + size.to_bytes(8, "little") + b"\xa5" * size
        ept.send(data)
        if ept.recv(timeout=TIMEOUT).data != data:
            raise RuntimeError(f"rpmsg-echo returned message {num} changed")


def _amplink_host_run(prefix: Path, folder: str, shm_path: str) -> float:
    """amplink as the host of a listening C ``rpmsg-echo``: connect, bring the driver
    up, the ping's 480 messages, goodbye; in ms, as the C ping's run."""
    echo = _listening_echo(prefix, folder, shm_path)
    rp = OpenAmpRemote(shm=shm_path, socket_path=os.path.join(folder, SOCKET_NAME))
    try:
        t0 = time.perf_counter()
        rp.start(TIMEOUT)
        ept = rp.wait_channel(SERVICE, TIMEOUT).create_ept()
        _echo_ping_pattern(ept)
        assert rp.link is not None
        announce(rp.link, SERVICE, ept.addr, destroy=True)
        took = (time.perf_counter() - t0) * 1e3
        rp.shutdown(TIMEOUT)
        if echo.wait(TIMEOUT) != 0:
            raise RuntimeError(f"rpmsg-echo failed: {echo.describe()}")
        return took
    finally:
        rp.stop()
        echo.close()


def _rtts(ept: Endpoint, rounds: int) -> list[dict[str, Any]]:
    out = []
    for size in RTT_SIZES:
        payload = bytes([0x42]) * size
        samples = []
        for i in range(rounds + rounds // 10):
            t = time.perf_counter_ns()
            ept.send(payload)
            ept.recv(timeout=TIMEOUT)
            if i >= rounds // 10:  # the first tenth warms up
                samples.append(time.perf_counter_ns() - t)
        p50, p99 = latency_summary_us(samples)
        out.append({"size": size, "p50_us": round(p50, 1), "p99_us": round(p99, 1)})
    return out


def _amplink_host_rtts(prefix: Path, rounds: int) -> list[dict[str, Any]]:
    with OpenAmpRemote(command=demo_argv(prefix, "rpmsg-echo")) as rp:
        return _rtts(rp.wait_channel(SERVICE, TIMEOUT).create_ept(), rounds)


def _kick(kicks: KickSocket) -> Callable[[int], None]:
    return lambda _notifyid: kicks.kick()


def _in_process_rtts(prefix: Path, rounds: int) -> list[dict[str, Any]]:
    """The baseline: the C echo's object mapped here, its vdev bound without a relay,
    the echo's kicks taken by a thread of this process."""
    name = f"amplink-bench-direct-{os.getpid()}"
    shm = ShmFile(name, owner=True)
    echo = PeerProcess(demo_argv(prefix, "rpmsg-echo"))
    stop = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    region: SharedRegion | None = None
    vdev: RprocVdev | None = None
    kicks = None
    watcher = None
    try:
        echo.start(shm.path)
        kicks = connect(echo.socket_path, [echo.pidfd], TIMEOUT)
        if kicks is None:
            raise RuntimeError(f"rpmsg-echo did not start: {echo.describe()}")
        _page, entry = shm.read_table()
        region = map_shm(os.dup(shm.fd), name)
        links = RpmsgLinks(RpmsgBus())
        vdev = RprocVdev(
            f"{name}.vdev0",
            region,
            AddressMap.identity(ol.SHM_SIZE, "shm"),
            ol.RSC_TABLE_PA,
            entry,
            DRIVER,
            _kick(kicks),
            spin=True,
            driver=host_drivers((), links).virtio.driver_for(entry.id),
            pool=DmaPool(name, ol.SHARED_BUF_PA, ol.SHARED_BUF_SIZE),
        )

        def watch(k: KickSocket = kicks, v: RprocVdev = vdev) -> None:
            while stop not in readable([k.fileno(), stop], None):
                k.drain()
                v.handle_notify()

        watcher = threading.Thread(target=watch, name="bench-direct", daemon=True)
        watcher.start()
        vdev.start()
        (link,) = links.all()
        ept = links.bus.wait_for_device(SERVICE, TIMEOUT, link=link).create_ept()
        out = _rtts(ept, rounds)
        announce(link, SERVICE, ept.addr, destroy=True)
        echo.wait(TIMEOUT)
        return out
    finally:
        os.eventfd_write(stop, 1)
        if watcher is not None:
            watcher.join(TIMEOUT)
        if vdev is not None:
            vdev.stop(RpmsgError(errno.ESHUTDOWN, "the benchmark run is done"), crashed=True)
        for res in (region, kicks, echo, shm):
            if res is not None:
                res.close()
        os.close(stop)


def _summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
    }


def bench_openamp(runs: int, rounds: int) -> dict[str, Any] | None:
    """The figures, or None when OpenAMP's demos are not built."""
    prefix = find_demos()
    if prefix is None:
        return None
    shm = f"amplink-bench-{os.getpid()}"
    times: dict[str, list[float]] = {"c": [], "device": [], "host": []}
    with tempfile.TemporaryDirectory(prefix="amplink-bench-openamp-") as folder:
        c_dir, dev_dir = os.path.join(folder, "c"), os.path.join(folder, "dev")
        os.mkdir(c_dir)
        os.mkdir(dev_dir)
        obj = ShmFile(shm + "-c", owner=True)  # the C echo's object (bound into its peer)
        device = subprocess.Popen(
            [sys.executable, "-m", "amplink.app.cli", "openamp", "remote", "amplink.firmware.echo",
             "--shm", shm, "--socket", os.path.join(dev_dir, "openamp.event.0")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            sock = os.path.join(dev_dir, "openamp.event.0")
            deadline = time.monotonic() + TIMEOUT
            while not os.path.exists(sock):  # the device is listening
                if device.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("amplink openamp remote did not start")
                time.sleep(0.01)
            for _ in range(runs):
                times["c"].append(_c_pair_run(prefix, c_dir, obj.path))
                times["device"].append(_ping_run(prefix, dev_dir, ol.shm_path(shm)))
                times["host"].append(_amplink_host_run(prefix, c_dir, obj.path))
        finally:
            device.send_signal(signal.SIGTERM)
            device.wait(TIMEOUT)
            obj.close()
        rtts = _amplink_host_rtts(prefix, rounds)
        in_process = _in_process_rtts(prefix, rounds)
    return {
        "runs": runs,
        "whole_runs": [
            {"name": "C ping <-> C rpmsg-echo", **_summary(times["c"])},
            {"name": "C ping <-> amplink remote", **_summary(times["device"])},
            {"name": "amplink host <-> C rpmsg-echo", **_summary(times["host"])},
        ],
        "rtt": rtts,
        "rtt_in_process": in_process,
    }


def format_openamp(report: dict[str, Any] | None, runs: int) -> list[str]:
    """The report's lines for these figures."""
    if report is None:
        why = "--openamp-runs 0" if runs == 0 else "demos not built: tools/openamp/build-demos.sh"
        return ["", f"OpenAMP demos: skipped ({why})"]
    lines = [
        "",
        f"OpenAMP linux-machine demos (unpinned): {counted(report['runs'], 'whole run')} of "
        f"{PING_MESSAGES} echoes, 17..496 B, from start to exit",
        f"{'pair':<34}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for r in report["whole_runs"]:
        lines.append(f"{r['name']:<34}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")
    lines.append(f"{'amplink host <-> C rpmsg-echo':<34}{'size B':>8}{'rtt p50 us':>12}"
                 f"{'rtt p99 us':>12}")  # fmt: skip
    for label, key in (("  through the relay", "rtt"), ("  mapped in-process (baseline)",
                                                          "rtt_in_process")):  # fmt: skip
        for r in report[key]:
            lines.append(f"{label:<34}{r['size']:>8}{r['p50_us']:>12.1f}{r['p99_us']:>12.1f}")
    return lines
