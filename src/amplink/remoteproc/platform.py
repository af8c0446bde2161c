"""The platform driver interface: what runs one remote core, for the remoteproc core.

On Linux a platform driver (``imx_rproc``, ``ti_k3_r5_remoteproc``...) gives the core
its ``rproc_ops``: start and stop the processor, attach to one a boot loader started,
kick it, and report its crashes.  Here that is :class:`RprocPlatform`, made per boot by a
:class:`PlatformDriver`; which driver runs an image is chosen by the image itself
(:func:`choose_platform`: the first driver that :meth:`~PlatformDriver.runs` it), so a
core that is a Python process (:mod:`amplink.remoteproc.process`) and one whose process
emulates a CPU can sit side by side.

What the remoteproc core does around the platform (load the image, handle its
resources, bring up vdevs and subdevices, crash handling) is the same for all.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from amplink.errors import AmplinkError

if TYPE_CHECKING:  # types only: a core process reads no ELF (this keeps it from loading it)
    from amplink.memory.addrmap import Mapping
    from amplink.memory.region import SharedRegion
    from amplink.remoteproc.config import RprocConfig
    from amplink.remoteproc.elf import FirmwareImage
    from amplink.remoteproc.elf_writer import Note
    from amplink.wire.protocol import Features

NotifyHandler = Callable[[int], None]
CrashHandler = Callable[[int, str], None]


class RprocPlatform(ABC):
    """One core as its platform runs it (Linux: ``rproc_ops`` and the driver's state).

    The remoteproc core sets :attr:`on_notify` (a word the core sent that is a vring
    notify id: call it from any thread, typically an IRQ thread) and :attr:`on_crash`
    (``(crash type, reason)``, from any thread) before it starts the platform."""

    def __init__(self, name: str, *, spin: bool) -> None:
        self.name = name
        self.spin = spin  # whether polling the core's rings is worthwhile
        self.on_notify: NotifyHandler = lambda notifyid: None
        self.on_crash: CrashHandler = lambda kind, reason: None
        self.crash_detail = ""  # what the core left about its crash (a traceback), if any

    @property
    def pid(self) -> int | None:
        """The OS process that is the core, while it runs (None if there is none)."""
        return None

    def take_notifications(
        self,
        fds: Sequence[int],
        timeout: float | None,
        ready: Callable[[], bool] | None,
        start: Callable[[], object] | None = None,
    ) -> bool | None:
        """Sleep until one of ``fds`` is readable or ``ready()`` holds after a kick
        (True), or until ``timeout`` s pass (False), taking the core's kicks in the
        calling thread meanwhile
        (:class:`amplink.wait.TakeNotifications`; ``start`` is called once they are
        taken); None: this platform cannot (the caller waits for its kicks the
        ordinary way, and ``start`` is not called)."""
        return None

    @property
    @abstractmethod
    def exit_code(self) -> int | None:
        """How the core last ended (negative: killed by that signal), None while it runs."""

    def status(self) -> int:
        """The core-control STATUS word (BOOTED, WFI, HALTED; :mod:`amplink.hw.core_ctrl`)."""
        return 0

    def memory_map(self) -> Sequence[Mapping] | None:
        """The core's device memory as the CPU sees it: each window's device address,
        size, name and offset in the one shared region that holds them all (a Cortex-M's
        TCMs and its DDR window, say); the loader places segments, the resource table,
        vrings and buffers in them.  None (the default): one window from da 0, sized
        for the image and its resources, of at most ``RprocConfig.memory_size`` bytes."""
        return None

    def mailbox_ping(self, timeout: float) -> float:
        """The round trip (s) of ``RP_MBOX_ECHO_REQUEST`` through the core's mailbox,
        answered with ``RP_MBOX_ECHO_REPLY`` by its interrupt handler (two interrupt
        latencies and one handler; TI's ``omap_remoteproc`` defines the pair).
        ``ETIMEDOUT`` without an answer within ``timeout`` s; ``EOPNOTSUPP`` for a
        platform without a mailbox."""
        raise AmplinkError(errno.EOPNOTSUPP, f"{self.name}: this platform has no mailbox echo")

    def coredump_notes(self) -> tuple[Note, ...]:
        """ELF notes for a dump of the core as it was when last reset (an ``NT_PRSTATUS``
        with its registers, for a platform that knows them); none by default.  Asked
        after :meth:`release`."""
        return ()

    # -- ops -------------------------------------------------------------------------
    @abstractmethod
    def power_on(self, region: SharedRegion, table_da: int, table_len: int, entry: int) -> None:
        """Release the core from reset at ``entry`` with its device memory loaded (what
        a boot loader does); the host side is :meth:`connect`."""

    @abstractmethod
    def connect(self, features: Features) -> None:
        """The host side (``ops->attach``): the notify path, crash detection, and the
        watchdog the firmware asked for.  Undone by :meth:`disconnect`."""

    @abstractmethod
    def disconnect(self) -> None:
        """Release the host side only; the core keeps running (``ops->detach``)."""

    def wait_unbound(self, timeout: float) -> None:  # noqa: B027 (a hook)
        """Before the host lays out fresh rings for a core it attaches to again: wait
        until the core no longer uses the old ones (``ETIMEDOUT`` after ``timeout``
        s).  Platforms whose cores cannot tell return at once."""

    @abstractmethod
    def kick(self, notifyid: int) -> None:
        """Notify the core about vring (or edge) ``notifyid`` (``ops->kick``)."""

    def shutdown(self, ack_timeout: float, wfi_timeout: float) -> None:  # noqa: B027 (a hook)
        """Ask the core to stop before it is reset (TI K3's handshake): ``EBUSY`` if it
        does not acknowledge (it keeps running), ``ETIMEDOUT`` if it does not reach
        WFI.  Platforms without a handshake need nothing: a stop is a reset."""

    @abstractmethod
    def release(self) -> None:
        """Reset the core and release everything :meth:`power_on` and :meth:`connect`
        created (``ops->stop``); idempotent."""

    def start(
        self, region: SharedRegion, table_da: int, table_len: int, entry: int, features: Features
    ) -> None:
        """``ops->start``: power on and connect; on failure everything is released
        before the error propagates."""
        try:
            self.power_on(region, table_da, table_len, entry)
            self.connect(features)
        except BaseException:
            self.release()
            raise


class PlatformDriver(Protocol):
    """Runs some kinds of image: makes the platform of one core, per boot."""

    name: str

    def runs(self, image: FirmwareImage) -> bool:
        """Whether this platform can execute ``image`` (by its machine and kind)."""

    def describe(self) -> str:
        """What this platform runs, for the error that names what none can run."""

    def create(self, name: str, image: FirmwareImage, config: RprocConfig) -> RprocPlatform:
        """The platform for core ``name`` running ``image``, configured by ``config``."""


def choose_platform(
    drivers: Sequence[PlatformDriver], name: str, image: FirmwareImage
) -> PlatformDriver:
    """The first of ``drivers`` that runs ``image``; ``ENOEXEC`` naming what each runs."""
    for drv in drivers:
        if drv.runs(image):
            return drv
    runnable = "; ".join(drv.describe() for drv in drivers) or "nothing"
    raise AmplinkError(
        errno.ENOEXEC,
        f"{name}: no platform runs {image.name} ({image.machine_name}, {image.elf_type}); "
        f"amplink loads and inspects any ELF, but runs only: {runnable}",
    )
