"""Terminal output for the ``amplink`` command: progress steps and tables.

On a terminal a running step shows a spinner and its elapsed time, redrawn in place;
written to a pipe or a file, each step is one line when it ends, so logs stay clean.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

_SPINNER = "|/-\\"
_FRAME = 0.1  # seconds between redraws


class Step:
    """A step in progress; set :attr:`result` to say how it ended."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.result = ""
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since the step began."""
        return time.perf_counter() - self.started


class Steps:
    """Prints steps to ``out``, animated when ``out`` is a terminal."""

    def __init__(self, out: TextIO, animate: bool | None = None) -> None:
        self.out = out
        self.animate = out.isatty() if animate is None else animate

    def say(self, text: str = "") -> None:
        """Print a line."""
        print(text, file=self.out, flush=True)

    @contextmanager
    def step(self, label: str) -> Iterator[Step]:
        """Run the ``with`` body as one step: ``ok`` (or ``FAILED`` and the error)
        when it ends, the step's :attr:`Step.result` after it."""
        st = Step(label)
        stop = threading.Event()
        spinner = None
        if self.animate:
            spinner = threading.Thread(target=self._spin, args=(st, stop), daemon=True)
            spinner.start()
        try:
            yield st
        except BaseException as exc:
            self._end(st, stop, spinner, "FAILED", str(exc) or type(exc).__name__)
            raise
        self._end(st, stop, spinner, "ok", st.result)

    def _spin(self, st: Step, stop: threading.Event) -> None:
        frame = 0
        while not stop.wait(_FRAME):
            frame += 1
            sign = _SPINNER[frame % len(_SPINNER)]
            self.out.write(f"\r  {sign} {st.label} ... {st.elapsed:4.1f} s")
            self.out.flush()

    def _end(
        self,
        st: Step,
        stop: threading.Event,
        spinner: threading.Thread | None,
        verdict: str,
        detail: str,
    ) -> None:
        stop.set()
        if spinner is not None:
            spinner.join()
            self.out.write("\r\033[K")
        text = f"  {verdict:>6}  {st.label}"
        if detail:
            text += f": {detail}"
        self.say(text)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, columns as wide as their widest cell; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
