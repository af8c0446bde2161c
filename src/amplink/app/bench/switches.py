"""How often the threads of some processes slept and were preempted, from
``/proc/PID/task/TID/status`` (``voluntary_ctxt_switches``, ``nonvoluntary_ctxt_switches``).

A blocking round trip costs one wake-up per thread it passes through, and on a busy
machine each wake-up is a chance to be preempted; the bench divides both by the round
trips of one measurement, beside the Pipe's (one thread per side: 2 wake-ups).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def context_switches(pids: Iterable[int]) -> tuple[int, int]:
    """``(voluntary, involuntary)`` context switches of every thread of ``pids`` so far
    (a thread or process that ends meanwhile counts no more)."""
    slept = preempted = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    slept += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    preempted += int(line.split()[1])
    return slept, preempted
