"""One application, two stacks: talk to a firmware's ``rpmsg-raw`` channel through an
endpoint file, on amplink's own stack or on a real Linux kernel's ``/dev/rpmsgN``.

.venv/bin/python examples/raw_client.py            # amplink's default board
.venv/bin/python examples/raw_client.py --linux    # a Linux board (or a UML guest
                                                   # served by amplink serve-linux)

The demo firmware answers on ``rpmsg-raw`` with the bytes upper-cased.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

from amplink.board import Board, load_board
from amplink.linux import LinuxRpmsgChar
from amplink.rpmsg.aio import EptFile

WORDS = (b"hello, rpmsg", b"same code on both stacks")


class Files(Protocol):
    """Where endpoint files come from: amplink's ``RpmsgCharDriver`` (``board.files``)
    or the kernel's ``amplink.linux.LinuxRpmsgChar``."""

    def wait_file(self, timeout: float = ...) -> EptFile: ...


def talk(files: Files) -> str:
    """The application: send each word, collect the replies."""
    f = files.wait_file(10)
    try:
        replies = []
        for word in WORDS:
            f.write(word)
            replies.append(f.read(10).decode())
        return " | ".join(replies)
    finally:
        f.close()


def main(argv: list[str]) -> str:
    """Run :func:`talk` on the stack ``argv`` asks for; print and return the result."""
    if "--linux" in argv:
        result = talk(LinuxRpmsgChar())  # the one line that differs
    else:
        with Board(load_board()) as board:
            result = talk(board.files)  # the one line that differs
    print(result)
    return result


if __name__ == "__main__":
    if "--linux" in sys.argv and not os.path.isdir("/sys/bus/rpmsg"):
        sys.exit(
            "raw_client.py --linux: this kernel has no rpmsg bus (/sys/bus/rpmsg is missing); "
            "run it on an AMP board or in a Linux guest (docs/linux.md)"
        )
    try:
        main(sys.argv[1:])
    except OSError as exc:
        sys.exit(f"raw_client.py: error: {exc.strerror or exc}")
