"""``amplink openamp host --keep`` as a subprocess that a test types into."""

import signal
import subprocess
import sys


class KeptHost:
    """The command with ``args`` after ``host --keep``; its output is read line by line."""

    def __init__(self, *args: str, timeout: float) -> None:
        self.timeout = timeout
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.app.cli", "openamp", "host", "--keep", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def wait_for(self, *texts: str) -> str:
        """Read output until a line holds every one of ``texts``; that line."""
        assert self.proc.stdout is not None
        while True:
            found = [line for line in self.lines if all(t in line for t in texts)]
            if found:
                return found[0]
            line = self.proc.stdout.readline()
            assert line, "".join(self.lines)
            self.lines.append(line)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def interrupt(self) -> int:
        """Ctrl-C; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=self.timeout)
        self.lines.append(out)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
