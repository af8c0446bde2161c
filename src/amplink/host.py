"""The host API: a remote processor with the host's drivers bound to what it carries.

:class:`Rproc` is the remoteproc core (:class:`amplink.remoteproc.rproc.Rproc`) with the
drivers of a host (:mod:`amplink.bindings`): rpmsg binds to its rpmsg vdev or GLINK edge,
and the channels its firmware announces appear on an rpmsg bus (:attr:`Rproc.bus`, its
own or one shared by a board), where :meth:`Rproc.wait_channel` finds them.  Which
platform runs a firmware image is chosen from :data:`PLATFORMS` by the image.
:class:`OpenAmpRemote` is an OpenAMP linux-machine application as a remote processor,
with the same drivers.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from amplink.bindings import resource_handlers, virtio_drivers
from amplink.errors import AmplinkError
from amplink.remoteproc import loader
from amplink.remoteproc import rproc as remoteproc
from amplink.remoteproc.config import CrashLoop, RprocConfig
from amplink.remoteproc.drivers import RprocDrivers
from amplink.remoteproc.emulated import EmulatedPlatformDriver
from amplink.remoteproc.loader import BootedImage
from amplink.remoteproc.openamp import OpenAmpRproc
from amplink.remoteproc.platform import PlatformDriver
from amplink.remoteproc.process import ProcessPlatformDriver
from amplink.remoteproc.states import RUNNING
from amplink.rpmsg.config import RpmsgBuffers, RpmsgConfig
from amplink.rpmsg.core import RpmsgBus, RpmsgDevice, RpmsgLink, RpmsgLinks
from amplink.wire import rsc_table as rt

__all__ = [
    "PLATFORMS",
    "CrashLoop",
    "OpenAmpRemote",
    "RpmsgBuffers",
    "RpmsgConfig",
    "Rproc",
    "RprocConfig",
    "boot_core",
    "host_drivers",
]

PLATFORMS: tuple[PlatformDriver, ...] = (ProcessPlatformDriver(), EmulatedPlatformDriver())
"""The platforms a host here has, in the order they are asked whether they run an image:
a process (packed Python firmware, executables for this machine) and an emulated
i.MX8M Plus-like Cortex-M7 (Cortex-M images; a board describes other SoCs)."""


def host_drivers(
    platforms: Sequence[PlatformDriver],
    links: RpmsgLinks | None,
    config: RpmsgConfig | None = None,
) -> RprocDrivers:
    """What a host's remote processor binds: its ``platforms``, then the virtio drivers
    and resource handlers of :mod:`amplink.bindings`, whose rpmsg links join ``links``
    (None: nothing comes up, as for a boot loader, which only places what the drivers
    will need)."""
    return RprocDrivers(
        tuple(platforms), virtio_drivers(links, config), resource_handlers(links, config)
    )


class Rproc(remoteproc.Rproc):
    """One remote processor running ``firmware`` (an ELF file, or a Python program packed
    with ``table``), with rpmsg on ``bus`` (a new bus if None).

    ``config`` holds the processor's settings (:class:`RprocConfig`), ``rpmsg`` those of
    the host's rpmsg drivers (buffer sizes, send timeout); ``attach`` is a core a boot
    loader started (:func:`boot_core`), which the first :meth:`boot` attaches to."""

    def __init__(
        self,
        name: str,
        firmware: str,
        *,
        config: RprocConfig | None = None,
        rpmsg: RpmsgConfig | None = None,
        bus: RpmsgBus | None = None,
        table: rt.ResourceTable | None = None,
        attach: BootedImage | None = None,
        platforms: Sequence[PlatformDriver] = PLATFORMS,
    ) -> None:
        self.bus = bus if bus is not None else RpmsgBus()
        self.rpmsg = rpmsg if rpmsg is not None else RpmsgConfig()
        self._links = RpmsgLinks(self.bus)
        super().__init__(
            name,
            firmware,
            drivers=host_drivers(platforms, self._links, self.rpmsg),
            config=config,
            table=table,
            attach=attach,
        )

    @property
    def links(self) -> list[RpmsgLink]:
        """The rpmsg links up to this core now (one per rpmsg vdev or GLINK edge)."""
        return self._links.all()

    def stop(self, *, strict: bool = False) -> None:
        """See :meth:`amplink.remoteproc.rproc.Rproc.stop`; ``EDEADLK`` from one of this
        core's receive callbacks (a stop waits for them to return)."""
        self._refuse_in_own_callback("stop")
        super().stop(strict=strict)

    def shutdown(self) -> None:
        """See :meth:`amplink.remoteproc.rproc.Rproc.shutdown`; ``EDEADLK`` as :meth:`stop`."""
        self._refuse_in_own_callback("shutdown")
        super().shutdown()

    def detach(self) -> None:
        """See :meth:`amplink.remoteproc.rproc.Rproc.detach`; ``EDEADLK`` as :meth:`stop`."""
        self._refuse_in_own_callback("detach")
        super().detach()

    def _refuse_in_own_callback(self, what: str) -> None:
        """A receive callback runs in a link's receive context (an IRQ thread, or a
        thread that took the core's interrupt while it waited in ``recv()``), which the
        stop must wait for: from there it would wait for itself for ever."""
        if any(link.in_rx_context() for link in self._links.all()):
            raise AmplinkError(
                errno.EDEADLK,
                f"{self.name}: {what}() from a receive callback of this core would wait "
                "for that callback to return; call it from another thread",
            )

    @property
    def link(self) -> RpmsgLink | None:
        """The core's (first) rpmsg link, while it is up."""
        links = self._links.all()
        return links[0] if links else None

    def wait_channel(self, name: str, timeout: float | None = None) -> RpmsgDevice:
        """The rpmsg channel ``name`` announced by this core (waits up to ``timeout`` s,
        by default the boot timeout); ``ENODEV`` if it has no rpmsg now, ``EPIPE`` if
        its link goes down while waiting."""
        link = self.link
        if link is None:
            why = "has no rpmsg vdev" if self.state == RUNNING else "is not running"
            raise AmplinkError(errno.ENODEV, f"{self.name} {why}")
        wait = self.config.boot_timeout if timeout is None else timeout
        return self.bus.wait_for_device(name, wait, link=link)


class OpenAmpRemote(OpenAmpRproc):
    """An OpenAMP linux-machine application as a remote processor
    (:class:`amplink.remoteproc.openamp.OpenAmpRproc`: the options, the connection, the
    relay), with rpmsg on ``bus`` (a new bus if None): its announcements become channels
    there, and endpoints, endpoint files, ttys and asyncio work over it unchanged.
    ``send_timeout`` is how long a blocking send waits for a buffer (s)::

        with OpenAmpRemote(command=["rpmsg-echo-shared"]) as rp:
            ept = rp.wait_channel("rpmsg-openamp-demo-channel", 10).create_ept()
            ept.send(b"hello")
            print(ept.recv(timeout=5).data)
    """

    def __init__(
        self,
        name: str = "openamp",
        *,
        bus: RpmsgBus | None = None,
        send_timeout: float | None = None,
        server: bool = False,
        shm: str | None = None,
        socket_path: str | None = None,
        command: list[str] | None = None,
        isolate: bool = True,
        spin: bool = True,
    ) -> None:
        self.bus = bus if bus is not None else RpmsgBus()
        self._links = RpmsgLinks(self.bus)
        rpmsg = RpmsgConfig(send_timeout=send_timeout)
        super().__init__(
            name,
            virtio_drivers(self._links, rpmsg),
            server=server,
            shm=shm,
            socket_path=socket_path,
            command=command,
            isolate=isolate,
            spin=spin,
        )

    @property
    def link(self) -> RpmsgLink | None:
        """The application's rpmsg link, while it is up."""
        links = self._links.all()
        return links[0] if links else None

    def wait_channel(self, name: str, timeout: float | None = None) -> RpmsgDevice:
        """The channel ``name`` the application announced (waits up to ``timeout`` s;
        ``ENODEV`` if not started, ``EPIPE`` at once if the application goes away
        meanwhile)."""
        link = self.link
        if link is None:
            raise AmplinkError(errno.ENODEV, f"{self.name} is not started")
        return self.bus.wait_for_device(name, timeout, link=link)

    def __enter__(self) -> OpenAmpRemote:
        self.start()
        return self


def boot_core(
    name: str,
    firmware: str,
    *,
    table: rt.ResourceTable | None = None,
    config: RprocConfig | None = None,
    rpmsg: RpmsgConfig | None = None,
    platforms: Sequence[PlatformDriver] = PLATFORMS,
) -> BootedImage:
    """Start a core the way a boot loader does (:func:`amplink.remoteproc.loader.boot_core`),
    its memory laid out for a host with these drivers; ``Rproc(attach=...)`` takes it
    over.  The core waits for the host up to ``config.boot_timeout`` s (default 60)."""
    return loader.boot_core(
        name, firmware, host_drivers(platforms, None, rpmsg), table=table, config=config
    )
