"""The remoteproc core for one remote processor: lifecycle, crashes and recovery.

:class:`Rproc` runs the sequences of Linux's ``remoteproc_core.c`` over a core that is
an OS process (:class:`~amplink.remoteproc.process_core.ProcessCore`):

* **boot** (``rproc_boot``, refcounted): read the firmware (an ELF image, or a Python
  program packed into one here), check it, load its segments into device memory, copy
  the cached resource table over its loaded location, place vrings and buffers,
  release the core, and bring up rpmsg as the virtio driver.  Its channels appear on
  the host's rpmsg bus as the firmware announces them.
* **shutdown** (``rproc_shutdown``): with firmware that supports it, TI K3's graceful
  handshake (``EBUSY`` if there is no ACK: the core keeps running), then reset.
  Channels disappear and host endpoints get their release notification.
* **crash** (``rproc_report_crash``): the core process died, the firmware reported a
  fatal error, its watchdog expired, it made the host touch memory outside its window
  (an "mmufault"), or someone wrote to debugfs ``crash``.  Only the first crash of an
  episode is handled, in a worker thread: the state becomes ``crashed``, and if
  recovery is enabled the core is reset (no handshake), dumped, and booted again with
  the same firmware.

Every resource a boot creates is released by a shutdown, a crash, a failed boot and a
failed recovery.  The control interface of ``/sys/class/remoteproc/remoteprocN`` and of
debugfs is :attr:`Rproc.sysfs` and :attr:`Rproc.debugfs`.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from amplink.errors import AmplinkError, RpmsgError
from amplink.mailbox.mu_path import DEFAULT_WIRING, Delivery, MuKickPath, MuWiring
from amplink.memory.region import SharedRegion
from amplink.remoteproc import coredump
from amplink.remoteproc.control import Debugfs, Sysfs
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.elf_writer import Note
from amplink.remoteproc.emulated_core import EmulatedPlatform
from amplink.remoteproc.layout import GlinkEdgeLayout, default_rsc_table
from amplink.remoteproc.loader import (
    DEFAULT_MEMORY_SIZE,
    BootedCore,
    DeviceMemory,
    place_image,
    read_firmware,
)
from amplink.remoteproc.process_core import (
    CRASH_MMUFAULT,
    ProcessCore,
    crash_name,
)
from amplink.remoteproc.resources import RSC_HANDLED, RSC_IGNORED, Memory, VendorHook
from amplink.remoteproc.states import ATTACHED, CRASHED, DELETED, DETACHED, OFFLINE, RUNNING
from amplink.rpmsg.core import RpmsgBus, RpmsgDevice
from amplink.rpmsg.glink_link import GLINK_NOTIFYID, GlinkChannels, GlinkLink
from amplink.rpmsg.ns import NameService
from amplink.rpmsg.polled import PolledLink
from amplink.rpmsg.virtio_link import (
    DEFAULT_BUFFERS,
    DEFAULT_SEND_TIMEOUT,
    RpmsgBuffers,
    VirtioRpmsgHost,
)
from amplink.tracing import TRACER
from amplink.transport.spin import AdaptiveSpin, spin_worthwhile
from amplink.wire import rsc_table as rt
from amplink.wire.protocol import RSC_AMPLINK_FEATURES, Features
from amplink.wire.trace import read_trace

log = logging.getLogger(__name__)

SHUTDOWN_ACK_TIMEOUT = 5.0  # K3: 5000 ms for RP_MBOX_SHUTDOWN_ACK
WFI_TIMEOUT = 0.002  # K3: poll for WFI up to 2 ms...
WFI_POLL = 0.0002  # ...every 200 us
INLINE_COREDUMP_TIMEOUT = 300.0  # devcoredump's 5 minutes
KEPT_COREDUMPS = 8


class Rproc:
    """One remote processor: a firmware program running in its own process."""

    def __init__(
        self,
        name: str = "rproc0",
        firmware: str = "amplink.firmware.echo",
        *,
        bus: RpmsgBus | None = None,
        table: rt.ResourceTable | None = None,
        buffers: RpmsgBuffers = DEFAULT_BUFFERS,
        cpu: int | None = None,
        spin: bool | None = None,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        boot_timeout: float = 10.0,
        delivery: Delivery = "thread",
        rt_priority: int | None = None,
        memory_size: int = DEFAULT_MEMORY_SIZE,
        recovery: bool = True,
        coredump_mode: str = coredump.DISABLED,
        coredump_dir: str | None = None,
        graceful_shutdown: bool = True,
        shutdown_timeout: float = SHUTDOWN_ACK_TIMEOUT,
        wfi_timeout: float = WFI_TIMEOUT,
        inline_coredump_timeout: float = INLINE_COREDUMP_TIMEOUT,
        memories: Sequence[Memory] = (),
        handle_rsc: VendorHook | None = None,
        attach: BootedCore | None = None,
        mailbox: MuWiring = DEFAULT_WIRING,
        platform: EmulatedPlatform | None = None,
    ) -> None:
        """``firmware``: an ELF file, or a Python firmware program (``.py`` file or
        module) that is packed with ``table`` (default: one rpmsg vdev, graceful
        shutdown supported).  ``delivery``: how a kick from the core reaches the
        vrings, straight from the mailbox IRQ thread (``"thread"``, as the 2026 i.MX
        series does) or through a workqueue (``"workqueue"``).  ``rt_priority`` runs
        the host's IRQ threads SCHED_FIFO where the OS allows it.  ``memory_size``
        bounds the core's device memory (from da 0).  ``recovery`` and
        ``coredump_mode`` are the sysfs attributes' initial values; dumps are kept in
        :attr:`coredumps` and, with ``coredump_dir``, written there.  ``memories`` are
        the platform's named memories that the firmware's carveouts of the same name
        use; ``handle_rsc`` handles vendor resource entries (``RSC_HANDLED``,
        ``RSC_IGNORED`` or a negative errno that fails the boot).  ``attach`` is a
        core a boot loader already started (:func:`~amplink.remoteproc.loader.boot_core`):
        the processor starts ``detached`` and :meth:`boot` attaches to it.
        ``buffers`` sets the rpmsg buffer sizes and counts per direction.
        ``graceful_shutdown``: whether the platform does TI K3's shutdown handshake
        with firmware that announces it (False: a stop is always a reset, as i.MX).
        ``mailbox``: the MU channels and interrupt lines of the kick path.
        ``platform``: an :class:`~amplink.remoteproc.emulated_core.EmulatedPlatform`
        to run ARM Cortex-M images on an emulated core (its memory windows replace
        ``memory_size`` and ``memories``); by default the core is a process."""
        if coredump_mode not in coredump.MODES:
            raise AmplinkError(
                errno.EINVAL, f"coredump mode {coredump_mode!r} not in {coredump.MODES}"
            )
        self.name = name
        self.firmware = firmware
        self.bus = bus if bus is not None else RpmsgBus()
        self._table_given = table is not None
        self.table = table if table is not None else default_rsc_table()
        self.buffers = buffers
        self.cpu = cpu
        self.spin = spin
        self.send_timeout = send_timeout
        self.boot_timeout = boot_timeout
        self.delivery: Delivery = delivery
        self.rt_priority = rt_priority
        self.memory_size = memory_size
        self.recovery = recovery
        self.coredump_mode = coredump_mode
        self.coredump_dir = coredump_dir
        self.graceful_shutdown = graceful_shutdown
        self.mailbox = mailbox
        self.platform = platform
        self.shutdown_timeout = shutdown_timeout
        self.wfi_timeout = wfi_timeout
        self.inline_coredump_timeout = inline_coredump_timeout
        self.memories = {m.name: m for m in memories}
        self.handle_rsc = handle_rsc
        self.carveouts: tuple[Memory, ...] = ()  # what the running firmware's carveouts got
        self._lock = threading.RLock()
        self._state_changed = threading.Condition()  # not _lock: readable during recovery
        self._state = OFFLINE
        self.power = 0
        self.crash_count = 0
        self.last_crash: tuple[str, str] | None = None
        self.dumps_taken = 0
        self.undelivered: dict[int, int] = {}  # at the last crash: source address -> count
        self._exit_code: int | None = None
        self.last_stop = ""  # how the core last stopped: graceful shutdown, or reset
        self.image: FirmwareImage | None = None
        self.features = Features()
        self.link: VirtioRpmsgHost | GlinkLink | None = None
        self.coredumps: collections.deque[coredump.Coredump] = collections.deque(
            maxlen=KEPT_COREDUMPS
        )
        self._platform: ProcessCore | None = None
        self._notifyids: tuple[int, ...] = (0, 1)
        self._crash_lock = threading.Lock()
        self._crash_thread: threading.Thread | None = None
        self._memory: DeviceMemory | None = None
        self._booted = attach
        self._clean_table: bytes | None = None
        if attach is not None:
            self.firmware = attach.firmware
            self._state = DETACHED
        self.sysfs = Sysfs(self)
        self.debugfs = Debugfs(self)

    def __repr__(self) -> str:
        return f"<Rproc {self.name} {self.state} firmware={self.firmware}>"

    @property
    def pid(self) -> int | None:
        """The core process's pid while it runs, else None."""
        return self._platform.pid if self._platform is not None else None

    @property
    def state(self) -> str:
        """``offline``, ``running``, ``crashed``, ... (sysfs ``state``)."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        with self._state_changed:
            self._state = value
            self._state_changed.notify_all()
        if TRACER.enabled:
            TRACER.event("remoteproc", "state", rproc=self.name, state=value)

    def wait_state(self, *states: str, timeout: float = 10.0) -> str:
        """Wait until the state is one of ``states`` (e.g. ``running`` again after a
        crash is recovered); ``ETIMEDOUT`` if it is not within ``timeout`` s."""
        self._wait_until(
            lambda: self._state in states,
            timeout,
            f"still {self._state}, not {' or '.join(states)}",
        )
        return self._state

    @property
    def exit_code(self) -> int | None:
        """How the core process last ended (negative: killed by that signal)."""
        return self._platform.exit_code if self._platform is not None else self._exit_code

    @property
    def core_status(self) -> int:
        """The core-control STATUS word (``hw.core_ctrl``: BOOTED, WFI, HALTED)."""
        return self._platform.status() if self._platform is not None else 0

    @property
    def kick_path(self) -> MuKickPath | None:
        """The host side of the MU kick path (its controller, domain and channels)."""
        return self._platform.kick_path if self._platform is not None else None

    # -- the kernel API: boot, shutdown, firmware ------------------------------------
    def boot(self) -> None:
        """``rproc_boot``: power up (refcounted: a second boot only counts)."""
        with self._lock:
            if self.state == DELETED:
                raise AmplinkError(errno.ENODEV, f"{self.name} was deleted")
            self.power += 1
            if self.power > 1:
                return
            try:
                if self.state == DETACHED:
                    self._attach_locked()
                else:
                    self._boot_locked()
            except BaseException:
                self.power -= 1
                raise

    def shutdown(self) -> None:
        """``rproc_shutdown``: drop one power reference; the last one stops the core,
        gracefully if its firmware supports it.  ``EBUSY`` when the firmware does not
        acknowledge (the core keeps running), ``ETIMEDOUT`` when it does not reach WFI."""
        with self._lock:
            if self.state not in (RUNNING, ATTACHED):
                raise AmplinkError(errno.EINVAL, f"{self.name} is {self.state}, not running")
            self.power -= 1
            if self.power > 0:
                return
            try:
                self._stop_locked(force=False)
            except BaseException:
                self.power += 1
                raise

    def set_firmware(self, name: str) -> None:
        """``rproc_set_firmware``: only while offline (``EBUSY``); text after a newline
        is dropped; empty is ``EINVAL``."""
        name = name.split("\n", 1)[0]
        if not name:
            raise AmplinkError(errno.EINVAL, "empty firmware name")
        with self._lock:
            if self.state != OFFLINE:
                raise AmplinkError(
                    errno.EBUSY, f"{self.name} is {self.state}: change firmware while offline"
                )
            self.firmware = name

    def delete(self) -> None:
        """``rproc_del``: stop the core if it runs; then every boot is ``ENODEV``."""
        self.stop()
        with self._lock:
            self.state = DELETED

    # -- the convenient API: start, stop, context manager ----------------------------
    def start(self) -> None:
        """Boot the core (sysfs ``state`` = ``start``): ``EBUSY`` if it runs already."""
        with self._lock:
            if self.state in (RUNNING, ATTACHED):
                raise AmplinkError(errno.EBUSY, f"{self.name} is {self.state}, not offline")
            self.boot()

    def stop(self) -> None:
        """Stop the core whatever its state and release everything. Idempotent.

        Gracefully if the core runs firmware that supports it; if the handshake fails,
        a warning is logged and the core is reset anyway.  Use :meth:`shutdown` to get
        the kernel's errors instead."""
        with self._lock:
            if self.state in (RUNNING, CRASHED, ATTACHED):
                self._stop_locked(force=True)
            elif self.state == DETACHED:  # a core we let go: reset it now
                self._release_locked(crashed=False)
                self.state = OFFLINE
            self.power = 0
        self.wait_crash_handled()

    def __enter__(self) -> Rproc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- boot ------------------------------------------------------------------------
    def _boot_locked(self) -> None:
        self._exit_code = None
        try:
            self._boot_steps()
        except BaseException:
            self._release_locked(crashed=False)
            raise
        self.state = RUNNING

    def _boot_steps(self) -> None:
        emulated = self.platform
        image = self.image = read_firmware(
            self.name,
            self.firmware,
            self.table if self._table_given else None,
            emulated.check_image if emulated is not None else None,
        )
        table = self.table = image.require_table()
        self.features = Features.of(table)
        memory = place_image(
            self.name,
            image,
            buffers=self.buffers,
            memory_size=self.memory_size,
            memories=self.memories,
            vendor=self._vendor_resource,
            windows=emulated.windows() if emulated is not None else None,
        )
        self._adopt_memory(memory)
        settings: dict[str, Any] = dict(
            cpu=self.cpu,
            spin=self._spin_enabled(),
            delivery=self.delivery,
            rt_priority=self.rt_priority,
            boot_timeout=self.boot_timeout,
            mailbox=self.mailbox,
        )
        platform = self._platform = (
            emulated.core(self.name, self.firmware, image, **settings)
            if emulated is not None
            else ProcessCore(self.name, self.firmware, native=image.native, **settings)
        )
        self._wire_platform(platform)
        loaded = memory.loaded
        platform.start(
            memory.region,
            loaded.table_da,
            loaded.table_len,
            image.entry,
            self.features.watchdog_ms,
        )
        self._connect_link(memory)

    def _adopt_memory(self, memory: DeviceMemory) -> None:
        self._memory = memory
        self.carveouts = memory.loaded.carveouts

    def _wire_platform(self, platform: ProcessCore) -> None:
        platform.on_notify = self._on_notify
        platform.on_crash = self.report_crash

    def _connect_link(self, memory: DeviceMemory) -> None:
        """Bring up rpmsg: as the virtio driver on the image's rpmsg vdev, or over its
        GLINK edge; a core with neither has no rpmsg."""
        rpmsg = memory.loaded.rpmsg
        platform = self._platform
        if platform is not None and memory.loaded.glink is not None:
            self._connect_glink(memory.region, memory.loaded.glink, platform)
            return
        if rpmsg is None or platform is None:
            return  # a core without rpmsg: nothing to bring up on the host
        vdev = rpmsg.vdev
        notifyids = self._notifyids = (vdev.vring_notifyid(0), vdev.vring_notifyid(1))
        kick = platform.kick
        link = VirtioRpmsgHost(
            f"{self.name}.vdev0",
            memory.region,
            memory.amap,
            vdev,
            lambda index: kick(notifyids[index]),
            pool_da=rpmsg.pool_da,
            buffers=self.buffers,
            send_timeout=self.send_timeout,
            spin=AdaptiveSpin(enabled=platform.spin),
        )
        NameService(self.bus, link)
        self._adopt_link(link)

    def _connect_glink(
        self, region: SharedRegion, edge: GlinkEdgeLayout, platform: ProcessCore
    ) -> None:
        self._notifyids = (GLINK_NOTIFYID,)
        kick = platform.kick
        link = GlinkLink(
            f"{self.name}.glink",
            region,
            edge.offset,
            edge.spec,
            "host",
            lambda: kick(GLINK_NOTIFYID),
            send_timeout=self.send_timeout,
            spin=AdaptiveSpin(enabled=platform.spin),
        )
        GlinkChannels(self.bus, link)
        self._adopt_link(link)

    def _adopt_link(self, link: VirtioRpmsgHost | GlinkLink) -> None:
        self.link = link
        link.fail_listeners.append(lambda err: self.bus.remove_link(link, err))
        link.fail_listeners.append(self._on_link_failure)
        link.handle_notify()  # a kick that came before self.link was set was dropped

    # -- attach and detach -----------------------------------------------------------
    def _attach_locked(self) -> None:
        """``rproc_attach``: take over a core a boot loader started."""
        booted = self._booted
        if booted is None:
            raise AmplinkError(errno.EINVAL, f"{self.name} has no core to attach to")
        self.image = booted.image
        table = self.table = booted.image.require_table()
        self.features = Features.of(table)
        memory = booted.memory
        self._adopt_memory(memory)
        if self._clean_table is None:  # what detach puts back, as Linux keeps a clean copy
            self._clean_table = memory.table()
        platform = self._platform = booted.core
        self._wire_platform(platform)
        try:
            platform.connect(self.features.watchdog_ms)
            self._connect_link(memory)
        except BaseException:
            self._disconnect_locked()
            raise
        self.state = ATTACHED

    def detach(self) -> None:
        """``rproc_detach``: hand the core back (it keeps running); ``EINVAL`` unless
        attached.  Its channels disappear; a later :meth:`boot` attaches again."""
        with self._lock:
            if self.state != ATTACHED:
                raise AmplinkError(errno.EINVAL, f"{self.name} is {self.state}, not attached")
            if isinstance(self.link, GlinkLink):
                raise AmplinkError(
                    errno.EOPNOTSUPP,
                    f"{self.name}: detach needs the virtio reset protocol; a GLINK edge has "
                    "no way to tell the core that the host went away",
                )
            self.power -= 1
            if self.power > 0:
                return
            self._disconnect_locked()
            self.state = DETACHED

    def _disconnect_locked(self) -> None:
        link = self.link
        if link is not None:
            link.fail(RpmsgError(errno.ESHUTDOWN, f"remote core {self.name} was detached"))
            link.quiesce()
            self.link = None
        memory, platform = self._memory, self._platform
        if memory is not None and self._clean_table is not None:
            memory.write(memory.loaded.table_da, self._clean_table)  # status 0: a reset
        if platform is not None:
            platform.kick(self._notifyids[0])  # wake the core to see its vdev reset
            platform.disconnect()

    def _vendor_resource(self, entry: rt.OpaqueEntry) -> int:
        """The platform handles its features entry; the rest goes to ``handle_rsc``."""
        if entry.type == RSC_AMPLINK_FEATURES:
            return RSC_HANDLED
        return self.handle_rsc(entry) if self.handle_rsc is not None else RSC_IGNORED

    def _spin_enabled(self) -> bool:
        if self.spin is not None:
            return self.spin
        return spin_worthwhile(None, None if self.cpu is None else {self.cpu})

    # -- stop ------------------------------------------------------------------------
    def _stop_locked(self, *, force: bool) -> None:
        platform = self._platform
        self.last_stop = "reset"
        if (
            self.state in (RUNNING, ATTACHED)
            and self.graceful_shutdown
            and self.features.graceful_shutdown
            and platform is not None
        ):
            try:
                platform.graceful_shutdown(self.shutdown_timeout, self.wfi_timeout, WFI_POLL)
                self.last_stop = "graceful shutdown"
            except AmplinkError as exc:
                if not force:
                    raise
                log.warning("%s: %s; resetting it anyway", self.name, exc.strerror)
        self._release_locked(crashed=False)  # dumps belong to recovery, not to a stop
        self.state = OFFLINE

    def _release_locked(self, *, crashed: bool) -> None:
        """Reset the core and release everything a boot created (dumping it first if
        it crashed)."""
        link = self.link
        if link is not None:
            link.fail(RpmsgError(errno.ESHUTDOWN, f"remote core {self.name} was stopped"))
            if not link.quiesce():
                log.error("%s: a thread still uses the rpmsg rings after 5 s", self.name)
            self.link = None
        platform = self._platform
        notes: tuple[Note, ...] = ()
        if platform is not None:
            platform.release()
            self._exit_code = platform.exit_code
            notes = platform.coredump_notes()
            self._platform = None
        memory = self._memory
        if memory is not None:
            if crashed:
                self._dump(memory, notes)
            memory.region.close()
            self._memory = None
        self._booted = None
        self._clean_table = None

    def _dump(self, memory: DeviceMemory, notes: tuple[Note, ...]) -> None:
        image = self.image
        region = memory.region
        dump = coredump.take(
            self.name,
            self.crash_count,
            self.coredump_mode,
            image.machine if image is not None else 0,
            image.entry if image is not None else 0,
            [(w.da, region.view(w.offset, w.size), w.name) for w in memory.windows],
            elfclass=image.elfclass if image is not None else 64,
            notes=notes,
        )
        if dump is None:
            return
        with self._state_changed:
            self.coredumps.append(dump)
            self.dumps_taken += 1
            self._state_changed.notify_all()
        if dump.mode == coredump.INLINE:
            coredump.wait_inline(dump, self.inline_coredump_timeout)
        if self.coredump_dir is not None and dump.data is not None:
            path = os.path.join(self.coredump_dir, f"{self.name}-crash{dump.crash}.core")
            dump.save(path)
            log.info("%s: core dump written to %s", self.name, path)

    # -- notifications from the core -------------------------------------------------
    def _on_notify(self, notifyid: int) -> None:
        """A vring kick from the core (in the mailbox RX IRQ thread)."""
        link = self.link
        if link is None:
            return
        if notifyid in self._notifyids:
            link.handle_notify()
        else:
            log.warning("%s: kick with unknown notify id %#x ignored", self.name, notifyid)

    def _on_link_failure(self, err: OSError) -> None:
        if isinstance(err, PolledLink.broken_by_peer):  # the core broke shared memory
            self.report_crash(CRASH_MMUFAULT, str(err))

    # -- crashes and recovery --------------------------------------------------------
    def report_crash(self, kind: int, reason: str = "") -> None:
        """``rproc_report_crash``: callable from any thread, including IRQ threads; the
        crash is handled in a worker.  Only the first crash of an episode counts."""
        with self._crash_lock:
            t = self._crash_thread
            if t is not None and t.is_alive():
                return
            t = threading.Thread(
                target=self._crash_work,
                args=(kind, reason),
                name=f"rproc-{self.name}-crash",
                daemon=True,
            )
            self._crash_thread = t
            t.start()

    def _crash_work(self, kind: int, reason: str) -> None:
        with self._lock:
            if self.state not in (RUNNING, ATTACHED):
                return  # already crashed (this episode is being handled), or stopped
            why = reason or crash_name(kind)
            self.last_crash = (crash_name(kind), why)
            self.crash_count += 1
            if TRACER.enabled:
                TRACER.event("remoteproc", "crash", rproc=self.name, kind=crash_name(kind), why=why)
            self.state = CRASHED  # last: who waits for it sees the count and the cause
            log.error(
                "crash detected in %s: type %s (%s); handling crash #%d",
                self.name,
                crash_name(kind),
                why,
                self.crash_count,
            )
            link = self.link
            if link is not None:
                link.handle_notify()  # deliver what the core managed to send
                lost = self.undelivered = link.unconsumed()
                if lost:
                    log.error(
                        "%s crashed before consuming %d sent messages (per source "
                        "address: %s); their senders' endpoints are released with EPIPE",
                        self.name,
                        sum(lost.values()),
                        lost,
                    )
                    why += f"; {sum(lost.values())} sent messages were never consumed"
                link.fail(RpmsgError(errno.EPIPE, f"remote core {self.name} crashed: {why}"))
            if self.recovery:
                self._recover_locked()
            else:
                log.error(
                    "%s: recovery is disabled; it stays crashed until recovered "
                    "(sysfs recovery = 'recover' or 'enabled')",
                    self.name,
                )

    def recover(self) -> None:
        """Recover a crashed core now (sysfs ``recovery`` = ``recover``)."""
        with self._lock:
            self._recover_locked()

    def _recover_locked(self) -> None:
        if self.state != CRASHED:
            return
        log.info("%s: recovering (crash #%d)", self.name, self.crash_count)
        self._release_locked(crashed=True)
        self.state = OFFLINE
        try:
            self._boot_locked()
        except Exception:
            self.power = 0
            log.exception("%s: recovery failed; the core is offline", self.name)

    def _wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for ``done()`` (re-checked at every state change); ``ETIMEDOUT``."""
        with self._state_changed:
            if not self._state_changed.wait_for(done, timeout):
                raise AmplinkError(errno.ETIMEDOUT, f"{self.name}: {what} within {timeout}s")

    def wait_coredump(self, count: int = 1, timeout: float = 30.0) -> coredump.Coredump:
        """Wait until ``count`` dumps have been taken; returns the newest.  For
        ``inline`` dumps, recovery waits until it has been read."""
        self._wait_until(lambda: self.dumps_taken >= count, timeout, f"no core dump #{count}")
        return self.coredumps[-1]

    def wait_crash_handled(self, count: int | None = None, timeout: float = 30.0) -> None:
        """Wait until crash number ``count`` (default: the one being handled now) has
        been noticed and handled, recovery included; ``ETIMEDOUT`` otherwise."""
        if count is not None:
            self._wait_until(lambda: self.crash_count >= count, timeout, f"no crash #{count}")
        t = self._crash_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            if t.is_alive():
                raise AmplinkError(errno.ETIMEDOUT, f"{self.name}: crash handling still runs")

    # -- channels and trace ----------------------------------------------------------
    def wait_channel(self, name: str, timeout: float | None = None) -> RpmsgDevice:
        """The rpmsg channel ``name`` announced by this core (waits for it)."""
        link = self.link
        if link is None:
            why = "has no rpmsg vdev" if self.state == RUNNING else "is not running"
            raise AmplinkError(errno.ENODEV, f"{self.name} {why}")
        return self.bus.wait_for_device(
            name, self.boot_timeout if timeout is None else timeout, link=link
        )

    def loaded_table(self) -> rt.ResourceTable | None:
        """The table as it is in device memory now (vring addresses, notify ids,
        negotiated features, status), or the cached one when the core is not running."""
        with self._lock:
            if self._memory is None:
                return self.image.table if self.image is not None else None
            return rt.parse(self._memory.table())

    def core_memory(self, da: int, size: int) -> bytes:
        """A copy of ``size`` bytes of the core's device memory at ``da`` (like reading
        it through a debugger); ``ENODEV`` when the core has no memory now."""
        with self._lock:
            if self._memory is None:
                raise AmplinkError(errno.ENODEV, f"{self.name} has no device memory now")
            return self._memory.read(da, size)

    def trace(self, index: int = 0) -> str:
        """The text in trace buffer ``index`` (debugfs ``trace<N>``)."""
        with self._lock:
            traces = self.table.traces()
            if self._memory is None or not 0 <= index < len(traces):
                raise AmplinkError(errno.ENODEV, f"{self.name}: trace{index} not available")
            return read_trace(self._memory.read(traces[index].da, traces[index].len))
