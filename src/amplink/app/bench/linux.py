"""``amplink bench``'s Linux figures: round trips between a real kernel's
``/dev/rpmsgN`` (in a User-Mode Linux guest) and amplink's device side over
vhost-user, with the device sleeping between messages (``serve-linux``'s default) and
busy-polling (``--spin``), next to a pipe round trip measured in the same guest.

Taken only when a UML kernel is in the cache (``tools/uml/build-kernel.sh``).  The
guest and the device are not pinned: a guest pinned to one CPU makes the rpmsg path's
p99 worse by an order of magnitude (UML's interrupt delivery is a host process of its
own that then waits for the guest kernel's CPU; the README has the figures).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from amplink.uml.boot import boot, find_kernel, serving

SIZES = (64, 496)
DEVICE_MODES = (("device sleeps", False), ("device spins", True))  # serve-linux --spin


def bench_linux(rounds: int, kernel: Path | None = None) -> list[dict[str, Any]] | None:
    """The figures (``kernel``, else :func:`~amplink.uml.boot.find_kernel`), or None when
    there is no kernel to boot.  One guest per device mode; the pipe baseline is the
    first one's."""
    kernel = kernel or find_kernel()
    if kernel is None:
        return None
    results: list[dict[str, Any]] = []
    for mode, spin in DEVICE_MODES:
        with tempfile.TemporaryDirectory(prefix="amplink-bench-") as tmp:
            sock = os.path.join(tmp, "rpmsg.sock")
            with serving("amplink.firmware.echo", sock, spin=spin):
                run = boot(
                    [sys.executable, "-m", "amplink.app.bench.guest", str(rounds),
                     *(str(s) for s in SIZES)],
                    socket=sock, kernel=kernel, timeout=300,
                )  # fmt: skip
        if run.status != 0:
            why = run.failure() or f"the benchmark exited with {run.status}:\n{run.output}"
            raise RuntimeError(f"the Linux benchmark guest failed: {why}")
        for r in json.loads(run.output.strip().splitlines()[-1]):
            if r["name"] == "guest /dev/rpmsgN":
                results.append({**r, "name": f"guest /dev/rpmsgN, {mode}"})
            elif not spin:
                results.append(r)
    return results


def format_linux(results: list[dict[str, Any]] | None, rounds: int) -> list[str]:
    """The report's lines for these figures."""
    if results is None:
        why = "--linux-rounds 0" if rounds == 0 else "no UML kernel: tools/uml/build-kernel.sh"
        return ["", f"Linux guest: skipped ({why})"]
    lines = [
        "",
        f"Linux guest (User-Mode Linux 6.1) <-> amplink device over vhost-user: {rounds} "
        "round trips per size",
        f"{'path':<36}{'size B':>8}{'rtt p50 us':>12}{'rtt p99 us':>12}{'total s':>10}",
    ]
    for r in results:
        lines.append(
            f"{r['name']:<36}{r['size']:>8}{r['p50_us']:>12.1f}{r['p99_us']:>12.1f}"
            f"{r['total_s']:>10.2f}"
        )
    return lines
