"""``amplink bench``'s Linux figures: round trips between a real kernel's
``/dev/rpmsgN`` (in a User-Mode Linux guest) and amplink's device side over
vhost-user, next to a pipe round trip measured in the same guest.

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
from typing import Any

from amplink.uml.boot import boot, find_kernel, serving

SIZES = (64, 496)


def bench_linux(rounds: int) -> list[dict[str, Any]] | None:
    """The figures, or None when there is no kernel to boot."""
    kernel = find_kernel()
    if kernel is None:
        return None
    with tempfile.TemporaryDirectory(prefix="amplink-bench-") as tmp:
        sock = os.path.join(tmp, "rpmsg.sock")
        with serving("amplink.firmware.echo", sock):
            run = boot(
                [sys.executable, "-m", "amplink.app.bench.guest", str(rounds),
                 *(str(s) for s in SIZES)],
                socket=sock, kernel=kernel, timeout=300,
            )  # fmt: skip
    if run.status != 0:
        raise RuntimeError(f"the Linux benchmark guest failed:\n{run.describe()}")
    results: list[dict[str, Any]] = json.loads(run.output.strip().splitlines()[-1])
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
        f"{'path':<26}{'size B':>8}{'rtt p50 us':>12}{'rtt p99 us':>12}",
    ]
    for r in results:
        lines.append(f"{r['name']:<26}{r['size']:>8}{r['p50_us']:>12.1f}{r['p99_us']:>12.1f}")
    return lines
