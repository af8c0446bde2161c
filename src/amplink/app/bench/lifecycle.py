"""The lifecycle figures of ``amplink bench``: how long a core takes to boot and to stop.

* **boot**: ``start()`` until the firmware's channel is announced on the host's bus
  (firmware packed and loaded, core process spawned, vdev up, name service message);
* **graceful stop**: ``stop()`` of a core whose firmware answers TI K3's handshake
  (``RP_MBOX_SHUTDOWN`` -> ACK -> WFI -> reset) and releases everything;
* **reset stop**: ``stop()`` of a core whose resource table announces no handshake.

The baseline is what any process-backed core costs at least: spawning
``python -c pass`` and waiting for it to exit, measured in the same run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from amplink.app.stats import latency_summary_us
from amplink.firmware.echo import SERVICE
from amplink.host import Rproc
from amplink.remoteproc.layout import default_rsc_table
from amplink.wire.protocol import Features

ECHO_FW = "amplink.firmware.echo"


@dataclass
class Timing:
    """One lifecycle phase's p50 and p99."""

    name: str
    p50_ms: float
    p99_ms: float


def _timing(name: str, samples_ns: list[int]) -> Timing:
    p50_us, p99_us = latency_summary_us(samples_ns)
    return Timing(name, round(p50_us / 1000, 2), round(p99_us / 1000, 2))


def bench_lifecycle(cycles: int) -> list[Timing]:
    """Boot, graceful stop and reset stop, ``cycles`` times each, next to spawning ``python -c
    pass``."""
    spawn: list[int] = []
    for _ in range(cycles):
        t = time.perf_counter_ns()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        spawn.append(time.perf_counter_ns() - t)
    boot: list[int] = []
    stops: dict[str, list[int]] = {"graceful stop": [], "reset stop": []}
    plain = default_rsc_table(features=Features())
    for kind, rp in (
        ("graceful stop", Rproc("bench-life", ECHO_FW)),
        ("reset stop", Rproc("bench-life-reset", ECHO_FW, table=plain)),
    ):
        for _ in range(cycles):
            t = time.perf_counter_ns()
            rp.start()
            rp.wait_channel(SERVICE)
            boot.append(time.perf_counter_ns() - t)
            t = time.perf_counter_ns()
            rp.stop()
            stops[kind].append(time.perf_counter_ns() - t)
            if rp.last_stop != ("graceful shutdown" if kind == "graceful stop" else "reset"):
                raise RuntimeError(f"{rp.name} stopped by {rp.last_stop}, not by a {kind}")
    return [
        _timing("spawn python -c pass", spawn),
        _timing("boot to channel", boot),
        _timing("graceful stop", stops["graceful stop"]),
        _timing("reset stop", stops["reset stop"]),
    ]
