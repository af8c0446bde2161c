"""Boards: a system described in TOML (memories, mailbox units, remote cores) and the
running system built from it.

:func:`load_board` reads and checks a description (the built-in default board without
a file); :class:`Board` boots it: one rpmsg bus, one :class:`~amplink.remoteproc.Rproc`
per core, and the host drivers that give ``rpmsg-raw`` channels a file and
``rpmsg-tty`` channels a pty.
"""

from amplink.board.spec import BoardError, BoardSpec, CoreSpec, load_board, parse_board
from amplink.board.system import Board, CoreStatus

__all__ = [
    "Board",
    "BoardError",
    "BoardSpec",
    "CoreSpec",
    "CoreStatus",
    "load_board",
    "parse_board",
]
