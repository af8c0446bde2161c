"""The remoteproc core for one remote processor: lifecycle, crashes and recovery.

:class:`Rproc` runs the sequences of Linux's ``remoteproc_core.c`` over the platform
that runs the core (:mod:`amplink.remoteproc.platform`), and knows the core's vdevs and
subdevices only through their interfaces: which drivers bind to them is decided by the
:class:`~amplink.remoteproc.drivers.RprocDrivers` it is given.

* **boot** (``rproc_boot``, refcounted): read the firmware (an ELF image, or a Python
  program packed into one here), choose the platform that runs it, load it into device
  memory, handle its resources (carveouts, vdevs, subdevices), start the platform, then
  the subdevices (the vdevs' drivers bind).
* **shutdown** (``rproc_shutdown``): with firmware that supports it, TI K3's graceful
  handshake (``EBUSY`` if there is no ACK: the core keeps running), then reset.
* **crash** (``rproc_report_crash``): the core process died, the firmware reported a
  fatal error, its watchdog expired, it broke its rings (an "mmufault"), or someone
  wrote to debugfs ``crash``.  Crashes are handled one after another in a worker
  thread (Linux's ``rproc_recovery_wq``), and only the first of an episode counts (a
  report about an earlier boot of the core is dropped): the subdevices take in what
  the core sent and fail their users, the state becomes ``crashed``, and if recovery
  is enabled the core is reset, dumped, and booted again with the same firmware; the
  state stays ``crashed`` until that boot has succeeded (``running``) or failed
  (``offline``).  Firmware that crashes right after every boot is recovered with a
  growing delay and then given up on (``RprocConfig.crash_loop``), which Linux does not.
* **stop** wins over recovery: a stop waits for no delay, a recovery waiting for its
  delay or for the lock finds the core stopped and does nothing, and a crash reported
  during or after the stop is ignored.
* **attach/detach** (``rproc_attach``/``rproc_detach``): take over a core a boot loader
  started (:func:`~amplink.remoteproc.loader.boot_core`), and let go of it again.

Which transitions are legal in which state is one table (:mod:`amplink.remoteproc.states`).
Every resource a boot creates is released by a shutdown, a crash, a failed boot and a
failed recovery.  The control files of ``/sys/class/remoteproc/remoteprocN`` and of
debugfs are :attr:`Rproc.sysfs` and :attr:`Rproc.debugfs`.
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Self

from amplink.errors import AmplinkError
from amplink.irq.held_signals import HELD_SIGNALS
from amplink.ratelimit import log_ratelimited
from amplink.remoteproc import coredump
from amplink.remoteproc.config import RprocConfig
from amplink.remoteproc.control import Debugfs, Sysfs
from amplink.remoteproc.crash import crash_name
from amplink.remoteproc.crash_queue import CrashQueue, CrashReport
from amplink.remoteproc.devmem import DeviceMemory, Memory
from amplink.remoteproc.drivers import RprocDrivers
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.elf_writer import Note
from amplink.remoteproc.loader import BootedImage, load_image, read_firmware
from amplink.remoteproc.platform import RprocPlatform, choose_platform
from amplink.remoteproc.resources import FeaturesEntry, TraceBuffer, handle_resources
from amplink.remoteproc.states import (
    ATTACHED,
    BOOT,
    CRASH,
    CRASHED,
    DELETE,
    DELETED,
    DETACH,
    DETACHED,
    OFFLINE,
    RECOVER,
    RUNNING,
    SET_FIRMWARE,
    SHUTDOWN,
    STOP,
    RprocStates,
)
from amplink.remoteproc.subdev import ResourceContext, RprocSubdev
from amplink.tracing import TRACER
from amplink.wire import rsc_table as rt
from amplink.wire.protocol import Features
from amplink.wording import counted

log = logging.getLogger(__name__)

KEPT_COREDUMPS = 8
KEPT_NOTES = 16  # distinct crash notes remembered, so that a repeat is not shown again


class Rproc:
    """One remote processor (Linux: ``struct rproc``) running ``firmware``: an ELF file,
    or a Python firmware program (``.py`` file or module) packed with ``table``
    (default: one rpmsg vdev, graceful shutdown supported).  ``attach`` is a core a boot
    loader already started: the processor starts ``detached`` and :meth:`boot` attaches
    to it."""

    def __init__(
        self,
        name: str,
        firmware: str,
        *,
        drivers: RprocDrivers,
        config: RprocConfig | None = None,
        table: rt.ResourceTable | None = None,
        attach: BootedImage | None = None,
    ) -> None:
        self.name = name
        self.firmware = attach.firmware if attach is not None else firmware
        self.drivers = drivers
        self.config = config = config if config is not None else RprocConfig()
        self.recovery = config.recovery  # sysfs recovery and coredump: writable at runtime
        self.coredump_mode = config.coredump_mode
        self._table_given = table
        self._lock = threading.RLock()
        self._states = RprocStates(name, DETACHED if attach is not None else OFFLINE)
        self.power = 0
        self.crash_count = 0
        self.last_crash: tuple[str, str] | None = None
        self.dumps_taken = 0
        self.undelivered: dict[int, int] = {}  # at the last crash: source address -> count
        self.last_stop = ""  # how the core last stopped: graceful shutdown, or reset
        self.image: FirmwareImage | None = None
        self.features = Features()
        self.coredumps: collections.deque[coredump.Coredump] = collections.deque(
            maxlen=KEPT_COREDUMPS
        )
        self.platform: RprocPlatform | None = None  # while the core runs
        self._memory: DeviceMemory | None = None
        self._subdevs: list[RprocSubdev] = []
        self._subdevs_started = False
        self._routes: dict[int, list[Callable[[], None]]] = {}  # notify id -> handlers
        self._exit_code: int | None = None
        self._crashes = CrashQueue(name, self._handle_crash, self._states.changed)
        self._boots = 0  # platforms adopted: the boot a crash report is about
        self._booted_at = 0.0  # time.monotonic() when the last boot completed
        self._crashes_at_start = 0  # the current run of crashes soon after booting
        self.gave_up: str | None = None  # why recovery gave up on the core, until a boot
        self._notes_shown: dict[str, int] = {}  # crash notes logged: text -> crash number
        self._stopping = False  # stop() waits for the lock: an inline dump is dropped
        self._booted = attach
        self._clean_table: bytes | None = None
        self.sysfs = Sysfs(self)
        self.debugfs = Debugfs(self)

    def __repr__(self) -> str:
        return f"<Rproc {self.name} {self.state} firmware={self.firmware}>"

    # -- what it is now --------------------------------------------------------------
    @property
    def state(self) -> str:
        """``offline``, ``running``, ``crashed``, ... (sysfs ``state``)."""
        return self._states.state

    @property
    def pid(self) -> int | None:
        """The core's process while it runs, else None."""
        return self.platform.pid if self.platform is not None else None

    @property
    def exit_code(self) -> int | None:
        """How the core last ended (negative: killed by that signal)."""
        return self.platform.exit_code if self.platform is not None else self._exit_code

    @property
    def core_status(self) -> int:
        """The core-control STATUS word (``hw.core_ctrl``: BOOTED, WFI, HALTED)."""
        return self.platform.status() if self.platform is not None else 0

    @property
    def carveouts(self) -> tuple[Memory, ...]:
        """What the running firmware's carveouts got."""
        return self._memory.carveouts if self._memory is not None else ()

    @property
    def subdevs(self) -> tuple[RprocSubdev, ...]:
        """The core's vdevs and subdevices while it runs, in table order."""
        return tuple(self._subdevs)

    @property
    def table(self) -> rt.ResourceTable | None:
        """The firmware's resource table (the cached copy), once it was read."""
        return self.image.table if self.image is not None else self._table_given

    def wait_state(self, *states: str, timeout: float = 10.0) -> str:
        """Wait until the state is one of ``states`` (e.g. ``running`` again after a
        crash is recovered); ``ETIMEDOUT`` if it is not within ``timeout`` s."""
        self._states.wait_until(
            lambda: self.state in states,
            timeout,
            f"still {self.state}, not {' or '.join(states)}",
        )
        return self.state

    # -- the kernel API: boot, shutdown, firmware, delete ----------------------------
    def boot(self) -> None:
        """``rproc_boot``: power up (refcounted: a second boot only counts).  The first
        boots the firmware, or attaches to a core a boot loader started."""
        with self._lock:
            if self.power == 0:
                self._states.check(BOOT)
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
        gracefully if its firmware supports it.  ``EINVAL`` unless running or attached,
        ``EBUSY`` when the firmware does not acknowledge (the core keeps running),
        ``ETIMEDOUT`` when it does not reach WFI."""
        with self._lock:
            self._states.check(SHUTDOWN)
            self.power -= 1
            if self.power > 0:
                return
            try:
                self._stop_locked(SHUTDOWN)
            except BaseException:
                if self.state in (RUNNING, ATTACHED):  # (a Ctrl-C reset it: not)
                    self.power += 1
                raise

    def set_firmware(self, name: str) -> None:
        """``rproc_set_firmware``: only while offline (``EBUSY``); text after a newline
        is dropped; empty is ``EINVAL``."""
        name = name.split("\n", 1)[0]
        if not name:
            raise AmplinkError(errno.EINVAL, "empty firmware name")
        with self._lock:
            self._states.check(SET_FIRMWARE)
            self.firmware = name

    def delete(self) -> None:
        """``rproc_del``: stop the core if it runs; then every boot is ``ENODEV``."""
        self.stop()
        with self._lock:
            self._states.fire(DELETE)

    # -- the convenient API: start, stop, context manager ----------------------------
    def start(self) -> None:
        """Boot the core (sysfs ``state`` = ``start``): ``EBUSY`` if it runs already."""
        with self._lock:
            self._states.check(BOOT)
            self.boot()

    def stop(self, *, strict: bool = False) -> None:
        """Stop the core whatever its state (``running``, ``crashed`` and waiting for
        recovery, being recovered...) and release everything; once it returns the core
        is ``offline`` and no recovery boots it again.  Idempotent, unless ``strict``:
        then ``EINVAL`` if there was nothing to stop (``ENODEV`` once deleted).

        Gracefully if the core runs firmware that supports it; if the handshake fails,
        a warning is logged and the core is reset anyway.  Use :meth:`shutdown` to get
        the kernel's errors instead."""
        with self._states.changed:
            self._stopping = True  # a recovery waiting for its delay wakes and gives way
            self._states.changed.notify_all()
            pending = self.pending_coredump()
        if pending is not None:  # recovery waits for it while holding the lock
            pending.discard("before the core was stopped")
        with self._lock:
            self._stopping = False
            try:
                if self._states.allows(STOP):
                    self._stop_locked(STOP)
                elif strict:
                    raise self._nothing_to_stop()
            finally:  # also after a Ctrl-C: the core was reset all the same
                self.power = 0
        self.wait_crash_handled()

    def _nothing_to_stop(self) -> AmplinkError:
        state = self.state
        if state == DELETED:
            return AmplinkError(errno.ENODEV, f"{self.name} was deleted")
        why = f" ({self.gave_up})" if self.gave_up else ""
        return AmplinkError(errno.EINVAL, f"{self.name} is {state}: nothing to stop{why}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- boot ------------------------------------------------------------------------
    def _boot_locked(self, event: str = BOOT) -> None:
        """``rproc_fw_boot`` and ``rproc_start`` (``event``: a boot, or the one recovery
        makes): a failure releases what was made."""
        self._exit_code = None
        if event == BOOT:  # a new attempt: why recovery once gave up is history now
            self.gave_up = None
        try:
            image = self.image = read_firmware(self.name, self.firmware, self._table_given)
            driver = choose_platform(self.drivers.platforms, self.name, image)
            platform = self._adopt_platform(driver.create(self.name, image, self.config))
            # The region made and kept for release in one section: a Ctrl-C between its
            # memfd made and self._memory set would leak the memfd.
            with HELD_SIGNALS:
                memory = self._memory = load_image(
                    self.name, image, self.config, self.drivers, platform.memory_map()
                )
            self._handle_resources(image, placing=True)
            self._prepare_subdevs()
            platform.start(
                memory.region, memory.table_da, memory.table_len, image.entry, self.features
            )
            self._start_subdevs()
        except BaseException:
            self._release_locked(crashed=False)
            raise
        self._mark_booted(event)

    def _mark_booted(self, event: str) -> None:
        self._booted_at = time.monotonic()
        if event == BOOT:  # a boot someone asked for: a new run of crashes at start
            self._crashes_at_start = 0
        self._states.fire(event)

    def _adopt_platform(self, platform: RprocPlatform) -> RprocPlatform:
        self._boots += 1
        boot = self._boots
        platform.on_notify = self._on_notify
        platform.on_crash = lambda kind, reason: self._queue_crash(boot, kind, reason, False)
        self.platform = platform
        return platform

    def _handle_resources(self, image: FirmwareImage, *, placing: bool) -> None:
        assert self._memory is not None and self.platform is not None
        ctx = ResourceContext(
            self.name,
            self._memory,
            placing=placing,
            kick=self.platform.kick,
            route=self._route,
            next_notifyid=itertools.count().__next__,
            spin=self.platform.spin,
            report_crash=self.platform.on_crash,  # about this boot only
            take_notifications=self.platform.take_notifications,
            peer_pid=lambda: self.pid,
        )
        self._subdevs = handle_resources(
            image.require_table(),
            ctx,
            virtio=self.drivers.virtio,
            handlers=self.drivers.resources,
            memories={m.name: m for m in self.config.memories},
            vendor=self.config.handle_rsc,
        )
        found = [s.features for s in self._subdevs if isinstance(s, FeaturesEntry)]
        self.features = found[0] if found else Features()

    def _prepare_subdevs(self) -> None:
        for subdev in self._subdevs:
            subdev.prepare()

    def _start_subdevs(self) -> None:
        self._subdevs_started = True
        for subdev in self._subdevs:
            subdev.start()

    # -- attach and detach -----------------------------------------------------------
    def _attach_locked(self) -> None:
        """``rproc_attach``: take over a core a boot loader started."""
        booted = self._booted
        if booted is None:
            raise AmplinkError(errno.EINVAL, f"{self.name} has no core to attach to")
        self.image = booted.image
        memory = self._memory = booted.memory
        if self._clean_table is None:  # what detach puts back, as Linux keeps a clean copy
            self._clean_table = memory.table()
        platform = self._adopt_platform(booted.platform)
        try:
            self._handle_resources(booted.image, placing=False)
            self._prepare_subdevs()
            platform.connect(self.features)
            platform.wait_unbound(self.config.boot_timeout)
            self._start_subdevs()
        except BaseException:
            self._disconnect_locked()
            raise
        self._mark_booted(BOOT)

    def detach(self) -> None:
        """``rproc_detach``: hand the core back (it keeps running); ``EINVAL`` unless
        attached, ``EOPNOTSUPP`` if a subdevice cannot tell the core the host left.  A
        later :meth:`boot` attaches again."""
        with self._lock:
            self._states.check(DETACH)
            stuck = [s.name for s in self._subdevs if not s.detachable]
            if stuck:
                raise AmplinkError(
                    errno.EOPNOTSUPP,
                    f"{self.name}: {', '.join(stuck)} cannot be detached: it has no way to "
                    "tell the core that the host went away",
                )
            self.power -= 1
            if self.power > 0:
                return
            self._disconnect_locked()
            self._states.fire(DETACH)

    def _disconnect_locked(self) -> None:
        """Stop the subdevices (a vdev is reset: the core sees its driver go), put the
        clean table back and release the host side; the core keeps running."""
        self._stop_subdevs(AmplinkError(errno.ESHUTDOWN, f"remote core {self.name} was detached"))
        memory, platform = self._memory, self.platform
        if memory is not None and self._clean_table is not None:
            memory.write(memory.table_da, self._clean_table)
        if platform is not None:
            platform.disconnect()
        self._forget_subdevs()

    # -- stop ------------------------------------------------------------------------
    def _stop_locked(self, event: str) -> None:
        """``rproc_stop``: the K3 handshake if the firmware supports it (a failure
        propagates for :meth:`shutdown`, is logged for :meth:`stop`), then a reset."""
        platform = self.platform
        self.last_stop = "reset"
        running = self.state in (RUNNING, ATTACHED)
        if running and platform is not None and self._graceful():
            try:
                platform.shutdown(self.config.shutdown_timeout, self.config.wfi_timeout)
                self.last_stop = "graceful shutdown"
            except AmplinkError as exc:
                if event == SHUTDOWN:
                    raise
                log.warning("%s; resetting it anyway", exc.strerror)  # (names the core)
            except BaseException:  # a Ctrl-C in the handshake: the core is reset anyway
                self._reset_locked(event)
                raise
        self._reset_locked(event)

    def _reset_locked(self, event: str) -> None:
        self._release_locked(crashed=False)  # dumps belong to recovery, not to a stop
        self._states.fire(event)

    def _graceful(self) -> bool:
        return self.config.graceful_shutdown and self.features.graceful_shutdown

    def _release_locked(self, *, crashed: bool) -> None:
        """Reset the core and release everything a boot created (dumping it first if
        it crashed), or the core a boot loader started if it was never attached.  One
        section (:mod:`amplink.irq.held_signals`): a Ctrl-C waits until all is released
        (its waits are bounded by their timeouts), so that none of it is left behind."""
        with HELD_SIGNALS:
            self._release_held(crashed=crashed)

    def _release_held(self, *, crashed: bool) -> None:
        if self.platform is None and self._booted is not None:
            self.platform, self._memory = self._booted.platform, self._booted.memory
        self._stop_subdevs(AmplinkError(errno.ESHUTDOWN, f"remote core {self.name} was stopped"))
        platform = self.platform
        notes: tuple[Note, ...] = ()
        if platform is not None:
            platform.release()
            self._exit_code = platform.exit_code
            notes = platform.coredump_notes()
            self.platform = None
        self._forget_subdevs()
        memory = self._memory
        if memory is not None:
            if crashed:
                self._dump(memory, notes)
            memory.close()
            self._memory = None
        self._booted = None
        self._clean_table = None

    def _stop_subdevs(self, error: OSError, *, crashed: bool = False) -> None:
        """Stop every started subdevice, last first (idempotent)."""
        if not self._subdevs_started:
            return
        self._subdevs_started = False
        for subdev in reversed(self._subdevs):
            try:
                subdev.stop(error, crashed=crashed)
            except Exception:
                log.exception("%s: stopping %s failed", self.name, subdev.name)

    def _forget_subdevs(self) -> None:
        for subdev in reversed(self._subdevs):
            subdev.unprepare()
        self._subdevs = []
        self._routes = {}

    def _dump(self, memory: DeviceMemory, notes: tuple[Note, ...]) -> None:
        """A dump with one segment per window of device memory (Linux's
        ``rproc_coredump`` writes one per registered dump segment) and the platform's
        ``notes``."""
        image = self.image
        folder = self.config.coredump_dir
        dump = coredump.take(
            self.name,
            self.crash_count,
            self.coredump_mode,
            image.machine if image is not None else 0,
            image.entry if image is not None else 0,
            [(w.da, memory.region.view(w.offset, w.size), w.name) for w in memory.amap.mappings],
            elfclass=image.elfclass if image is not None else 64,
            notes=notes,
            path=os.path.join(folder, f"{self.name}-crash{self.crash_count}.core")
            if folder is not None
            else None,
        )
        if dump is None:
            return
        with self._states.changed:
            self.coredumps.append(dump)
            self.dumps_taken += 1
            self._states.changed.notify_all()
            stopping = self._stopping
        if dump.mode != coredump.INLINE:
            return
        if stopping:  # stop() came before the dump: nobody will read it
            dump.discard("before the core was stopped")
        coredump.wait_inline(dump, self.config.inline_coredump_timeout)

    # -- notifications to and from the core ------------------------------------------
    def _route(self, notifyid: int, handler: Callable[[], None]) -> None:
        self._routes.setdefault(notifyid, []).append(handler)

    def _on_notify(self, notifyid: int) -> None:
        """A kick from the core (in the mailbox RX IRQ thread): to whoever routed it."""
        handlers = self._routes.get(notifyid)
        if handlers is None:
            if self._subdevs_started:  # (a core may send any word: at most a burst logged)
                log_ratelimited(
                    log,
                    logging.WARNING,
                    self.name,
                    "%s: kick with unknown notify id %#x ignored",
                    self.name,
                    notifyid,
                )
            return
        for handler in handlers:
            handler()

    # -- crashes and recovery --------------------------------------------------------
    def report_crash(self, kind: int, reason: str = "", *, requested: bool = False) -> None:
        """``rproc_report_crash`` about the core as it runs now: callable from any
        thread, including IRQ threads; the crash is handled in a worker.  Only the
        first crash of an episode counts.  ``requested``: someone asked for it (debugfs
        ``crash``), so it is no sign of firmware that crashes at start."""
        self._queue_crash(self._boots, kind, reason, requested)

    def _queue_crash(self, boot: int, kind: int, reason: str, requested: bool) -> None:
        self._crashes.put(CrashReport(boot, kind, reason, requested, time.monotonic()))

    def _handle_crash(self, report: CrashReport) -> None:
        """``rproc_crash_handler_work``: what the core sent is delivered, its users get
        ``EPIPE``, and it is recovered if recovery is enabled (after a delay, or not at
        all, if it keeps crashing at start)."""
        with self._lock:
            if report.boot != self._boots or not self._states.allows(CRASH):
                return  # about an earlier boot, already crashed (this episode), or stopped
            why = self._crashed_locked(report)
            if not self.recovery:
                log.error(
                    "%s: recovery is disabled; it stays crashed until recovered "
                    "(sysfs recovery = 'recover' or 'enabled')",
                    self.name,
                )
                return
            delay = self._recovery_delay(report)
            if delay is None:
                self._give_up_locked(why)
                return
            if not delay:
                self._recover_locked()
                return
            log.warning(
                "%s: crash #%d came %.1f s after its boot (%d in a row at start); "
                "recovering in %.3g s",
                self.name,
                self.crash_count,
                max(0.0, report.at - self._booted_at),
                self._crashes_at_start,
                delay,
            )
        with self._states.changed:  # a stop, or a recovery someone asked for, ends the wait
            self._states.changed.wait_for(lambda: self._stopping or self.state != CRASHED, delay)
        with self._lock:  # unless the core was stopped or booted again meanwhile
            if self.state == CRASHED and self._boots == report.boot and self.recovery:
                self._recover_locked()

    def _crashed_locked(self, report: CrashReport) -> str:
        """The crash's count, log lines and state; what the core sent is taken in and
        its users fail.  Returns why it crashed."""
        kind = report.kind
        why = report.reason or crash_name(kind)
        self.last_crash = (crash_name(kind), why)
        self.crash_count += 1
        if TRACER.enabled:
            TRACER.event("remoteproc", "crash", rproc=self.name, kind=crash_name(kind), why=why)
        self._states.fire(CRASH)  # after the count: who waits for it sees the cause
        note = self.platform.crash_detail if self.platform is not None else ""
        seen = self._notes_shown.get(note) if note else None
        log.error(
            "crash detected in %s: type %s (%s); handling crash #%d%s%s",
            self.name,
            crash_name(kind),
            why,
            self.crash_count,
            f" (the same failure as crash #{seen})" if seen else "",
            "; no core dump: coredump is disabled" * (self.coredump_mode == coredump.DISABLED),
        )
        if note and seen is None:  # each distinct failure's traceback once
            if len(self._notes_shown) >= KEPT_NOTES:
                self._notes_shown.pop(next(iter(self._notes_shown)))
            self._notes_shown[note] = self.crash_count
            log.error("%s: its firmware left at crash #%d:\n%s", self.name, self.crash_count, note)
        full = why
        lost = self.undelivered = self._salvage()
        if lost:
            n = sum(lost.values())
            log.error(
                "%s crashed before consuming %s (per source address: %s); "
                "their senders' endpoints are released with EPIPE",
                self.name,
                counted(n, "sent message"),
                lost,
            )
            were = "was" if n == 1 else "were"
            full += f"; {counted(n, 'sent message')} {were} never consumed"
        error = AmplinkError(errno.EPIPE, f"remote core {self.name} crashed: {full}")
        self._stop_subdevs(error, crashed=True)
        return why

    def _recovery_delay(self, report: CrashReport) -> float | None:
        """How long to wait before recovering (``RprocConfig.crash_loop``); None: give up."""
        policy = self.config.crash_loop
        at_start = report.at - self._booted_at <= policy.window if policy is not None else False
        if policy is None or report.requested or not at_start:
            self._crashes_at_start = 0
            return 0.0
        self._crashes_at_start += 1
        return policy.delay(self._crashes_at_start)

    def _give_up_locked(self, why: str) -> None:
        """The core crashed at start too often: reset and dump it, and leave it offline."""
        policy = self.config.crash_loop
        assert policy is not None
        self.gave_up = (
            f"recovery gave up after {self._crashes_at_start} crashes in a row, each within "
            f"{policy.window:g} s of its boot"
        )
        self._release_locked(crashed=True)
        self._states.fire(STOP)
        self.power = 0
        log.error(
            "%s: %s (the last: %s); it stays offline. Fix its firmware (%s), then start it again",
            self.name,
            self.gave_up,
            why,
            self.firmware,
        )

    def _salvage(self) -> dict[int, int]:
        lost: dict[int, int] = {}
        for subdev in self._subdevs:
            for src, count in subdev.salvage().items():
                lost[src] = lost.get(src, 0) + count
        return lost

    def recover(self) -> None:
        """Recover a crashed core now (sysfs ``recovery`` = ``recover``)."""
        with self._lock:
            self._recover_locked()

    def _recover_locked(self) -> None:
        """``rproc_trigger_recovery``: reset and dump the crashed core, then boot it.
        The state stays ``crashed`` until the boot succeeds (``running``) or fails
        (``offline``, with one log line saying why)."""
        if not self._states.allows(RECOVER):
            return
        log.info("%s: recovering (crash #%d)", self.name, self.crash_count)
        self._release_locked(crashed=True)
        if self._stopping:
            return  # stop() waits for the lock: it finds the core crashed and released
        try:
            self._boot_locked(RECOVER)
        except Exception as exc:
            self.power = 0
            self._states.fire(STOP)
            if isinstance(exc, OSError) and exc.strerror:
                log.error("%s: recovery failed, the core is offline: %s", self.name, exc.strerror)
            else:
                log.exception("%s: recovery failed; the core is offline", self.name)

    def wait_coredump(self, count: int = 1, timeout: float = 30.0) -> coredump.Coredump:
        """Wait until ``count`` dumps have been taken; returns the newest.  For
        ``inline`` dumps, recovery waits until it has been read."""
        self._states.wait_until(
            lambda: self.dumps_taken >= count, timeout, f"no core dump #{count}"
        )
        return self.coredumps[-1]

    def pending_coredump(self) -> coredump.Coredump | None:
        """The ``inline`` dump recovery waits to be read now, if any."""
        dump = self.coredumps[-1] if self.coredumps else None
        return dump if dump is not None and dump.pending else None

    def wait_crash_handled(
        self, count: int | None = None, timeout: float = 30.0, *, or_dump_pending: bool = False
    ) -> coredump.Coredump | None:
        """Wait until crash number ``count`` (default: the one being handled now) has
        been noticed and handled, recovery included; ``ETIMEDOUT`` otherwise.  With
        ``or_dump_pending``, an ``inline`` dump recovery waits for ends the wait too:
        it is returned (read it to let recovery go on)."""
        if count is not None:
            self._states.wait_until(
                lambda: self.crash_count >= count, timeout, f"no crash #{count}"
            )
        if or_dump_pending:
            self._states.wait_until(
                lambda: not self._crashes.busy or self.pending_coredump() is not None,
                timeout,
                "crash handling still runs",
            )
            pending = self.pending_coredump()
            if pending is not None:
                return pending
        if not self._crashes.join(timeout):
            raise AmplinkError(errno.ETIMEDOUT, f"{self.name}: crash handling still runs")
        return None

    # -- memory and trace ------------------------------------------------------------
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
            traces = [s for s in self._subdevs if isinstance(s, TraceBuffer)]
            if not 0 <= index < len(traces):
                why = self._traces_are(len(traces))
                raise AmplinkError(errno.ENODEV, f"{self.name}: trace{index} not available: {why}")
            return traces[index].read()

    def _traces_are(self, count: int) -> str:
        """Which trace buffers there are, in words."""
        if self.state not in (RUNNING, ATTACHED):
            return f"{self.name} is {self.state} (its trace buffers exist while it runs)"
        if not count:
            return "its firmware's resource table has no trace buffer (RSC_TRACE)"
        return f"its firmware has {'trace0' if count == 1 else f'trace0 to trace{count - 1}'}"
