"""An OpenAMP linux-machine application as a remote processor: amplink is its host (the
virtio driver, as Linux's ``virtio_rpmsg_bus``) over the linux-machine transport
(:mod:`amplink.transport.openamp_linux`): OpenAMP's ``rpmsg-echo``,
``rpmsg-nocopy-echo``, ``matrix_multiplyd``, or the user's own application.

:class:`OpenAmpRproc` makes the connection (which side listens on the socket is free:
the server writes the resource table into the object before it listens), reads the
table from the object as hostile input, and brings the vdev up as any other: an
:class:`~amplink.remoteproc.vdev.RprocVdev` to which the virtio driver of the table's
device id binds (the registry the host passes in: :mod:`amplink.bindings`).  The vdev
lies in a *mirror* of the object, a region of amplink's own; the relay process
(:mod:`amplink.transport.openamp_relay`), the only one that maps the peer's object,
moves the buffers between the two.  A peer that shrinks its object kills the relay, not
this process.

A peer that exits or is killed, breaks its rings or shrinks its object ends the relay:
the vdev is stopped with that error (the driver's users get it, e.g. ``EPIPE`` on
every endpoint, and the channels leave the bus); after :meth:`OpenAmpRproc.stop`,
:meth:`OpenAmpRproc.start` meets a restarted peer.  amplink's host with its rpmsg bus is
:class:`amplink.host.OpenAmpRemote`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading

from amplink.errors import AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.remoteproc.devmem import DmaPool
from amplink.remoteproc.vdev import RprocVdev
from amplink.transport.openamp_linux import KickListener, KickSocket, ShmFile, connect, shm_path
from amplink.transport.openamp_peer import PeerProcess
from amplink.transport.openamp_relay import RelayProcess
from amplink.transport.unix import readable
from amplink.virtio.bus import Binding, VirtioBus
from amplink.virtio.device import DRIVER
from amplink.wire import openamp_linux as ol

log = logging.getLogger(__name__)

_unique = itertools.count()


class OpenAmpRproc:
    """One OpenAMP application met over the linux-machine layout, amplink as its host,
    its vdev driven by the driver ``virtio`` has for the table's device id.

    ``command`` starts the application (isolated in a private mount namespace unless
    ``isolate=False``, see :mod:`amplink.transport.openamp_peer`); without one amplink
    meets an application started by someone else, at ``shm`` (default ``openamp.shm``)
    and ``socket_path`` (default ``/tmp/openamp.event.0``).  ``server``: amplink writes
    the table and listens (start an OpenAMP peer with ``argv[1] = 1`` then); by default
    amplink connects, as OpenAMP's remote demos expect.  ``spin``: whether the driver
    may busy-poll its rings.
    """

    def __init__(
        self,
        name: str,
        virtio: VirtioBus,
        *,
        server: bool = False,
        shm: str | None = None,
        socket_path: str | None = None,
        command: list[str] | None = None,
        isolate: bool = True,
        spin: bool = True,
    ) -> None:
        self.name = name
        self.virtio = virtio
        self.server = server
        self.command = command
        self.isolate = isolate and command is not None
        self.socket_path = socket_path or ol.SOCKET_PATH
        if shm is None:
            shm = f"amplink-openamp-{os.getpid()}-{next(_unique)}" if self.isolate else ol.SHM_NAME
        self.shm_name = shm
        self.spin = spin
        self.peer: PeerProcess | None = None
        self.vdev: RprocVdev | None = None
        self.failure: OSError | None = None
        self._shm: ShmFile | None = None
        self._mirror: SharedRegion | None = None
        self._relay: RelayProcess | None = None
        self._stop_fd = -1
        self._ending = False  # shutdown(): the peer's end is expected
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()  # the vdev's stop: the watcher's or stop()'s

    @property
    def binding(self) -> Binding | None:
        """The driver's side of the vdev while it is up."""
        vdev = self.vdev
        return vdev.binding if vdev is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start the application (if a command was given), make the connection, read
        the table and bind the driver.  ``ETIMEDOUT`` if no peer came within
        ``timeout`` s; ``EPIPE`` if the started application exited first (its output is
        in the message); ``ENODEV`` if no driver drives the table's device.  Everything
        started is released again on failure."""
        if self._relay is not None:
            raise AmplinkError(errno.EBUSY, f"{self.name} is already started")
        self.failure = None
        self._ending = False
        path = shm_path(self.shm_name)  # EINVAL for a bad name, before any wait
        listener = None
        try:
            if self.command is not None:
                self.peer = PeerProcess(
                    self.command, isolate=self.isolate, socket_path=self.socket_path
                )
            sock_path = self.peer.socket_path if self.peer is not None else self.socket_path
            if self.server or self.isolate:  # the object must exist before the peer starts
                self._shm = ShmFile(self.shm_name, owner=True)
            if self.server:
                assert self._shm is not None
                self._shm.write_table()
                listener = KickListener(sock_path)
            if self.peer is not None:
                self.peer.start(path)
            kicks = self._connect(listener, sock_path, timeout)
            try:
                if self._shm is None:  # a client opens the object its server made
                    self._shm = ShmFile(self.shm_name, owner=False, create=False)
                page, entry = self._shm.read_table()
                driver = self.virtio.driver_for(entry.id)
                if driver is None:
                    raise AmplinkError(
                        errno.ENODEV, f"{self.name}: no driver for virtio device id {entry.id}"
                    )
                mirror = self._mirror = SharedRegion.create(ol.SHM_SIZE, f"{self.name}-mirror")
                mirror.mem[: len(page)] = page
                relay = self._relay = RelayProcess(self.name, self._shm.fd, kicks, mirror)
            finally:
                kicks.close()  # the relay holds the peer's end alone
            vdev = self.vdev = RprocVdev(
                f"{self.name}.vdev0",
                mirror,
                AddressMap.identity(ol.SHM_SIZE, "shm"),
                ol.RSC_TABLE_PA,
                entry,
                DRIVER,
                lambda _notifyid: relay.kick(),
                spin=self.spin,
                driver=driver,
                pool=DmaPool(f"{self.name}.vdev0", ol.SHARED_BUF_PA, ol.SHARED_BUF_SIZE),
            )
            self._stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._watcher = threading.Thread(
                target=self._watch, args=(relay, vdev), name=f"openamp-{self.name}", daemon=True
            )
            self._watcher.start()
            vdev.start()
        except BaseException:
            if listener is not None:
                listener.close()
            self.stop()
            raise
        if listener is not None:
            listener.close()

    def _connect(self, listener: KickListener | None, path: str, timeout: float) -> KickSocket:
        peer = self.peer
        watch = [peer.pidfd] if peer is not None else []
        if listener is not None:
            kicks = listener.accept(watch, timeout)
            if kicks is None and (peer is None or peer.returncode is None):
                raise AmplinkError(
                    errno.ETIMEDOUT,
                    f"no OpenAMP application connected to {path} within {timeout}s",
                )
        else:
            kicks = connect(path, watch, timeout)
        if kicks is None:
            assert peer is not None
            peer.wait(1.0)
            raise AmplinkError(
                errno.EPIPE, f"the OpenAMP application ended first: {peer.describe()}"
            )
        return kicks

    def _watch(self, relay: RelayProcess, vdev: RprocVdev) -> None:
        """The relay's kicks reach the driver; its end stops the vdev with the reason."""
        fds = [relay.call_fd, relay.pidfd, self._stop_fd]
        while True:
            ready = readable(fds, None)
            if self._stop_fd in ready:
                return
            if relay.call_fd in ready:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(relay.call_fd)
                vdev.handle_notify()
            if relay.pidfd in ready:
                error = relay.outcome()
                if self._ending and error.errno == errno.EPIPE:
                    error = AmplinkError(errno.ESHUTDOWN, f"{self.name}: the OpenAMP peer ended")
                    log.info("%s", error.strerror)
                else:
                    log.warning("%s", error.strerror)
                with self._lock:
                    if self.failure is None:
                        self.failure = error
                        vdev.salvage()  # what the relay delivered before it ended
                        vdev.stop(error, crashed=True)
                return

    def shutdown(self, timeout: float) -> bool:
        """Stop once the peer has ended by itself: OpenAMP's remotes close their socket
        and exit when the host withdrew their channel (the goodbye, which the caller
        sends).  Waits up to ``timeout`` s for that, then :meth:`stop`; the link's users
        get ``ESHUTDOWN`` rather than ``EPIPE``.  True if the peer ended in time."""
        self._ending = True
        relay = self._relay
        ended = relay is not None and bool(readable([relay.pidfd], timeout))
        if ended and self.peer is not None:
            self.peer.wait(timeout)  # a started peer exits right after its socket closed
        self.stop()
        return ended

    def stop(self) -> None:
        """Take the driver down (``ESHUTDOWN`` for whoever still uses it), stop the
        relay, release the mirror and the object (removed if amplink made it), and end
        the application if amplink started it.  Idempotent."""
        if self._stop_fd >= 0:
            os.eventfd_write(self._stop_fd, 1)
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        vdev, self.vdev = self.vdev, None
        if vdev is not None:
            with self._lock:
                if self.failure is None:
                    self.failure = AmplinkError(errno.ESHUTDOWN, f"{self.name} was stopped")
                    vdev.stop(self.failure, crashed=False)  # a reset: the relay ends
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()
        for res in (self._mirror, self._shm, self.peer):
            if res is not None:
                res.close()
        self._mirror = self._shm = None
        if self._stop_fd >= 0:
            os.close(self._stop_fd)
            self._stop_fd = -1

    def __enter__(self) -> OpenAmpRproc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
