"""Runs inside a UML guest for ``amplink bench``: round trips between the guest's
``/dev/rpmsgN`` and amplink's device side (the echo firmware), at each size asked
for, and, as the baseline measured in the same guest, a pipe round trip between two
guest processes (what a kernel wake-up costs under UML).  Prints one JSON object.

Usage (in the guest): ``python -m amplink.app.bench.guest ROUNDS SIZE...``
"""

from __future__ import annotations

import json
import os
import sys
import time

from amplink.app.stats import latency_summary_us
from amplink.firmware.echo import SERVICE
from amplink.linux.rpmsg import LinuxCtrl, channels, wait_until


def _rpmsg(rounds: int, size: int) -> list[int]:
    found = wait_until(
        lambda: [c.dst for c in channels() if c.name == SERVICE], f"no {SERVICE} channel"
    )
    dst = found[0]
    with LinuxCtrl() as ctrl, ctrl.create_ept("amplink-bench", dst=dst) as f:
        payload = bytes(size)
        for _ in range(min(rounds // 10, 200)):  # warm up
            f.write(payload)
            f.read(10)
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            f.write(payload)
            f.read(10)
            samples.append(time.perf_counter_ns() - t0)
    return samples


def _pipe(rounds: int, size: int) -> list[int]:
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the echo peer
        try:
            os.close(a_w)
            os.close(b_r)
            while data := os.read(a_r, 65536):
                os.write(b_w, data)
        finally:
            os._exit(0)
    os.close(a_r)
    os.close(b_w)
    payload = bytes(size)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        os.write(a_w, payload)
        os.read(b_r, 65536)
        samples.append(time.perf_counter_ns() - t0)
    os.close(a_w)  # the peer reads EOF and exits
    os.waitpid(pid, 0)
    os.close(b_r)
    return samples


def main(argv: list[str]) -> None:
    """Measure and print the JSON report."""
    rounds, sizes = int(argv[0]), [int(s) for s in argv[1:]]
    results = []
    for name, measure in (("guest pipe (baseline)", _pipe), ("guest /dev/rpmsgN", _rpmsg)):
        for size in sizes:
            samples = measure(rounds, size)
            p50, p99 = latency_summary_us(samples)
            results.append(
                {"name": name, "size": size, "p50_us": p50, "p99_us": p99,
                 "total_s": round(sum(samples) / 1e9, 3)}
            )  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
