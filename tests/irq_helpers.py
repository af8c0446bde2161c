"""A device for interrupt tests, and a log handler that signals when a line appears."""

import logging
import threading

from amplink.irq import IrqDomain, IrqLine


class LevelDevice:
    """A device whose interrupt output is one flag; its driver clears it by ``ack()``."""

    def __init__(self, line: IrqLine) -> None:
        self.asserted = False
        self.line = line
        line.add_source(lambda: self.asserted)

    def fire(self) -> None:
        self.asserted = True
        self.line.wire.pulse()

    def ack(self) -> None:
        self.asserted = False


class LogEvent(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        self.messages.append(msg)
        if self.text in msg:
            self.event.set()

    def __enter__(self) -> "LogEvent":
        logging.getLogger("amplink").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("amplink").removeHandler(self)


def started(name: str = "t", **kw) -> IrqDomain:
    d = IrqDomain(name, **kw)
    d.start()
    return d
