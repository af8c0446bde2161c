"""An OpenAMP linux-machine application as a remote processor of amplink's host.

amplink is the virtio **driver** (the host, as Linux's ``virtio_rpmsg_bus``) of an
OpenAMP application that runs the device role over the linux-machine transport
(:mod:`amplink.transport.openamp_linux`): OpenAMP's ``rpmsg-echo``,
``rpmsg-nocopy-echo``, ``matrix_multiplyd``, or the user's own.  Its name-service
announcements become channels on an :class:`~amplink.rpmsg.RpmsgBus`, so endpoints,
endpoint files, ttys and asyncio work over it unchanged::

    with OpenAmpRemote(command=["rpmsg-echo-shared"]) as rp:
        ept = rp.wait_channel("rpmsg-openamp-demo-channel", 10).create_ept()
        ept.send(b"hello")
        print(ept.recv(timeout=5).data)

Which side is the socket server is free (``server=True``: amplink writes the resource
table and listens, and an OpenAMP peer is started with ``argv[1] = 1``); by default
amplink is the client, as OpenAMP's remote demos expect.  A peer that exits or is
killed fails the link: endpoints get ``EPIPE`` and the channels are removed; after
:meth:`OpenAmpRemote.stop`, :meth:`OpenAmpRemote.start` meets a restarted peer.
"""

from __future__ import annotations

import errno
import itertools
import os

from amplink.errors import AmplinkError, RpmsgError
from amplink.rpmsg.core import RpmsgBus, RpmsgDevice
from amplink.rpmsg.ns import NameService
from amplink.rpmsg.virtio_link import DEFAULT_SEND_TIMEOUT, RpmsgBuffers, VirtioRpmsgHost
from amplink.transport.openamp_linux import (
    KickListener,
    KickSocket,
    Session,
    ShmObject,
    connect,
    open_session,
    shm_path,
)
from amplink.transport.openamp_peer import PeerProcess
from amplink.transport.spin import AdaptiveSpin
from amplink.wire import openamp_linux as ol

_unique = itertools.count()
# The layout's pool: 256 receive buffers, then 256 send buffers, of 512 bytes.
BUFFERS = RpmsgBuffers(ol.RPMSG_BUFFER_SIZE, ol.RPMSG_BUFFER_SIZE, ol.VRING_NUM, ol.VRING_NUM)


class OpenAmpRemote:
    """One OpenAMP application met over the linux-machine layout, amplink as its host.

    ``command`` starts the application (isolated in a private mount namespace unless
    ``isolate=False``, see :mod:`amplink.transport.openamp_peer`); without one amplink
    meets an application started by someone else, at ``shm`` (default ``openamp.shm``)
    and ``socket_path`` (default ``/tmp/openamp.event.0``).
    """

    def __init__(
        self,
        name: str = "openamp",
        *,
        server: bool = False,
        shm: str | None = None,
        socket_path: str | None = None,
        command: list[str] | None = None,
        isolate: bool = True,
        bus: RpmsgBus | None = None,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        spin: bool = True,
    ) -> None:
        self.name = name
        self.server = server
        self.command = command
        self.isolate = isolate and command is not None
        self._shm_name = shm
        self._socket_path = socket_path
        self.bus = bus if bus is not None else RpmsgBus()
        self.send_timeout = send_timeout
        self.spin = spin
        self.peer: PeerProcess | None = None
        self.session: Session | None = None
        self.link: VirtioRpmsgHost | None = None

    @property
    def shm_name(self) -> str:
        """The shared-memory object amplink uses (a unique one for an isolated peer)."""
        if self._shm_name is None:
            isolated = self.isolate
            self._shm_name = (
                f"amplink-openamp-{os.getpid()}-{next(_unique)}" if isolated else ol.SHM_NAME
            )
        return self._shm_name

    def start(self, timeout: float = 30.0) -> None:
        """Start the application (if a command was given), make the connection and bring
        rpmsg up as the virtio driver.  ``ETIMEDOUT`` if no peer came within ``timeout``
        s; ``EPIPE`` if the started application exited first (its output is in the
        message).  Everything started is released again on failure."""
        if self.link is not None:
            raise AmplinkError(errno.EBUSY, f"{self.name} is already started")
        peer = None
        shm = None
        listener = None
        shm_file = shm_path(self.shm_name)  # EINVAL for a bad name, before any wait
        try:
            if self.command is not None:
                peer = self.peer = PeerProcess(
                    self.command,
                    isolate=self.isolate,
                    socket_path=self._socket_path or ol.SOCKET_PATH,
                )
                path = peer.socket_path
            else:
                path = self._socket_path or ol.SOCKET_PATH
            if self.server or self.isolate:  # the object must exist before the peer starts
                shm = ShmObject(self.shm_name, owner=True)
            if self.server:
                assert shm is not None
                shm.write_table()
                listener = KickListener(path)
            if peer is not None:
                peer.start(shm_file)
            watch = [peer.pidfd] if peer is not None else []
            kicks: KickSocket | None
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
            session = self.session = open_session(shm, kicks, self.shm_name, f"{self.name}.socket")
            shm = None  # the session owns it now
            self._bring_up(session)
        except BaseException:
            if listener is not None:
                listener.close()
            if shm is not None:
                shm.close()
            self.stop()
            raise

    def _bring_up(self, session: Session) -> None:
        link = VirtioRpmsgHost(
            f"{self.name}.vdev0",
            session.shm.region,
            session.shm.amap,
            session.vdev(),
            lambda _index: session.kicks.kick(),
            pool_da=ol.SHARED_BUF_PA,
            buffers=BUFFERS,
            send_timeout=self.send_timeout,
            spin=AdaptiveSpin(enabled=self.spin),
        )
        self.link = link
        NameService(self.bus, link)
        link.fail_listeners.append(lambda err: self.bus.remove_link(link, err))
        session.start(link.handle_notify, link.fail)
        link.handle_notify()  # the remote may have announced before the thread ran

    def wait_channel(self, name: str, timeout: float | None = None) -> RpmsgDevice:
        """The channel ``name`` the application announced (waits up to ``timeout`` s;
        ``EPIPE`` at once if the application goes away meanwhile)."""
        link = self.link
        if link is None:
            raise AmplinkError(errno.ENODEV, f"{self.name} is not started")
        return self.bus.wait_for_device(name, timeout, link=link)

    def stop(self) -> None:
        """Fail the link (``ESHUTDOWN`` for whoever still uses it), close the connection
        and the shared memory, and end the application if amplink started it.
        Idempotent."""
        link, self.link = self.link, None
        if link is not None:
            link.fail(RpmsgError(errno.ESHUTDOWN, f"{self.name} was stopped"))
            link.quiesce()
        session, self.session = self.session, None
        if session is not None:
            session.close()
            session.shm.close()
        if self.peer is not None:
            self.peer.close()

    def __enter__(self) -> OpenAmpRemote:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
