"""Demo firmware: the three services every core of the default board offers.

* ``rpmsg-openamp-demo-channel``: echo, as OpenAMP's ``rpmsg-echo`` demo.
* ``rpmsg-tty``: a small console.  Typed characters are echoed; a line (ended by CR or
  LF) is run as a command: ``help``, ``uptime``, ``stats``, ``echo TEXT``.  The host
  turns the channel into a pty (:class:`~amplink.rpmsg.tty.RpmsgTtyDriver`).
* ``rpmsg-raw``: answers every message with the same bytes upper-cased (ASCII letters
  only), to show a service whose reply differs from its request; the host gives the
  channel a ``/dev/rpmsgN``-like file (:class:`~amplink.rpmsg.chardev.RpmsgCharDriver`).

Every console command also goes to the trace buffer (``trace0``).
"""

from __future__ import annotations

import time
from collections import Counter

from amplink.remote import Core
from amplink.rpmsg.core import Endpoint
from amplink.rpmsg.tty import RPMSG_TTY_SERVICE

ECHO_SERVICE = "rpmsg-openamp-demo-channel"
RAW_SERVICE = "rpmsg-raw"
SERVICES = (ECHO_SERVICE, RPMSG_TTY_SERVICE, RAW_SERVICE)
HELP = "commands: help, uptime, stats, echo TEXT"


class Console:
    """The console's line discipline and commands (pure: bytes in, bytes out)."""

    def __init__(self, name: str, served: Counter[str]) -> None:
        self.name = name
        self.served = served
        self.started = time.monotonic()
        self.line = bytearray()

    @property
    def prompt(self) -> bytes:
        """What the console prints when it waits for a command."""
        return f"{self.name}> ".encode()

    def feed(self, data: bytes) -> bytes:
        """Take typed bytes; return what the terminal shows (echo, command output)."""
        out = bytearray()
        for byte in data:
            if byte in b"\r\n":
                out += b"\r\n"
                command = self.line.decode(errors="replace").strip()
                self.line.clear()
                if command:
                    out += self.run(command).encode() + b"\r\n"
                out += self.prompt
            elif byte in (0x08, 0x7F):  # backspace / delete
                if self.line:
                    self.line.pop()
                    out += b"\b \b"
            else:
                self.line.append(byte)
                out.append(byte)
        return bytes(out)

    def run(self, command: str) -> str:
        """The output of one command line."""
        word, _, rest = command.partition(" ")
        if word == "help":
            return HELP
        if word == "uptime":
            return f"{self.name} up {time.monotonic() - self.started:.1f} s"
        if word == "stats":
            return ", ".join(f"{s}: {self.served[s]}" for s in SERVICES)
        if word == "echo":
            return rest
        return f"unknown command {word!r}; {HELP}"


def main(core: Core) -> None:
    """Serve the three services until the host stops the core."""
    served: Counter[str] = Counter()
    console = Console(core.name, served)

    def echo(ept: Endpoint, data: bytes, src: int) -> None:
        served[ECHO_SERVICE] += 1
        ept.sendto(data, src)

    def tty(ept: Endpoint, data: bytes, src: int) -> None:
        served[RPMSG_TTY_SERVICE] += 1
        shown = console.feed(data)
        if b"\r\n" in shown:
            core.trace(f"console: {shown.decode(errors='replace').strip()}\n")
        for i in range(0, len(shown), core.mtu):
            ept.sendto(shown[i : i + core.mtu], src)

    def raw(ept: Endpoint, data: bytes, src: int) -> None:
        served[RAW_SERVICE] += 1
        ept.sendto(data.upper(), src)

    core.create_endpoint(ECHO_SERVICE, echo)
    core.create_endpoint(RPMSG_TTY_SERVICE, tty)
    core.create_endpoint(RAW_SERVICE, raw)
    core.run()
