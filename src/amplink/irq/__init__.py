"""Interrupt lines, Linux's threaded-interrupt semantics, and a workqueue.

See :mod:`amplink.irq.domain` for how an interrupt travels from a line to a primary
handler and a handler thread, and :mod:`amplink.irq.spurious` for storm detection.
"""

from amplink.irq.domain import IrqAction, IrqDomain
from amplink.irq.flags import (
    IRQ_HANDLED,
    IRQ_NONE,
    IRQ_NOTCONNECTED,
    IRQ_WAKE_THREAD,
    IRQF_NO_AUTOEN,
    IRQF_ONESHOT,
    IRQF_PROBE_SHARED,
    IRQF_SHARED,
    IRQF_TRIGGER_FALLING,
    IRQF_TRIGGER_HIGH,
    IRQF_TRIGGER_LOW,
    IRQF_TRIGGER_RISING,
    IrqReturn,
)
from amplink.irq.line import IrqLine, IrqWire
from amplink.irq.spurious import SpuriousPolicy
from amplink.irq.workqueue import Work, Workqueue

__all__ = [
    "IRQF_NO_AUTOEN",
    "IRQF_ONESHOT",
    "IRQF_PROBE_SHARED",
    "IRQF_SHARED",
    "IRQF_TRIGGER_FALLING",
    "IRQF_TRIGGER_HIGH",
    "IRQF_TRIGGER_LOW",
    "IRQF_TRIGGER_RISING",
    "IRQ_HANDLED",
    "IRQ_NONE",
    "IRQ_NOTCONNECTED",
    "IRQ_WAKE_THREAD",
    "IrqAction",
    "IrqDomain",
    "IrqLine",
    "IrqReturn",
    "IrqWire",
    "SpuriousPolicy",
    "Work",
    "Workqueue",
]
