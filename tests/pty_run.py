"""A command run on a real pseudo-terminal of fixed size, its screen emulated by pyte:
what a user sees in a terminal window, and Ctrl-C delivered by the terminal itself."""

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time

import pyte


def _controlling_tty() -> None:  # in the child, after setsid: the pty becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyRun:
    """``amplink ARGS`` with a pty of ``cols`` x ``rows`` as its controlling terminal."""

    def __init__(
        self,
        *args: str,
        cols: int = 100,
        rows: int = 30,
        env: dict | None = None,
        screen_cols: int | None = None,
    ):
        """``screen_cols``: emulate a wider screen than the pty says it has (a line the
        command writes wider than ``cols`` then shows as such, not wrapped by pyte)."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.app.cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_controlling_tty,  # noqa: PLW1509 - the test's own child
            env=env,
        )
        os.close(slave)
        self.master = master
        self.screen = pyte.HistoryScreen(screen_cols or cols, rows, history=100_000)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""

    def pump(self, timeout: float) -> bool:
        """Feed what the command wrote within ``timeout`` s; False once it closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the pty
            return False
        if not data:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def wait_for(self, predicate, timeout: float) -> None:
        """Pump until ``predicate(self)``; fail after ``timeout`` s showing the screen."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            assert left > 0 and self.pump(min(left, 0.2)), f"waited {timeout}s:\n{self.text()}"

    def lines(self) -> list[str]:
        """The screen's lines, trailing blanks removed."""
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.lines())

    def all_lines(self) -> list[str]:
        """Every line written: those scrolled off the top, then the screen's."""
        width = self.screen.columns
        top = [
            "".join(line[x].data for x in range(width)).rstrip() for line in self.screen.history.top
        ]
        return top + self.lines()

    def scrolled(self) -> int:
        """How many lines have scrolled off the top of the screen."""
        return len(self.screen.history.top)

    def ctrl_c(self) -> None:
        """Type Ctrl-C: the terminal sends SIGINT to its foreground process group."""
        os.write(self.master, b"\x03")

    def finish(self, timeout: float = 60.0) -> int:
        """Read everything until the command exits; its exit code."""
        deadline = time.monotonic() + timeout
        while self.pump(0.2) and time.monotonic() < deadline:
            pass
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        """Kill the command if it still runs; close the pty."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def tagged_processes(tag: str) -> list[int]:
    """Processes whose environment has AMPLINK_TEST_TAG=tag (a command's cores inherit
    it), so a test finds its own and never another test's."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"AMPLINK_TEST_TAG={tag}".encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found
