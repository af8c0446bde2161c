"""A driver that makes one object per channel it binds (a pty, an endpoint file...)."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from amplink.errors import RpmsgError
from amplink.rpmsg.core import DriverCallback, RpmsgDevice, RpmsgDriver

T = TypeVar("T")


class PerDeviceDriver(RpmsgDriver, Generic[T]):
    """Subclasses say how to :meth:`create` and :meth:`destroy` the object of one
    channel; :attr:`instances` holds them by device id while the channels exist."""

    def __init__(
        self, name: str, id_table: tuple[str, ...], *, callback: DriverCallback | None = None
    ) -> None:
        super().__init__(name, id_table, callback=callback)
        self.instances: dict[str, T] = {}
        self._devices: dict[str, RpmsgDevice] = {}  # the channels of the instances
        self._changed = threading.Condition()
        self._listeners: list[Callable[[RpmsgDevice, T | None], None]] = []

    def add_listener(self, listener: Callable[[RpmsgDevice, T | None], None]) -> None:
        """Call ``listener(rpdev, obj)`` for each object there is now and after each
        one is made, and ``listener(rpdev, None)`` before one is destroyed (in the bus's
        context, with this driver's lock held: it must not block)."""
        with self._changed:
            self._listeners.append(listener)
            for key, obj in self.instances.items():
                listener(self._devices[key], obj)

    def remove_listener(self, listener: Callable[[RpmsgDevice, T | None], None]) -> None:
        """Stop calling ``listener``."""
        with self._changed:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def create(self, rpdev: RpmsgDevice) -> T:
        """Make the object for one channel (subclasses say how)."""
        raise NotImplementedError

    def destroy(self, obj: T) -> None:
        """Release the object of a channel that went away."""
        raise NotImplementedError

    def probe(self, rpdev: RpmsgDevice) -> None:
        """Make the channel's object and keep it in :attr:`instances`."""
        obj = self.create(rpdev)
        with self._changed:
            self.instances[rpdev.id] = obj
            self._devices[rpdev.id] = rpdev
            self._changed.notify_all()
            for listener in self._listeners:
                listener(rpdev, obj)

    def remove(self, rpdev: RpmsgDevice) -> None:
        """Forget the channel's object and destroy it."""
        with self._changed:
            obj = self.instances.pop(rpdev.id, None)
            self._devices.pop(rpdev.id, None)
            if obj is not None:
                for listener in self._listeners:
                    listener(rpdev, None)
        if obj is not None:
            self.destroy(obj)

    def wait_first(self, timeout: float = 10.0) -> T:
        """The first object made (waits for a matching channel to appear)."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self.instances), timeout):
                raise RpmsgError(
                    errno.ETIMEDOUT, f"no {'/'.join(self.id_table)} channel within {timeout}s"
                )
            return next(iter(self.instances.values()))
