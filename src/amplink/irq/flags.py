"""Handler return values and request flags, with Linux's values.

The values matter beyond faithfulness: results of several handlers on one line are
OR'ed, and the spurious-interrupt detector reads that combination.
"""

from __future__ import annotations

from enum import IntEnum


class IrqReturn(IntEnum):
    """What a handler says about an interrupt."""

    NONE = 0  # not from my device
    HANDLED = 1  # from my device, and dealt with
    WAKE_THREAD = 2  # from my device; my device is quiet now; run my thread


IRQ_NONE = IrqReturn.NONE
IRQ_HANDLED = IrqReturn.HANDLED
IRQ_WAKE_THREAD = IrqReturn.WAKE_THREAD

IRQ_NOTCONNECTED = 1 << 31

IRQF_TRIGGER_NONE = 0x0
IRQF_TRIGGER_RISING = 0x1
IRQF_TRIGGER_FALLING = 0x2
IRQF_TRIGGER_HIGH = 0x4
IRQF_TRIGGER_LOW = 0x8
IRQF_TRIGGER_MASK = 0xF  # RISING | FALLING | HIGH | LOW
IRQF_TRIGGER_EDGE = IRQF_TRIGGER_RISING | IRQF_TRIGGER_FALLING
IRQF_SHARED = 0x80
IRQF_PROBE_SHARED = 0x100
IRQF_PERCPU = 0x400
IRQF_ONESHOT = 0x2000
IRQF_NO_SUSPEND = 0x4000
IRQF_NO_THREAD = 0x10000
IRQF_COND_SUSPEND = 0x40000
IRQF_NO_AUTOEN = 0x80000
IRQF_NO_DEBUG = 0x100000
IRQF_COND_ONESHOT = 0x200000


def is_edge(trigger: int) -> bool:
    """Whether a trigger type (``IRQF_TRIGGER_*``) is edge-triggered."""
    return bool(trigger & IRQF_TRIGGER_EDGE)
