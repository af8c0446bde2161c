"""A remote processor run as an OS process, with rpmsg over shared memory.

:class:`Rproc` does, for one core, what the remoteproc core and a platform driver do
in Linux: lay out device memory from the firmware's resource table, start the core,
bring up the rpmsg vdev as the virtio driver, and stop or notice the death of the core.
Vring kicks travel through an i.MX MU model in both directions (message = the vring's
notify id), each side's MU output raising an interrupt line in its own process.  The
core's death is an interrupt too: its pidfd feeds a watchdog-style line.
Every resource a start creates (shared memory, eventfds, a pidfd, threads, the child
process) is released by :meth:`Rproc.stop`, and by a start that fails half-way.

States follow ``/sys/class/remoteproc/*/state``: ``offline``, ``running``, ``crashed``.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

from amplink.errors import AmplinkError, RpmsgError
from amplink.irq.flags import IRQ_HANDLED, IRQF_ONESHOT, IRQF_TRIGGER_RISING
from amplink.irq.line import new_line_fd
from amplink.mailbox.mu_path import Delivery, MuKickPath, mmio_region
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.remoteproc.elf import ELF_MAGIC, FirmwareError, FirmwareImage
from amplink.remoteproc.fwpack import pack_python, packed_python, program_source
from amplink.remoteproc.layout import (
    RpmsgVdevLayout,
    default_rsc_table,
    image_region_size,
    load_image,
)
from amplink.rpmsg.core import RpmsgBus, RpmsgDevice
from amplink.rpmsg.ns import NameService
from amplink.rpmsg.virtio_link import DEFAULT_SEND_TIMEOUT, RPMSG_BUF_SIZE, VirtioRpmsgHost
from amplink.transport.spin import AdaptiveSpin, spin_worthwhile
from amplink.wire import rsc_table as rt

log = logging.getLogger(__name__)

WDOG_IRQ = 33
DEFAULT_MEMORY_SIZE = 64 << 20
OFFLINE = "offline"
RUNNING = "running"
CRASHED = "crashed"


class Rproc:
    """One remote core: a firmware program running in its own process."""

    def __init__(
        self,
        name: str = "rproc0",
        firmware: str = "amplink.firmware.echo",
        *,
        bus: RpmsgBus | None = None,
        table: rt.ResourceTable | None = None,
        buf_size: int = RPMSG_BUF_SIZE,
        cpu: int | None = None,
        spin: bool | None = None,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        boot_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        delivery: Delivery = "thread",
        rt_priority: int | None = None,
        memory_size: int = DEFAULT_MEMORY_SIZE,
    ) -> None:
        """``delivery`` is how a kick from the core reaches the vrings: straight from
        the mailbox IRQ thread (``"thread"``, as the 2026 i.MX series does) or through a
        workqueue (``"workqueue"``, the older imx_rproc way).  ``rt_priority`` runs the
        host's IRQ threads SCHED_FIFO at that priority where the OS allows it.
        ``memory_size`` bounds the core's device memory (from da 0): firmware whose
        segments, vrings and buffers do not fit is refused at start."""
        self.name = name
        self.firmware = firmware
        self.bus = bus if bus is not None else RpmsgBus()
        self._table_given = table is not None
        self.table = table if table is not None else default_rsc_table()
        self.image: FirmwareImage | None = None
        self.buf_size = buf_size
        self.cpu = cpu
        self.spin = spin
        self.send_timeout = send_timeout
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout
        self.delivery: Delivery = delivery
        self.rt_priority = rt_priority
        self.memory_size = memory_size
        self.kick_path: MuKickPath | None = None
        self._notifyids: tuple[int, int] = (0, 1)
        self.state = OFFLINE
        self.exit_code: int | None = None
        self.link: VirtioRpmsgHost | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._undo: list[Callable[[], None]] = []
        self._stopping = False

    def __repr__(self) -> str:
        return f"<Rproc {self.name} {self.state} firmware={self.firmware}>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- start -----------------------------------------------------------------------
    def start(self) -> None:
        """Boot the core; on any failure, everything created so far is released."""
        if self.state != OFFLINE:
            raise AmplinkError(errno.EBUSY, f"{self.name} is {self.state}, not offline")
        self._stopping = False
        self.exit_code = None
        try:
            self._start()
        except BaseException:
            self._release()
            raise
        self.state = RUNNING

    def _load_image(self) -> FirmwareImage:
        """Read the firmware (an ELF file, or a Python program packed here) and check
        that this platform can run it."""
        if _is_elf_file(self.firmware):
            if self._table_given:
                raise AmplinkError(
                    errno.EINVAL,
                    f"{self.firmware} is an ELF image: its resource table comes from its "
                    ".resource_table section, do not pass table=",
                )
            image = FirmwareImage.from_file(self.firmware)
        else:
            source, path = program_source(self.firmware)
            image = FirmwareImage.parse(pack_python(source, self.table), path)
        if not packed_python(image):
            raise AmplinkError(
                errno.ENOEXEC,
                f"{self.name}: no executor for {image.name} ({image.machine_name}): amplink "
                "loads and inspects any ELF, but runs only packed Python firmware "
                "(amplink fw pack)",
            )
        image.require_table()
        return image

    def _start(self) -> None:
        image = self.image = self._load_image()
        self.table = image.require_table()
        size = image_region_size(image, self.buf_size)
        if size > self.memory_size:
            raise FirmwareError(
                "segment-da",
                f"{image.name} needs {size:#x} bytes of device memory from da 0 (its highest "
                f"segment ends at {image.extent():#x}); {self.name} has {self.memory_size:#x}",
            )
        region = SharedRegion.create(size, self.name)
        self._undo.append(region.close)
        amap = AddressMap.identity(region.size)
        layout = load_image(region, amap, image, buf_size=self.buf_size)
        mmio = mmio_region(self.name)
        self._undo.append(mmio.close)
        host_fd, core_fd = new_line_fd(), new_line_fd()
        try:
            self._proc = self._spawn(region, mmio, core_fd, host_fd, layout, image.entry)
        except BaseException:
            _close_fds(host_fd, core_fd)
            raise
        self._undo.append(self._reap)
        path = MuKickPath(  # owns both line fds from here on, even if it fails
            self.name,
            mmio,
            "a",
            host_fd,
            core_fd,
            self._on_kick,
            delivery=self.delivery,
            rt_priority=self.rt_priority,
        )
        self.kick_path = path
        self._undo.append(self._close_kick_path)
        vdev = layout.vdev
        self._notifyids = (vdev.vring_notifyid(0), vdev.vring_notifyid(1))
        kick = path.kick
        notifyids = self._notifyids
        spin = AdaptiveSpin(enabled=self._spin_enabled())
        link = VirtioRpmsgHost(
            f"{self.name}.vdev0",
            region,
            amap,
            vdev,
            lambda index: kick(notifyids[index]),
            pool_da=layout.pool_da,
            buf_size=self.buf_size,
            send_timeout=self.send_timeout,
            spin=spin,
        )
        self.link = link
        NameService(self.bus, link)
        link.fail_listeners.append(lambda err: self.bus.remove_link(link, err))
        self._undo.append(self._fail_link)
        link.handle_notify()  # a kick that came before self.link was set was dropped
        pidfd = os.pidfd_open(self._proc.pid)
        path.domain.add_line(WDOG_IRQ, trigger=IRQF_TRIGGER_RISING, fd=pidfd, counter=False)
        path.domain.request_threaded_irq(
            WDOG_IRQ, None, self._core_exit_irq, IRQF_ONESHOT, f"{self.name}-wdog", self
        )

    def _on_kick(self, notifyid: int) -> None:
        """A kick from the core: the mailbox client callback."""
        link = self.link
        if link is None:
            return
        if notifyid in self._notifyids:
            link.handle_notify()
        else:
            log.warning("%s: kick with unknown notify id %#x ignored", self.name, notifyid)

    def _close_kick_path(self) -> None:
        if self.kick_path is not None:
            self.kick_path.close()
            self.kick_path = None

    def _core_exit_irq(self, irq: int, dev_id: object) -> int:
        """The watchdog line: the core process exited."""
        if self.link is not None:
            self.link.handle_notify()  # drain what it left in the rings first
        self._on_core_exit()
        return IRQ_HANDLED

    def _spawn(
        self,
        region: SharedRegion,
        mmio: SharedRegion,
        core_fd: int,
        host_fd: int,
        layout: RpmsgVdevLayout,
        entry: int,
    ) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-m", "amplink.remote",
            "--name", self.name,
            "--firmware", self.firmware,
            "--region-fd", str(region.fd),
            "--mmio-fd", str(mmio.fd),
            "--irq-fd", str(core_fd),
            "--peer-irq-fd", str(host_fd),
            "--table-da", hex(layout.table_da),
            "--table-len", str(layout.table_len),
            "--boot-addr", hex(entry),
            "--boot-timeout", str(self.boot_timeout),
        ]  # fmt: skip
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        if not self._spin_enabled():
            cmd.append("--no-spin")
        env = dict(os.environ, AMPLINK_PARENT_PID=str(os.getpid()))
        return subprocess.Popen(
            cmd,
            pass_fds=(region.fd, mmio.fd, core_fd, host_fd),
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def _spin_enabled(self) -> bool:
        if self.spin is not None:
            return self.spin
        return spin_worthwhile(None, None if self.cpu is None else {self.cpu})

    # -- channels --------------------------------------------------------------------
    def wait_channel(self, name: str, timeout: float | None = None) -> RpmsgDevice:
        """The rpmsg channel ``name`` announced by this core (waits for it)."""
        if self.link is None:
            raise AmplinkError(errno.ENODEV, f"{self.name} is not running")
        return self.bus.wait_for_device(
            name, self.boot_timeout if timeout is None else timeout, link=self.link
        )

    # -- stop and death --------------------------------------------------------------
    def _on_core_exit(self) -> None:
        """The core process exited; unexpected unless we are stopping it."""
        proc = self._proc
        code = proc.wait() if proc is not None else None
        self.exit_code = code
        if self._stopping:
            return
        self.state = CRASHED
        log.error(
            "remote core %s exited unexpectedly (%s); its channels are gone. "
            "Call stop() to release it, then start() again.",
            self.name,
            _describe_exit(code),
        )
        if self.link is not None:
            self.link.fail(
                RpmsgError(errno.EPIPE, f"remote core {self.name} died ({_describe_exit(code)})")
            )

    def stop(self) -> None:
        """Stop the core (SIGTERM, then SIGKILL after ``stop_timeout``) and release all."""
        if self.state == OFFLINE:
            return
        self._stopping = True
        self._release()
        self.state = OFFLINE

    def _fail_link(self) -> None:
        if self.link is not None:
            self.link.fail(RpmsgError(errno.ESHUTDOWN, f"remote core {self.name} was stopped"))
            self.link = None

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if not _wait_exit(proc, self.stop_timeout):
                log.warning(
                    "remote core %s ignored SIGTERM for %ss; killing it",
                    self.name,
                    self.stop_timeout,
                )
                proc.kill()
        self.exit_code = proc.wait()

    def _release(self) -> None:
        self._stopping = True
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:
                log.exception("%s: error while releasing resources", self.name)

    def __enter__(self) -> Rproc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_elf_file(spec: str) -> bool:
    try:
        with open(spec, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for ``proc`` to exit, up to ``timeout`` s, without polling loops."""
    fd = os.pidfd_open(proc.pid)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(int(timeout * 1000)))
    finally:
        os.close(fd)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
