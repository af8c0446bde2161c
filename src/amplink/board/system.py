"""A running board: one rpmsg bus, one remote processor per core, and the host drivers.

The bus is shared, as a Linux host has one rpmsg bus for all its remote processors;
every ``rpmsg-tty`` channel gets a pty and every ``rpmsg-raw`` channel an endpoint
file, whichever core announced it.  :meth:`Board.stop` (also on leaving a ``with``
block, and when a start fails half way) stops every core and releases everything.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from amplink import ratelimit
from amplink.board.spec import BoardSpec, CoreSpec
from amplink.errors import AmplinkError
from amplink.host import Rproc, host_drivers
from amplink.remoteproc.fwref import resolve
from amplink.remoteproc.layout import glink_rsc_table
from amplink.remoteproc.loader import device_memory_size, read_firmware
from amplink.remoteproc.platform import choose_platform
from amplink.rpmsg.chardev import RpmsgCharDriver
from amplink.rpmsg.config import RpmsgConfig
from amplink.rpmsg.core import RpmsgBus
from amplink.rpmsg.tty import RpmsgTty, RpmsgTtyDriver

StepFactory = Callable[[str], AbstractContextManager[object]]


@dataclass(frozen=True)
class CoreStatus:
    """One core at one moment: what ``amplink status`` shows."""

    name: str
    personality: str
    state: str
    firmware: str
    pid: int | None
    channels: tuple[str, ...]
    messages_in: int  # rpmsg messages delivered to host endpoints since the last boot
    messages_out: int  # and sent by them
    crashes: int
    last_crash: str
    tty: str | None
    recovery: str
    coredump: str
    coredumps: int
    alias: str = ""  # remoteprocN: the kernel's name for the board's N-th core
    console: str | None = None  # a stable name for the tty (amplink up's folder)
    endpoints: tuple[str, ...] = ()  # stable names of its endpoint files (amplink up's)
    refused: dict[str, int] = field(default_factory=dict)  # by limit (RpmsgLimits), this boot
    logs_suppressed: int = 0  # log lines it provoked that the rate limit held back, in all
    gave_up: str = ""  # why recovery gave up on it (it is offline), until it boots again


def make_rproc(spec: CoreSpec, bus: RpmsgBus, coredump_dir: str | None = None) -> Rproc:
    """The remote processor a core description stands for."""
    return Rproc(
        spec.name,
        spec.firmware,
        config=spec.rproc_config(coredump_dir),
        bus=bus,
        table=glink_rsc_table() if spec.rpmsg == "glink" else None,
        platforms=spec.platforms(),
        rpmsg=RpmsgConfig(limits=spec.limits),
    )


MEMORY_FIT_RULES = ("segment-da", "memory-da")  # check_firmware: too little memory_size


def check_firmware(spec: CoreSpec) -> None:
    """Check core ``spec``'s firmware as its boot would, without booting: read it
    (``request_firmware``: ``ENOENT``, ``ENOEXEC`` for a file that is neither an ELF
    image nor a Python program, ``EINVAL`` for an image without a resource table), find
    a platform that runs it (``ENOEXEC``) and, for a core whose memory is one range
    from da 0, check that the image, the board's memories and what its resource table
    places fit in ``memory_size`` (a :class:`~amplink.remoteproc.elf.FirmwareError`
    in :data:`MEMORY_FIT_RULES`, saying what reaches too high and what to change)."""
    program = resolve(spec.firmware).is_program
    table = glink_rsc_table() if spec.rpmsg == "glink" and program else None
    image = read_firmware(spec.name, spec.firmware, table)
    platforms = spec.platforms()
    choose_platform(platforms, spec.name, image)
    if spec.emulated is None:  # an emulated core's memory map was checked with the board
        drivers = host_drivers(platforms, None, RpmsgConfig(limits=spec.limits))
        device_memory_size(spec.name, image, spec.rproc_config(), drivers)


class Board:
    """The system a :class:`~amplink.board.spec.BoardSpec` describes, ready to boot."""

    def __init__(self, spec: BoardSpec, *, coredump_dir: str | None = None) -> None:
        """``coredump_dir`` overrides the board's own (where dumps are written)."""
        self.spec = spec
        self.bus = RpmsgBus()
        self.ttys = RpmsgTtyDriver()
        self.files = RpmsgCharDriver()
        self.bus.register_driver(self.ttys)
        self.bus.register_driver(self.files)
        dump_dir = coredump_dir if coredump_dir is not None else spec.coredump_dir
        self.cores: dict[str, Rproc] = {
            c.name: make_rproc(c, self.bus, dump_dir) for c in spec.cores
        }
        self.boot_ms: dict[str, float] = {}  # how long each core's last start took
        self._closed = False

    def __repr__(self) -> str:
        return f"<Board {self.spec.name} cores={list(self.cores)}>"

    def core(self, name: str) -> Rproc:
        """The remote processor called ``name``, or ``remoteprocN`` (the board's N-th
        core, counting from 0); ``ENODEV`` naming the cores there are."""
        rp = self.cores.get(name)
        if rp is None and name.startswith("remoteproc") and name[10:].isdigit():
            index = int(name[10:])
            if index < len(self.spec.cores):
                rp = self.cores[self.spec.cores[index].name]
        if rp is None:
            raise self.spec.unknown_core(name)
        return rp

    def start(self, step: StepFactory | None = None, stop: threading.Event | None = None) -> None:
        """Boot every ``auto_boot`` core, in the file's order, each inside
        ``step(label)`` (a progress display's context manager), until ``stop`` is set.
        If one fails, the cores already started are stopped and the error propagates."""
        if self._closed:
            raise AmplinkError(errno.EINVAL, f"board {self.spec.name} was stopped; make a new one")
        around = step if step is not None else (lambda label: nullcontext())
        try:
            for spec in self.spec.cores:
                if stop is not None and stop.is_set():
                    return
                if spec.auto_boot:
                    with around(f"boot {spec.name} ({spec.firmware})"):
                        t0 = time.perf_counter()
                        self.cores[spec.name].start()
                        self.boot_ms[spec.name] = (time.perf_counter() - t0) * 1000
        except BaseException:
            self.stop()
            raise

    def wait_channels(self, name: str, services: tuple[str, ...], timeout: float = 10.0) -> None:
        """Wait until core ``name`` has announced every one of ``services``."""
        rp = self.core(name)
        deadline = time.monotonic() + timeout
        for service in services:
            rp.wait_channel(service, max(0.0, deadline - time.monotonic()))

    def channels(self, name: str) -> tuple[str, ...]:
        """The names of the channels core ``name`` has on the bus now."""
        links = self.core(name).links
        return tuple(sorted(d.name for d in self.bus.devices() if d.link in links))

    def tty(self, name: str) -> RpmsgTty | None:
        """The pty of core ``name``'s ``rpmsg-tty`` channel, if it has one now."""
        links = self.core(name).links
        for t in list(self.ttys.ttys.values()):
            if t.rpdev.link in links:
                return t
        return None

    def status(self) -> list[CoreStatus]:
        """Every core's state, channels and counters."""
        out = []
        for i, (name, rp) in enumerate(self.cores.items()):
            links = rp.links
            tty = self.tty(name)
            out.append(
                CoreStatus(
                    name=name,
                    personality=self.spec.core(name).personality,
                    state=rp.state,
                    firmware=rp.firmware,
                    pid=rp.pid,
                    channels=self.channels(name),
                    messages_in=sum(link.messages_in for link in links),
                    messages_out=sum(link.messages_out for link in links),
                    crashes=rp.crash_count,
                    last_crash=rp.last_crash[1] if rp.last_crash else "",
                    tty=tty.path if tty is not None else None,
                    recovery=rp.sysfs.recovery,
                    coredump=rp.sysfs.coredump,
                    coredumps=rp.dumps_taken,
                    alias=f"remoteproc{i}",
                    refused=_sum_counts(link.refused for link in links),
                    logs_suppressed=sum(ratelimit.suppressed(link.name) for link in links),
                    gave_up=rp.gave_up or "",
                )
            )
        return out

    def stop(self) -> None:
        """Stop every core and release the drivers. Idempotent; the board cannot be
        started again afterwards (make a new one)."""
        errors = []
        for rp in self.cores.values():
            try:
                rp.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(f"{rp.name}: {exc.strerror if isinstance(exc, OSError) else exc}")
        if not self._closed:
            self._closed = True
            self.bus.unregister_driver(self.ttys)
            self.bus.unregister_driver(self.files)
        if errors:
            raise AmplinkError(errno.EIO, "stopping the board: " + "; ".join(errors))

    def __enter__(self) -> Board:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, n in one.items():
            total[key] = total.get(key, 0) + n
    return total
