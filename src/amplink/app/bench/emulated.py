"""The emulated-core rows of ``amplink bench``: an rpmsg-lite image and OpenAMP's
rpmsg-echo on emulated Cortex-M7 cores, next to a Python core running
``amplink.firmware.echo``, all measured in the same run:

* **echo round trip**: a 64-byte message to the echo service and back (p50, p99);
* **echo throughput**: 496-byte messages echoed with up to :data:`WINDOW` in flight
  (messages per second each way);
* **mailbox round trip**: ``RP_MBOX_ECHO_REQUEST`` through the MU, answered by the
  core's interrupt handler with ``RP_MBOX_ECHO_REPLY`` (two interrupt latencies and
  one handler: :meth:`~amplink.remoteproc.platform.RprocPlatform.mailbox_ping`);
* **boot to channel**: ``start()`` until the echo channel is announced (p50);
* **emulated instructions per second**: ``rpmsg-lite-faults.elf``'s ``busy N`` runs a
  two-instruction loop N times; its time on the host, less that of ``busy 1``.

The images are those ``make firmware`` built; without them the rows are left out and
the report says how to get them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from amplink.app.stats import latency_summary_us
from amplink.emu import firmware
from amplink.host import Rproc, RprocConfig
from amplink.remoteproc.firmware_path import built_firmware_dir

ECHO = "rpmsg-openamp-demo-channel"
WINDOW = 64
BUSY_LOOPS = 5_000_000  # well within the faults image's watchdog, even on a loaded machine
TIMEOUT = 30.0


@dataclass
class CoreRow:
    """One kind of core's figures (``mips`` only for emulated cores)."""

    name: str
    rtt_p50_us: float
    rtt_p99_us: float
    msgs_per_s: float
    mbox_p50_us: float
    mbox_p99_us: float
    boot_p50_ms: float
    mips: float | None = None


def _measure(
    name: str, fw: str, rounds: int, messages: int, cycles: int, cpu: int | None
) -> CoreRow:
    # the same host code for every kind of core: amplink.host.PLATFORMS runs a Python
    # program in a process and a Cortex-M image on an emulated i.MX8M Plus-like M7
    rp = Rproc(name.split(maxsplit=1)[0], fw, config=RprocConfig(cpu=cpu))
    boots = []
    for _ in range(cycles):
        t = time.perf_counter_ns()
        rp.start()
        rp.wait_channel(ECHO, TIMEOUT)
        boots.append(time.perf_counter_ns() - t)
        rp.stop()
    rp.start()
    try:
        chan = rp.wait_channel(ECHO, TIMEOUT)
        with chan.create_ept() as ept:
            rtts = []
            for _ in range(rounds):
                t = time.perf_counter_ns()
                ept.send(b"r" * 64)
                ept.recv(TIMEOUT)
                rtts.append(time.perf_counter_ns() - t)
            payload = b"t" * 496
            sent = received = 0
            t0 = time.perf_counter()
            while received < messages:
                while sent < messages and sent - received < WINDOW:
                    ept.send(payload)
                    sent += 1
                if len(ept.recv(TIMEOUT).data) != len(payload):
                    raise RuntimeError(f"{name}: an echo of {len(payload)} bytes differs")
                received += 1
            rate = messages / (time.perf_counter() - t0)
        platform = rp.platform
        assert platform is not None
        pings = [int(platform.mailbox_ping(TIMEOUT) * 1e9) for _ in range(rounds)]
    finally:
        rp.stop()
    rtt = latency_summary_us(rtts)
    mbox = latency_summary_us(pings)
    boot = latency_summary_us(boots)[0] / 1000
    return CoreRow(name, round(rtt[0], 1), round(rtt[1], 1), round(rate), round(mbox[0], 1),
                   round(mbox[1], 1), round(boot, 1))  # fmt: skip


def _mips(path: str, cpu: int | None) -> float:
    """Emulated instructions per second of ``busy N`` on the faults image."""
    rp = Rproc("bench-busy", path, config=RprocConfig(cpu=cpu))
    with rp, rp.wait_channel(firmware.FAULTS_SERVICE, TIMEOUT).create_ept() as ept:
        times = []
        for n in (1, BUSY_LOOPS):
            t = time.perf_counter()
            ept.send(b"busy %d" % n)
            if ept.recv(TIMEOUT * 4).data != b"busy done":
                raise RuntimeError("the faults image did not answer busy")
            times.append(time.perf_counter() - t)
    instructions = firmware.BUSY_INSTRUCTIONS * (BUSY_LOOPS - 1)
    return round(instructions / (times[1] - times[0]) / 1e6, 1)


def bench_emulated(rounds: int, messages: int, cycles: int, cpu: int | None) -> dict[str, Any]:
    """The rows (``rows``), or why there are none (``missing``); every core runs on
    ``cpu`` (the host's peer CPU), one at a time."""
    built = built_firmware_dir()
    if built is None:
        return {"rows": [], "missing": "the Cortex-M images are not built: run make firmware"}
    rows = [
        _measure("python core (amplink.firmware.echo)", "amplink.firmware.echo",
                 rounds, messages, cycles, cpu),
        _measure("rpmsg-lite (emulated M7)", str(built / "rpmsg-lite-echo.elf"),
                 rounds, messages, cycles, cpu),
        _measure("OpenAMP (emulated M7)", str(built / "openamp-rpmsg-echo.elf"),
                 rounds, messages, cycles, cpu),
    ]  # fmt: skip
    mips = _mips(str(built / "rpmsg-lite-faults.elf"), cpu)
    for row in rows[1:]:
        row.mips = mips  # the same emulator runs both images
    return {"rows": [asdict(r) for r in rows], "missing": ""}


def format_emulated(report: dict[str, Any], rounds: int, messages: int) -> list[str]:
    """The report's lines for the emulated cores."""
    lines = [
        "",
        "real Cortex-M firmware on emulated cores, next to a Python core running the echo:",
    ]
    if report["missing"]:
        return [*lines, f"  (left out: {report['missing']})"]
    lines += [
        f"echo: {rounds} round trips of 64 B; msgs/s: {messages} echoes of 496 B, {WINDOW} in "
        "flight",
        f"mailbox: {rounds} round trips of one word through the core's interrupt handler",
        "boot: the median time from start until the echo channel is announced",
        f"MIPS: millions of emulated instructions per second, a busy loop of {BUSY_LOOPS:,} x 2 "
        "(- : no emulator)",
        f"{'':<36}{'echo rtt us':>22}{'':>9}{'mailbox rtt us':>18}{'boot':>8}",
        f"{'core':<36}{'p50':>11}{'p99':>11}{'msgs/s':>9}{'p50':>9}{'p99':>9}{'ms':>8}{'MIPS':>6}",
    ]
    for r in report["rows"]:
        mips = "-" if r["mips"] is None else f"{r['mips']:.1f}"
        lines.append(
            f"{r['name']:<36}{r['rtt_p50_us']:>11.1f}{r['rtt_p99_us']:>11.1f}"
            f"{r['msgs_per_s']:>9,.0f}{r['mbox_p50_us']:>9.1f}{r['mbox_p99_us']:>9.1f}"
            f"{r['boot_p50_ms']:>8.1f}{mips:>6}"
        )
    return lines
