"""Terminal output of the ``amplink`` command: progress steps, tables and live views,
drawn with `rich <https://rich.readthedocs.io>`_.

On a terminal a running step shows a spinner and its elapsed time, a live view is
redrawn in place (cropped to the terminal, never scrolling), and every line written
meanwhile, by this process or by a core process, is printed above it.  A line longer
than the terminal is wrapped between words with a hanging indent (a step's result under
its label, a log line's continuation by :data:`LOG_INDENT`), never folded mid-word by
the terminal.  A table's long cells wrap too (:class:`Name`): nothing is cropped.
Written to a pipe or a file, the same calls give plain lines: a step is one line when
it ends, a table is plain columns as wide as ``$COLUMNS`` says (else unwrapped: a
log or a ``grep`` gets whole rows), and nothing is redrawn, so logs stay clean.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from rich import box
from rich.console import Console, ConsoleDimensions, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.measure import Measurement
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from amplink.app.signals import Interrupted

PLAIN_WIDTH = 1000  # a pipe has no width: unless COLUMNS says one, never wrap there
LOG_INDENT = 4  # columns a wrapped log line's continuation is indented by
VERDICT_WIDTH = 10  # "  FAILED  ": where a step's label begins
_FRAMES_PER_S = 10


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


def in_words(exc: BaseException) -> str:
    """What an error says to a person: an ``OSError``'s message without the
    ``[Errno 22]`` prefix ``str()`` gives it (with the file it names, if any), else
    ``str(exc)``, else the exception's type."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A table of ``rows``; numbers right-aligned with thousands separators (None in
    a column of numbers: ``-``, nothing was measured).  Too wide
    for the console, its text cells wrap (between words, and after a ``.``, ``-``,
    ``/`` or ``_`` of a long name), numbers never: nothing is cropped."""
    numeric = [
        any(_is_number(row[i]) for row in rows)
        and all(_is_number(row[i]) or row[i] is None for row in rows)
        for i in range(len(headers))
    ]
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for header, num in zip(headers, numeric, strict=True):
        t.add_column(header, justify="right" if num else "left", no_wrap=num)
    for row in rows:
        cells = zip(row, numeric, strict=True)
        t.add_row(*(Text(_cell(v), no_wrap=True) if num else Name(_cell(v)) for v, num in cells))
    return t


class Name:
    """A cell's text that wraps between words and also after the ``.``, ``-``, ``/``
    and ``_`` of a long name (``amplink.firmware.`` / ``demo``), which rich's own
    wrapping breaks only at spaces; a piece longer than the column is folded."""

    _PIECE = re.compile(r"[^\s./_-]*[./_-]+|\S+|\s+")

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        lines = self.text.splitlines() or [""]
        pieces = [len(p.strip()) for line in lines for p in self._PIECE.findall(line)]
        return Measurement(max(pieces, default=0) or 1, max(len(line) for line in lines) or 1)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(options.max_width, 1)
        out: list[str] = []
        for line in self.text.splitlines() or [""]:
            current = ""
            for piece in self._PIECE.findall(line):
                if len(current) + len(piece.rstrip()) <= width:
                    current += piece
                    continue
                if current.strip():
                    out.append(current.rstrip())
                current = piece.lstrip()
                while len(current) > width:  # one piece wider than the column: folded
                    out.append(current[:width])
                    current = current[width:]
            out.append(current.rstrip())
        yield Text("\n".join(out), no_wrap=True, overflow="crop")


class Terminal:
    """Where the command writes: ``out`` (stdout), animated when it is a terminal
    (or when ``interactive`` says so)."""

    def __init__(self, out: TextIO | None = None, *, interactive: bool | None = None) -> None:
        stream = out if out is not None else sys.stdout
        self.interactive = stream.isatty() if interactive is None else interactive
        self.console = _Console(
            file=stream,
            force_terminal=self.interactive,
            width=None if self.interactive else plain_width(),
            color_system="auto" if self.interactive else None,
            highlight=False,
            emoji=False,
            markup=False,
        )

    def say(self, text: str = "") -> None:
        """Print a line."""
        self.console.print(Text(text), soft_wrap=not self.interactive)

    def wrapped(self, text: str) -> None:
        """Print a line wrapped between words to the width (on a pipe too), the rest
        indented by :data:`LOG_INDENT`."""
        print_hanging(self.console, Text(text), LOG_INDENT)

    def show(self, renderable: RenderableType) -> None:
        """Print a table (or any renderable): plain columns on a pipe."""
        if isinstance(renderable, Table) and not self.interactive:
            for line in self._plain(renderable):
                self.console.print(Text(line), soft_wrap=True)
            return
        self.console.print(renderable)

    def _plain(self, t: Table) -> list[str]:
        probe = Console(width=self.console.width, color_system=None, highlight=False, markup=False)
        with probe.capture() as cap:
            probe.print(t)
        return [line.rstrip() for line in cap.get().splitlines()]

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[Step]:
        """Run the ``with`` body as one step: ``ok`` (or ``FAILED`` and the error)
        when it ends, the step's :attr:`Step.result` after it."""
        st = Step(label)
        display = (
            self._spinning(lambda: f"{label} ... {st.elapsed:4.1f} s")
            if self.interactive
            else contextlib.nullcontext()
        )
        try:
            with display:
                yield st
        except (KeyboardInterrupt, Interrupted) as exc:
            self._end(st, "--", f"interrupted ({exc.args[0] if exc.args else 'SIGINT'})")
            raise
        except BaseException as exc:
            self._end(st, "FAILED", in_words(exc))
            raise
        self._end(st, "ok", st.result)

    def skipped(self, label: str, why: str) -> None:
        """Say that a step was not run, and why (``skip  label: why``)."""
        self._end(Step(label), "skip", why)

    def _end(self, st: Step, verdict: str, detail: str) -> None:
        text = Text(f"  {verdict:>6}  {st.label}")
        if self.interactive:
            text.stylize("green" if verdict == "ok" else "bold red", 2, 8)
        if detail:
            text.append(f": {detail}")
        if not self.interactive:
            self.console.print(text, soft_wrap=True)
            return
        print_hanging(self.console, text, VERDICT_WIDTH)

    @contextlib.contextmanager
    def status(self) -> Iterator[Callable[[str], None]]:
        """A one-line status while the ``with`` body runs: a spinner, what the function
        it gives was last told (drawn at once, however short the step), and for how
        long; gone when the body ends.  Nothing unless interactive."""
        if not self.interactive:
            yield lambda _what: None
            return
        st = Step("")
        with self._spinning(lambda: f"measuring {st.label} ... {st.elapsed:4.1f} s") as line:

            def tell(what: str) -> None:
                st.label, st.started = what, time.perf_counter()
                line.refresh()  # drawn now: a step shorter than a frame is still seen

            yield tell

    def _spinning(self, text: Callable[[], str]) -> Live:
        """A transient line redrawn in place: a spinner and ``text()``, cropped (a
        transient line never wraps)."""
        spinner = Spinner("line", style="cyan")

        def frame() -> RenderableType:
            spinner.update(text=Text(text(), no_wrap=True, overflow="ellipsis"))
            return spinner

        return Live(
            get_renderable=frame,
            console=self.console,
            transient=True,
            refresh_per_second=_FRAMES_PER_S,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    @contextlib.contextmanager
    def live(self, render: Callable[[], RenderableType], refresh: float) -> Iterator[None]:
        """Show ``render()`` redrawn in place every ``refresh`` s while the ``with``
        body runs (cropped to the terminal; lines printed meanwhile go above it)."""
        with (
            _no_echo(),
            Live(
                get_renderable=render,
                console=self.console,
                refresh_per_second=1 / refresh,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="crop",
            ),
        ):
            yield

    @contextlib.contextmanager
    def relay_output(self) -> Iterator[None]:
        """While the ``with`` body runs, everything written to file descriptors 1 and 2
        (log lines, the core processes' output: they inherit them) is printed line by
        line through :attr:`console`, so it appears above a live display instead of
        tearing it.  Does nothing unless interactive."""
        if not self.interactive:
            yield
            return
        relay = _Relay(self.console)
        try:
            yield
        finally:
            relay.close()


def plain_width() -> int:
    """The width of a table written to a pipe or a file: ``$COLUMNS``, else
    :data:`PLAIN_WIDTH` (a table wrapped to a guessed width would help no reader of a
    file, and split the rows a ``grep`` looks for)."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PLAIN_WIDTH


def hanging(console: Console, text: Text, indent: int) -> list[Text]:
    """``text`` wrapped between words to ``console``'s width, every line after the first
    indented by ``indent`` columns (a word longer than a line is folded)."""
    width = console.width
    first = text.wrap(console, width, overflow="fold")
    if len(first) <= 1 or width <= indent + 1:
        return list(first)
    head = first[0]
    plain = text.plain
    start = len(head.plain)
    while start < len(plain) and plain[start] == " ":
        start += 1
    head.rstrip()
    rest = text[start:].wrap(console, width - indent, overflow="fold")
    return [head, *(Text(" " * indent) + line for line in rest)]


def print_hanging(console: Console, text: Text, indent: int) -> None:
    """Print ``text`` as :func:`hanging` wraps it: no line is wider than the console."""
    for line in hanging(console, text, indent):
        line.rstrip()
        console.print(line, no_wrap=True, overflow="crop")


@contextlib.contextmanager
def _no_echo() -> Iterator[None]:
    """Keys typed while a live view is shown are not echoed (a ``^C`` would shift it)."""
    try:
        saved = termios.tcgetattr(0)
    except (termios.error, OSError):
        yield  # standard input is not a terminal
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(0, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSANOW, saved)


class _Console(Console):
    """A console that measures the terminal it writes to (rich looks at descriptors
    0-2, which :class:`_Relay` points elsewhere)."""

    def _measure(self) -> ConsoleDimensions:
        if self._width is None and self._height is None:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                cols, lines = os.get_terminal_size(self.file.fileno())
                if cols and lines:
                    return ConsoleDimensions(cols, lines)
        return Console.size.fget(self)  # type: ignore[attr-defined,no-any-return]

    size = property(_measure, Console.size.fset)  # type: ignore[attr-defined]


class _Relay:
    """Descriptors 1 and 2 pointed at a pipe whose lines a thread prints through the
    console (which writes to a saved copy of the original descriptor 1)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        self._console_file = console.file
        console.file = os.fdopen(os.dup(self._saved[0]), "w", encoding="utf-8", errors="replace")
        self._read, write = os.pipe2(os.O_CLOEXEC)
        os.dup2(write, 1)  # dup2 clears close-on-exec: core processes inherit these
        os.dup2(write, 2)
        os.close(write)
        self._stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="amplink-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        poller.register(self._stop, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._read in ready:  # what is written before the stop is printed
                data = os.read(self._read, 65536)
                if not data:
                    break  # every writer closed it
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    self._print(line)
            elif self._stop in ready:
                break
        if pending:
            self._print(pending)

    def _print(self, line: bytes) -> None:
        print_hanging(self.console, Text(line.decode(errors="replace")), LOG_INDENT)

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        os.eventfd_write(self._stop, 1)
        self._thread.join(5)
        os.close(self._read)
        os.close(self._stop)
        self.console.file.close()
        self.console.file = self._console_file


# Control characters a cell may carry from a peer (a channel's name): shown as \xNN,
# never sent to the terminal (an escape sequence could clear or rewrite the screen).
# A newline stays: it separates a cell's lines.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x0A}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value).translate(_CONTROLS)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
