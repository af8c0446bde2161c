"""What an emulated Cortex-M core sees: its CPU, clock, memory windows and MU.

A board describes it (``platform = "emulated"``, see ``docs/guide.md``), or it is
:data:`IMX8MP_M7`, the core amplink's images are built for; the host's platform driver
(:mod:`amplink.remoteproc.emulated`) lays the windows out in one shared region and
passes the description to the core process as JSON.  The first window is where the
host places what it allocates (vrings and buffers whose address the firmware leaves
open), as Linux uses a ``vdev0buffer`` reserved-memory region.
"""

from __future__ import annotations

import errno
import itertools
import json
from dataclasses import asdict, dataclass, field

from amplink.errors import AmplinkError
from amplink.hw.imx_mu import NUM_CHANS
from amplink.memory.addrmap import Mapping
from amplink.memory.region import PAGE_SIZE

CPUS = ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33")
DEFAULT_CLOCK_HZ = 800_000_000
NUM_IRQS = 240  # external interrupt lines of the NVIC (ARMv7-M allows up to 496)
SYSTEM_BASE = 0xE000_0000  # the Private Peripheral Bus and above: not for memory
MU_SIZE = 0x1_0000  # the address range the MU's side B decodes


@dataclass(frozen=True)
class Window:
    """``size`` bytes of memory at device address ``da``, named like the board's memory."""

    name: str
    da: int
    size: int


@dataclass(frozen=True)
class CortexMSoc:
    """One emulated core: ``cpu`` (a name in :data:`CPUS`), the clock SysTick counts,
    its memory ``windows``, the MU's side-B address, NVIC line and the data channel
    firmware uses on it (what the host wires by default), the vector table's address at
    reset (VTOR), and an optional GDB server port (``gdb_wait``: hold the core at reset
    until a debugger continues it)."""

    windows: tuple[Window, ...]
    cpu: str = "cortex-m7"
    clock_hz: int = DEFAULT_CLOCK_HZ
    mu_base: int = 0x30AB_0000
    mu_irq: int = 97
    mu_channel: int = 1
    vtor: int = 0
    gdb_port: int | None = None
    gdb_wait: bool = False
    code: tuple[tuple[int, int], ...] = field(default=())  # executable (da, size) ranges

    def check(self) -> None:
        """``EINVAL`` naming the problem: an unknown CPU, windows not aligned to a page,
        overlapping each other, the MU or the system region, an NVIC line out of range."""
        if self.cpu not in CPUS:
            raise AmplinkError(errno.EINVAL, f"unknown CPU {self.cpu!r} (one of {CPUS})")
        if not self.windows:
            raise AmplinkError(errno.EINVAL, "an emulated core needs at least one memory window")
        if not 0 <= self.mu_irq < NUM_IRQS:
            raise AmplinkError(errno.EINVAL, f"MU interrupt {self.mu_irq} is not 0..{NUM_IRQS - 1}")
        if not 0 <= self.mu_channel < NUM_CHANS:
            raise AmplinkError(
                errno.EINVAL, f"MU channel {self.mu_channel} is not 0..{NUM_CHANS - 1}"
            )
        if self.clock_hz <= 0:
            raise AmplinkError(errno.EINVAL, f"clock_hz must be positive, got {self.clock_hz}")
        ranges = [(w.name, w.da, w.size) for w in self.windows]
        ranges.append(("the MU", self.mu_base, MU_SIZE))
        for name, da, size in ranges:
            if da % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
                raise AmplinkError(
                    errno.EINVAL, f"{name} ({da:#x}, {size:#x} bytes) is not aligned to 4 KiB"
                )
            if da + size > SYSTEM_BASE:
                raise AmplinkError(
                    errno.EINVAL, f"{name} reaches into the system region at {SYSTEM_BASE:#x}"
                )
        ordered = sorted(ranges, key=lambda r: r[1])
        for a, b in itertools.pairwise(ordered):
            if a[1] + a[2] > b[1]:
                raise AmplinkError(errno.EINVAL, f"{a[0]} and {b[0]} overlap")

    def layout(self) -> list[Mapping]:
        """Where each window lives in the core's shared region: one after the other,
        in the board's order (which is the host allocator's order too)."""
        out, offset = [], 0
        for w in self.windows:
            out.append(Mapping(w.da, w.size, offset, w.name))
            offset += w.size
        return out

    def region_size(self) -> int:
        """Bytes of shared memory the windows need."""
        return sum(w.size for w in self.windows)

    def to_json(self) -> str:
        """The description as the core process receives it (``--soc``)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> CortexMSoc:
        """Inverse of :meth:`to_json`; ``EINVAL`` if it is not a valid description."""
        try:
            raw = json.loads(text)
            windows = tuple(Window(**w) for w in raw.pop("windows"))
            code = tuple((int(a), int(b)) for a, b in raw.pop("code", ()))
            soc = cls(windows=windows, code=code, **raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise AmplinkError(errno.EINVAL, f"unusable core description: {exc}") from None
        soc.check()
        return soc


IMX8MP_M7 = CortexMSoc(
    windows=(
        Window("ddr", 0x5500_0000, 0x10_0000),
        Window("itcm", 0x0000_0000, 0x2_0000),
        Window("dtcm", 0x2000_0000, 0x2_0000),
    ),
    cpu="cortex-m7",
    mu_base=0x30AB_0000,
    mu_irq=97,
    mu_channel=1,
)
"""The first personality: an i.MX8M Plus-like Cortex-M7 (what ``firmware/cortex-m``
is built for, ``common/soc.h``): ITCM at 0, DTCM at 0x2000_0000, the shared DDR window
at 0x5500_0000 where NXP's device trees put the vrings (first: the host's allocations
go there), MU1's side B at 0x30ab_0000 on NVIC line 97, kicks on MU channel 1."""
