"""Firmware whose main raises an exception that is hard to show (which: by the core's name): a
BaseException that is no Exception, or one whose ``__traceback__`` raises.  The crash
is reported all the same (hostile review: the first skipped the crash note, the second
broke its formatting)."""

from amplink.remote import Core


class Halt(BaseException):
    """Not an Exception."""


class Unshowable(Exception):
    @property  # type: ignore[override]
    def __traceback__(self) -> None:
        raise RuntimeError("no traceback to give")


def main(core: Core) -> None:
    if core.name.endswith("unshowable"):
        raise Unshowable("cannot be shown")
    raise Halt("halted at start")
