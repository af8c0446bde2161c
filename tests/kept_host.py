"""``amplink openamp host --keep`` as a subprocess that a test types into."""

import queue
import signal
import subprocess
import sys
import threading


class KeptHost:
    """The command with ``args`` after ``host --keep``; its output is read line by line,
    every wait bounded by ``timeout`` seconds."""

    def __init__(self, *args: str, timeout: float) -> None:
        self.timeout = timeout
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.app.cli", "openamp", "host", "--keep", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._out: queue.Queue[str] = queue.Queue()  # "" once the output ended
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._out.put(line)
        self._out.put("")

    def wait_for(self, *texts: str) -> str:
        """Read output until a line holds every one of ``texts``; that line."""
        while True:
            found = [line for line in self.lines if all(t in line for t in texts)]
            if found:
                return found[0]
            try:
                line = self._out.get(timeout=self.timeout)
            except queue.Empty:
                seen = "".join(self.lines)
                raise AssertionError(f"no {texts} in {self.timeout} s: {seen}") from None
            assert line, f"the output ended without {texts}: {''.join(self.lines)}"
            self.lines.append(line)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def interrupt(self) -> int:
        """Ctrl-C; the exit status, once all the output was read."""
        self.proc.send_signal(signal.SIGINT)
        returncode = self.proc.wait(self.timeout)
        self._reader.join(self.timeout)
        while not self._out.empty():
            self.lines.append(self._out.get_nowait())
        return returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(self.timeout)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
