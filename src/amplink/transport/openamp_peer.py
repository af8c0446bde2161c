"""Running an OpenAMP linux-machine application as amplink's peer process.

OpenAMP's demos hard-code their shared-memory object (``/dev/shm/openamp.shm``) and
their socket (``/tmp/openamp.event.0``), so two pairs on one machine collide, and a
stale file of an earlier run is in the way.  :class:`PeerProcess` therefore starts the
program, by default, in a private mount namespace of an unprivileged user namespace
(``unshare``, util-linux), where

* ``/dev/shm`` is an empty tmpfs whose ``openamp.shm`` *is* amplink's object (a bind
  mount of the file amplink opened, whatever its name), and
* ``/tmp`` is a private folder of amplink's, in which amplink's socket is
  ``openamp.event.0`` (or the peer's, when the peer is the server).

The program then sees exactly the names it expects, amplink uses unique ones, and the
program runs without real privileges (no ``SCHED_FIFO`` busy-looping at priority 99
even when amplink runs as root).  With ``isolate=False`` the program runs as it is: it
must use the object and socket amplink uses.

The program's output (stdout and stderr) goes to a file read by :meth:`output`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from amplink.errors import AmplinkError
from amplink.wire import openamp_linux as ol

SOCKET_NAME = os.path.basename(ol.SOCKET_PATH)
# Runs as root of the new user namespace; $0 is amplink's object, $1 the private folder.
_SETUP = f"""set -e
exec 3<>"$0"
mount -t tmpfs -o mode=1777 amplink-shm /dev/shm
: > /dev/shm/{ol.SHM_NAME}
mount --no-canonicalize --bind /proc/self/fd/3 /dev/shm/{ol.SHM_NAME}
exec 3>&-
mount --bind "$1" /tmp
shift
exec "$@"
"""


class PeerProcess:
    """One started peer program.  ``socket_path`` is where amplink's side of the
    socket is (isolated: ``openamp.event.0`` in the private folder)."""

    def __init__(
        self,
        argv: list[str],
        *,
        isolate: bool = True,
        socket_path: str = "",
        folder: str | None = None,
    ) -> None:
        """``socket_path``: where the socket is when not isolated; ``folder``: the
        isolated program's ``/tmp`` (default: a new private folder, removed by
        :meth:`close`)."""
        if not argv:
            raise AmplinkError(errno.EINVAL, "no program to run as the OpenAMP peer")
        self.argv = argv
        self.isolate = isolate
        self._own_dir = isolate and folder is None
        self._dir = (folder or tempfile.mkdtemp(prefix="amplink-openamp-")) if isolate else None
        self.socket_path = os.path.join(self._dir, SOCKET_NAME) if self._dir else socket_path
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._final = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfd = -1

    def start(self, shm_path: str) -> None:
        """Start the program; isolated, its ``/dev/shm/openamp.shm`` is ``shm_path``."""
        command = self.argv
        if self._dir is not None:
            unshare = shutil.which("unshare")
            if unshare is None:
                raise AmplinkError(
                    errno.ENOENT,
                    "isolating the OpenAMP peer needs unshare (util-linux); install it, or "
                    "run the peer without isolation",
                )
            command = [unshare, "--user", "--map-root-user", "--mount", "--propagation",
                       "private", "--", "/bin/sh", "-c", _SETUP, shm_path, self._dir,
                       *self.argv]  # fmt: skip
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for amplink does not reach it
            )
        except OSError as exc:
            raise AmplinkError(
                exc.errno or errno.ENOEXEC, f"cannot run {self.argv[0]}: {exc.strerror}"
            ) from None
        self.pidfd = os.pidfd_open(self.proc.pid)

    @property
    def returncode(self) -> int | None:
        """The exit status once it exited (negative: killed by that signal)."""
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the exit; its status, or None if still running."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        """Everything the program printed so far (kept after :meth:`close`)."""
        if self._log.closed:
            return self._final
        self._log.flush()
        return os.pread(self._log.fileno(), 1 << 24, 0).decode(errors="replace")

    def describe(self) -> str:
        """Its command, its status and the end of its output, for an error message."""
        rc = self.returncode
        state = "running" if rc is None else f"exited with {rc}"
        tail = "\n".join(self.output().splitlines()[-15:])
        return f"{' '.join(self.argv)} ({state}); its last output:\n{tail}"

    def stop(self, timeout: float = 2.0) -> int | None:
        """End the program (SIGTERM, then SIGKILL after ``timeout`` s); its status
        (None if it was never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        """Stop it and release its descriptors and its private folder. Idempotent."""
        self.stop()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if not self._log.closed:
            self._final = self.output()
            self._log.close()
        if self._dir is not None and self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def cache_dir() -> Path:
    """Where ``tools/openamp/build-demos.sh`` puts its builds."""
    env = os.environ.get("AMPLINK_OPENAMP_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "amplink-openamp"


def find_demos() -> Path | None:
    """The install prefix of OpenAMP's built demos (``bin/``, ``lib/``): the newest
    build in the cache; None if there is none (build with
    ``tools/openamp/build-demos.sh``)."""
    try:
        builds = [p for p in cache_dir().iterdir() if (p / "bin" / "rpmsg-echo-shared").is_file()]
    except OSError:
        return None
    return max(builds, key=lambda p: p.stat().st_mtime, default=None)


def demo_argv(prefix: Path, name: str, *args: str) -> list[str]:
    """The command line that runs demo ``name`` (e.g. ``rpmsg-echo``) of a build, with
    its libraries found."""
    return [
        "env",
        f"LD_LIBRARY_PATH={prefix / 'lib'}",
        str(prefix / "bin" / f"{name}-shared"),
        *args,
    ]
