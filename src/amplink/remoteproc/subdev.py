"""Subdevices and the handlers that make them from resource entries.

Everything a core carries besides its processor is a *subdevice* with the lifecycle of
Linux's ``struct rproc_subdev``: :meth:`~RprocSubdev.prepare` before the core starts (or
is attached), :meth:`~RprocSubdev.start` after, :meth:`~RprocSubdev.stop` before it
stops (or after it crashed), :meth:`~RprocSubdev.unprepare` after.  A vdev is one
(:class:`~amplink.remoteproc.vdev.RprocVdev`, which binds a virtio driver), and so is
whatever a resource entry asks for: a trace buffer, amplink's features entry, a GLINK
edge.

A :class:`ResourceHandler` turns the entries of one resource type into subdevices while
the loaded table is handled (Linux's per-type ``rproc_handle_*``); a
:class:`ResourceHandlers` registry finds the handler of a type.  Handlers get a
:class:`ResourceContext`: the device memory, whether to place (boot) or adopt what a
boot loader placed (attach), the notify path, and where to report a crash.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from amplink.remoteproc.devmem import DeviceMemory
from amplink.virtio.bus import Binding
from amplink.wait import TakeNotifications
from amplink.wire import rsc_table as rt

RSC_HANDLED = 0
RSC_IGNORED = 1
VendorHook = Callable[[rt.OpaqueEntry], int]  # the platform's hook for unclaimed vendor entries


class RprocSubdev:
    """Something a core carries (Linux: ``struct rproc_subdev``); every step is optional.

    ``detachable`` says whether the host can let go of it while the core runs on (a
    vdev can: the device sees its reset; a GLINK edge cannot tell the core)."""

    name: str = "subdevice"
    detachable: ClassVar[bool] = True

    def prepare(self) -> None:
        """Before the core starts or is attached."""

    def start(self) -> None:
        """After the core started or was attached."""

    def salvage(self) -> dict[int, int]:
        """The core died: take in what it had sent, and count, per source address,
        what was sent to it and never consumed (before :meth:`stop`)."""
        return {}

    def stop(self, error: OSError, *, crashed: bool) -> None:
        """Before the core stops (``crashed``: after it died); users get ``error``."""

    def unprepare(self) -> None:
        """After the core stopped (or was detached)."""


class BoundSubdev(RprocSubdev):
    """A subdevice through which a driver talks to the core: while it is up,
    :attr:`binding` is the driver's side (a vdev's driver, a GLINK edge's link), which
    the core's kicks reach and which salvages what a dead core sent."""

    binding: Binding | None = None

    def handle_notify(self) -> None:
        """A kick from the core for this subdevice: the driver takes a look."""
        binding = self.binding
        if binding is not None:
            binding.handle_notify()

    def salvage(self) -> dict[int, int]:
        binding = self.binding
        if binding is None:
            return {}
        binding.take_in_last()
        return binding.unconsumed()


NotifyRoute = Callable[[int, Callable[[], None]], None]


@dataclass
class ResourceContext:
    """What a handler gets while one core's loaded table is handled (host side).

    ``placing`` is True at boot (allocate memory and write addresses back into the
    table) and False on attach (a boot loader placed everything: adopt it).  ``kick``
    sends a notify id to the core; ``route(notifyid, handler)`` makes the core's kicks
    with that id call ``handler``; ``next_notifyid()`` allocates notify ids (in table
    order from 0, as Linux's idr does); ``spin`` says whether polling the core's memory
    is worthwhile; ``report_crash(type, reason)`` reports a crash (a subdevice whose
    memory the core broke: ``mmufault``); ``take_notifications``, where the platform
    has one, lets a waiter take the core's kicks in its own thread
    (:class:`amplink.wait.TakeNotifications`); ``peer_pid()`` is the core's process
    (None when it has none), whose spinners watch it (:class:`amplink.wait.AdaptiveSpin`)."""

    name: str
    memory: DeviceMemory
    placing: bool
    kick: Callable[[int], None]
    route: NotifyRoute
    next_notifyid: Callable[[], int]
    spin: bool
    report_crash: Callable[[int, str], None]
    take_notifications: TakeNotifications | None = None
    peer_pid: Callable[[], int | None] | None = None


class ResourceHandler(ABC):
    """Handles the entries of one resource type (:attr:`rsc_type`)."""

    rsc_type: ClassVar[int]

    def placement(self, entry: rt.Entry) -> tuple[int, int] | None:
        """``(bytes, device address)`` this entry's subdevice will place in device memory
        (the address ``FW_RSC_ADDR_ANY``: anywhere), to size the region; None: nothing."""
        return None

    @abstractmethod
    def handle(self, index: int, entry: rt.Entry, ctx: ResourceContext) -> RprocSubdev | None:
        """Check entry ``index`` and make its subdevice (None: nothing to carry).  A
        negative answer is an ``OSError`` with the errno that fails the boot."""


class ResourceHandlers:
    """The handlers of one system, by resource type (one handler per type)."""

    def __init__(self, handlers: Iterable[ResourceHandler] = ()) -> None:
        self._by_type = {h.rsc_type: h for h in handlers}

    def get(self, rsc_type: int) -> ResourceHandler | None:
        """The handler of ``rsc_type``, if there is one."""
        return self._by_type.get(rsc_type)

    def placements(self, table: rt.ResourceTable) -> list[tuple[int, int]]:
        """What the handled entries of ``table`` will place: ``(bytes, device address)``."""
        out = []
        for entry in table.entries:
            handler = self._by_type.get(rt.entry_type(entry))
            placed = handler.placement(entry) if handler is not None else None
            if placed is not None:
                out.append(placed)
        return out
