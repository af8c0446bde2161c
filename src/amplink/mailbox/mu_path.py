"""One side of the kick path between a host and a remote core: an i.MX MU model, the
interrupt controller its output is wired to, the controller driver, and the kick
channels (by default TX data register 0 out, RX data register 0 in; a board chooses
others with :class:`MuWiring`).

Both processes build one: the host on side A with the threaded driver (the client
callback runs in the channel's IRQ thread, as in the 2026 i.MX series, or is deferred
to a workqueue for comparison); the remote core on side B with the classic driver,
whose handlers run in the core's interrupt context like a bare-metal ISR.

The unit's state lives in ``mmio`` (the window of :mod:`amplink.hw.soc`); each side's
interrupt output is an eventfd.  A process owns both eventfds it was given: its own
line's (read by its :class:`~amplink.irq.domain.IrqDomain`) and the peer's (pulsed by
the model when the peer's output becomes active).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from amplink.errors import AmplinkError
from amplink.hw.imx_mu import ImxMu
from amplink.hw.soc import mu_words
from amplink.irq.domain import IrqDomain
from amplink.irq.line import IrqWire
from amplink.irq.workqueue import Work, Workqueue
from amplink.mailbox.framework import free_channel
from amplink.mailbox.imx_mu import IMX_MU_TYPE_RX, IMX_MU_TYPE_TX, ImxMuController
from amplink.mailbox.kick import MboxKick
from amplink.memory.region import SharedRegion

MU_IRQ = 32
KICK_CHANNEL = 0
MU_CHANNELS = 4  # an MU has four TX and four RX data registers

Delivery = Literal["thread", "workqueue"]


@dataclass(frozen=True)
class MuWiring:
    """How one MU connects a host and a core, seen from the host (side A).

    ``tx`` is the data register the host writes kicks to (the core reads the RX
    register of the same index); ``rx`` the one the core answers on.  ``host_irq`` and
    ``core_irq`` are the interrupt lines the unit drives on each side.
    """

    unit: str = "mu"
    tx: int = KICK_CHANNEL
    rx: int = KICK_CHANNEL
    host_irq: int = MU_IRQ
    core_irq: int = MU_IRQ

    def __post_init__(self) -> None:
        for what, index in (("tx", self.tx), ("rx", self.rx)):
            if not 0 <= index < MU_CHANNELS:
                raise AmplinkError(
                    errno.EINVAL,
                    f"MU {self.unit}: {what} channel {index} does not exist (0..{MU_CHANNELS - 1})",
                )


DEFAULT_WIRING = MuWiring()  # channel 0 both ways, line 32 on both sides


class MuKickPath:
    """This process's side of an MU used for vring kicks.

    ``on_notify(notifyid)`` runs for every kick from the peer: in the RX channel's IRQ
    thread (``delivery="thread"``), in a workqueue worker (``"workqueue"``), or in hard
    IRQ context (``threaded=False``, the remote's classic driver).
    """

    def __init__(
        self,
        name: str,
        mmio: SharedRegion,
        side: Literal["a", "b"],
        own_fd: int,
        peer_fd: int,
        on_notify: Callable[[int], None],
        *,
        threaded: bool = True,
        delivery: Delivery = "thread",
        rt_priority: int | None = None,
        wiring: MuWiring | None = None,
    ) -> None:
        """``wiring`` is seen from this process: ``tx`` out, ``rx`` in, ``host_irq``
        this process's line (the core's process passes its own view)."""
        wiring = wiring if wiring is not None else DEFAULT_WIRING
        self.name = name
        self._peer_fd = peer_fd
        self._own_fd = own_fd
        self.domain = IrqDomain(f"{name}-gic", rt_priority=rt_priority)
        self.workqueue: Workqueue | None = None
        self.controller: ImxMuController | None = None
        self.kicks: MboxKick | None = None
        try:
            irq = wiring.host_irq
            line = self.domain.add_line(irq, fd=own_fd)
            self._own_fd = -1  # the domain owns it now
            wires = (IrqWire(own_fd), IrqWire(peer_fd))
            if side == "b":
                wires = wires[::-1]
            unit = ImxMu(f"{name}-{wiring.unit}", mu_words(mmio), wire_a=wires[0], wire_b=wires[1])
            mu_side = unit.side(side)
            line.add_source(mu_side.irq_active)
            self.domain.start()
            self.controller = ImxMuController(
                f"{name}-{wiring.unit}{side}", mu_side, self.domain, irq, threaded=threaded
            )
            self.controller.register()
            deliver = on_notify
            if delivery == "workqueue":
                deliver = self._deferred(on_notify)
            dev = self.controller.dev
            self.kicks = MboxKick(
                f"{name}-kick",
                (dev, IMX_MU_TYPE_TX, wiring.tx),
                (dev, IMX_MU_TYPE_RX, wiring.rx),
                deliver,
            )
        except BaseException:
            self.close()
            raise
        self.kick = self.kicks.kick

    def stop_receiving(self) -> None:
        """Free the RX kick channel: its interrupt is disabled, nothing more arrives."""
        if self.kicks is not None:
            free_channel(self.kicks.rx)

    def _deferred(self, on_notify: Callable[[int], None]) -> Callable[[int], None]:
        """Deliver through a workqueue (what imx_rproc did before 2026): the IRQ thread
        only queues the work; a kworker runs the notification later."""
        wq = self.workqueue = Workqueue(f"{self.name}-rproc")
        pending: set[int] = set()

        def run() -> None:
            while pending:
                on_notify(pending.pop())

        work = Work(run, f"{self.name}-vq-work")

        def queue(notifyid: int) -> None:
            pending.add(notifyid)
            wq.queue_work(work)

        return queue

    def close(self) -> None:
        """Free channels, stop interrupt handling, close both eventfds. Idempotent."""
        if self.kicks is not None:
            self.kicks.close()
            self.kicks = None
        if self.controller is not None:
            self.controller.unregister()
            self.controller = None
        if self.workqueue is not None:
            self.workqueue.destroy()
            self.workqueue = None
        self.domain.close()
        for fd in (self._own_fd, self._peer_fd):
            if fd >= 0:
                os.close(fd)
        self._own_fd = self._peer_fd = -1
