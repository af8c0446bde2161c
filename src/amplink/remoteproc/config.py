"""Every setting of one remote processor, in one checked object.

Linux spreads these over module parameters, device-tree properties and the initial
values of sysfs files; here they are the fields of :class:`RprocConfig`, checked when
it is made (``EINVAL`` naming the field).  Settings of the host's drivers (rpmsg buffer
sizes, send timeouts) belong to those drivers, not here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from amplink.errors import AmplinkError
from amplink.mailbox.mu_path import Delivery, MuWiring
from amplink.remoteproc import coredump
from amplink.remoteproc.devmem import Memory
from amplink.remoteproc.subdev import VendorHook

DEFAULT_MEMORY_SIZE = 64 << 20
# A core's device addresses: a resource table's carveout gives its ``da`` and ``len`` in
# 32 bits (struct fw_rsc_carveout), so no core memory reaches past 4 GiB.
MAX_MEMORY_SIZE = 1 << 32
SHUTDOWN_ACK_TIMEOUT = 5.0  # K3: 5000 ms for RP_MBOX_SHUTDOWN_ACK
WFI_TIMEOUT = 0.002  # K3: poll for WFI up to 2 ms
INLINE_COREDUMP_TIMEOUT = 300.0  # devcoredump's 5 minutes
DELIVERIES = ("thread", "workqueue")


@dataclass(frozen=True, kw_only=True)
class CrashLoop:
    """How recovery treats a core whose firmware keeps crashing right after it boots.

    Linux recovers every crash at once (``rproc_crash_handler_work`` calls
    ``rproc_trigger_recovery``, with no delay and no limit), so such firmware is
    rebooted forever at full speed.  amplink bounds it: a crash within ``window`` s of
    the boot it ended is a crash *at start*; the first of a run of them is recovered
    at once, as Linux does, the n-th after ``backoff * 2**(n-2)`` s (0.1, 0.2, 0.4 s by
    default), and the ``limit``-th is not recovered: the core is reset, dumped and
    left ``offline`` with one log line saying so.  A crash later than ``window`` after
    its boot, a crash requested through debugfs, and every ``start`` begin a new run.
    """

    limit: int = 5
    window: float = 10.0
    backoff: float = 0.1

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise AmplinkError(errno.EINVAL, f"CrashLoop.limit = {self.limit}: below 1")
        for name in ("window", "backoff"):
            if getattr(self, name) < 0:
                raise AmplinkError(
                    errno.EINVAL, f"CrashLoop.{name} = {getattr(self, name)!r}: negative"
                )

    def delay(self, run: int) -> float | None:
        """How long to wait before recovering the ``run``-th crash at start in a row
        (None: give up)."""
        if run >= self.limit:
            return None
        return 0.0 if run < 2 else self.backoff * 2 ** (run - 2)


@dataclass(frozen=True, kw_only=True)
class RprocConfig:
    """The settings of one remote processor; every field has Linux's default or amplink's.

    Lifecycle:

    * ``recovery``: recover a crashed core (sysfs ``recovery``, initial value);
    * ``crash_loop``: how recovery backs off from, and gives up on, firmware that
      crashes right after each boot (:class:`CrashLoop`; None: recover every crash at
      once, forever, as Linux does);
    * ``coredump_mode``: ``disabled``, ``enabled`` or ``inline`` (sysfs ``coredump``);
      dumps are kept in ``Rproc.coredumps`` and, with ``coredump_dir``, written there;
      ``inline_coredump_timeout`` (s) bounds how long recovery waits for an inline dump
      to be read;
    * ``graceful_shutdown``: whether the platform does TI K3's shutdown handshake with
      firmware that announces it (False: a stop is always a reset, as on i.MX);
      ``shutdown_timeout`` (s) for ``RP_MBOX_SHUTDOWN_ACK``, ``wfi_timeout`` (s) for
      the core to reach WFI after it.

    Memory and resources:

    * ``memory_size``: bytes of device memory from da 0 the core may have;
    * ``memories``: the platform's named memories, used by the firmware's carveouts of
      the same name;
    * ``handle_rsc``: handles vendor resource entries no resource handler claims
      (``RSC_HANDLED``, ``RSC_IGNORED`` or a negative errno that fails the boot).

    The platform (a core that is a process or an emulated CPU, kicked through an MU):

    * ``cpu``: pin the core to this CPU; ``spin``: whether both sides may poll the
      rings (None: when they can run on different CPUs);
    * ``boot_timeout`` (s): how long a booted core waits for the host's driver;
    * ``delivery``: how a kick reaches the host's rings, in the MU channel's IRQ thread
      (``thread``, as the 2026 i.MX series) or through a workqueue (``workqueue``);
      ``rt_priority`` runs the host's IRQ threads SCHED_FIFO where the OS allows;
    * ``mailbox``: the MU channels and interrupt lines of the kick path (None: the
      platform's own; ``core_irq`` is the line at the core's interrupt controller, an
      emulated Cortex-M's NVIC line).
    """

    recovery: bool = True
    crash_loop: CrashLoop | None = field(default_factory=CrashLoop)
    coredump_mode: str = coredump.DISABLED
    coredump_dir: str | None = None
    inline_coredump_timeout: float = INLINE_COREDUMP_TIMEOUT
    graceful_shutdown: bool = True
    shutdown_timeout: float = SHUTDOWN_ACK_TIMEOUT
    wfi_timeout: float = WFI_TIMEOUT
    memory_size: int = DEFAULT_MEMORY_SIZE
    memories: Sequence[Memory] = field(default=())
    handle_rsc: VendorHook | None = None
    cpu: int | None = None
    spin: bool | None = None
    boot_timeout: float = 10.0
    delivery: Delivery = "thread"
    rt_priority: int | None = None
    mailbox: MuWiring | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "memories", tuple(self.memories))
        if self.coredump_mode not in coredump.MODES:
            raise self._invalid("coredump_mode", f"not one of {', '.join(coredump.MODES)}")
        if self.delivery not in DELIVERIES:
            raise self._invalid("delivery", f"not one of {', '.join(DELIVERIES)}")
        for name in ("inline_coredump_timeout", "shutdown_timeout", "wfi_timeout"):
            if getattr(self, name) < 0:
                raise self._invalid(name, "negative")
        if self.boot_timeout <= 0:
            raise self._invalid("boot_timeout", "not positive")
        if self.memory_size <= 0:
            raise self._invalid("memory_size", "not positive")
        cpus = os.cpu_count() or 1
        if self.cpu is not None and not 0 <= self.cpu < cpus:
            raise self._invalid("cpu", f"not a CPU of this machine (0 to {cpus - 1})")
        if self.spin not in (True, False, None):
            raise self._invalid("spin", "not True, False or None")
        names = [m.name for m in self.memories]
        if len(set(names)) != len(names):
            raise self._invalid("memories", "two memories have the same name")

    def _invalid(self, name: str, why: str) -> AmplinkError:
        return AmplinkError(errno.EINVAL, f"RprocConfig.{name} = {getattr(self, name)!r}: {why}")
