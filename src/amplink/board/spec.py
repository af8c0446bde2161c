"""Board descriptions: a TOML file that says what a system has, checked before use.

A board has named memories, mailbox units and remote cores (see ``default.toml`` in
this package for an annotated example, and ``docs/guide.md`` for every key).  Parsing
is strict: a key that is unknown, of the wrong type, out of range, or that names
something not defined is a :class:`BoardError` that names the key (``core 'm4'.tx``)
and says what is expected, so that a typo never silently becomes a default.
"""

from __future__ import annotations

import difflib
import errno
import itertools
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from amplink.emu.soc import CPUS, DEFAULT_CLOCK_HZ, NUM_IRQS, CortexMSoc, Window
from amplink.errors import AmplinkError
from amplink.mailbox.mu_path import MU_CHANNELS, MU_IRQ, MuWiring
from amplink.remoteproc import coredump
from amplink.remoteproc.config import (
    DEFAULT_MEMORY_SIZE,
    DELIVERIES,
    MAX_MEMORY_SIZE,
    CrashLoop,
    RprocConfig,
)
from amplink.remoteproc.devmem import Memory
from amplink.remoteproc.elf import FirmwareError
from amplink.remoteproc.emulated import EmulatedPlatformDriver
from amplink.remoteproc.fwref import resolve
from amplink.remoteproc.platform import PlatformDriver
from amplink.remoteproc.process import WDOG_IRQ, ProcessPlatformDriver
from amplink.rpmsg.config import DEFAULT_LIMITS, RpmsgLimits

DEFAULT_BOARD = "default.toml"
MAILBOX_MODELS = ("imx-mu",)  # what the process platform can wire between two processes
PERSONALITIES = ("imx", "k3")
PLATFORMS = ("process", "emulated")
BACKENDS = ("virtio", "glink")
RECOVERY = ("enabled", "disabled")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}\Z")
_T = TypeVar("_T")


class BoardError(AmplinkError):
    """A board description that cannot be used; ``key`` is where, as written in the
    file (``core 'm4'.mailbox``), ``source`` the file."""

    def __init__(self, source: str, key: str, message: str) -> None:
        where = source if key == "<file>" else f"{source}: {key}"  # the file as a whole
        super().__init__(errno.EINVAL, f"{where}: {message}")
        self.source = source
        self.key = key


@dataclass(frozen=True)
class MemorySpec:
    """A named range of a core's device memory that its firmware's carveout of the
    same name uses (``base`` is the device address)."""

    name: str
    base: int
    size: int

    def memory(self) -> Memory:
        """The remoteproc platform memory this describes."""
        return Memory(self.name, self.base, self.size)


@dataclass(frozen=True)
class MailboxSpec:
    """A mailbox unit between the host and one core, and its interrupt lines."""

    name: str
    model: str = "imx-mu"
    host_irq: int = MU_IRQ
    core_irq: int = MU_IRQ


@dataclass(frozen=True)
class EmulatedSpec:
    """What an emulated core is (``platform = "emulated"``): its CPU model and clock,
    its memory map (the board's memories, in the order the host allocates from), where
    it sees the MU's side B, its vector table at reset, and an optional GDB port."""

    cpu_model: str = "cortex-m7"
    clock_hz: int = DEFAULT_CLOCK_HZ
    memory_map: tuple[MemorySpec, ...] = ()
    mu_base: int = 0x30AB_0000
    vtor: int = 0
    gdb_port: int | None = None
    gdb_wait: bool = False

    def soc(self) -> CortexMSoc:
        """The core's description for the emulator (its MU's NVIC line is the mailbox's
        ``core_irq``, which the platform takes from the wiring)."""
        return CortexMSoc(
            windows=tuple(Window(m.name, m.base, m.size) for m in self.memory_map),
            cpu=self.cpu_model,
            clock_hz=self.clock_hz,
            mu_base=self.mu_base,
            vtor=self.vtor,
            gdb_port=self.gdb_port,
            gdb_wait=self.gdb_wait,
        )


@dataclass(frozen=True)
class CoreSpec:
    """A remote core: its platform personality, wiring, firmware and policies."""

    name: str
    firmware: str
    mailbox: MailboxSpec
    personality: str = "imx"
    tx: int = 0
    rx: int = 0
    memories: tuple[MemorySpec, ...] = ()
    memory_size: int = DEFAULT_MEMORY_SIZE
    auto_boot: bool = True
    graceful_shutdown: bool = False
    delivery: str = "thread"
    rpmsg: str = "virtio"
    recovery: str = "enabled"
    crash_loop_limit: int = CrashLoop().limit
    coredump: str = coredump.DISABLED
    cpu: int | None = None
    emulated: EmulatedSpec | None = None  # None: the core is a process
    limits: RpmsgLimits = DEFAULT_LIMITS

    def describe(self) -> str:
        """One line: personality (and emulated CPU), mailbox wiring, backend and firmware."""
        mb = self.mailbox
        cpu = f" ({self.emulated.cpu_model}, emulated)" if self.emulated else ""
        return (
            f"{self.name}: {self.personality}{cpu}, {mb.model} {mb.name} tx {self.tx} rx {self.rx} "
            f"irq {mb.host_irq}, rpmsg over {self.rpmsg}, firmware {self.firmware}"
            + ("" if self.auto_boot else ", not booted automatically")
        )

    def wiring(self) -> MuWiring:
        """The MU wiring of this core's kick path."""
        mb = self.mailbox
        return MuWiring(mb.name, self.tx, self.rx, mb.host_irq, mb.core_irq)

    def platforms(self) -> tuple[PlatformDriver, ...]:
        """The platform driver that runs this core: an emulated Cortex-M as described, or
        a process."""
        if self.emulated is not None:
            return (EmulatedPlatformDriver(self.emulated.soc()),)
        return (ProcessPlatformDriver(),)

    def rproc_config(self, coredump_dir: str | None = None) -> RprocConfig:
        """The remote processor's settings this description stands for (dumps are
        written to ``coredump_dir``)."""
        return RprocConfig(
            recovery=self.recovery == "enabled",
            crash_loop=CrashLoop(limit=self.crash_loop_limit) if self.crash_loop_limit else None,
            coredump_mode=self.coredump,
            coredump_dir=coredump_dir,
            graceful_shutdown=self.graceful_shutdown,
            memory_size=self.memory_size,
            memories=[m.memory() for m in self.memories],
            cpu=self.cpu,
            delivery="workqueue" if self.delivery == "workqueue" else "thread",
            mailbox=self.wiring(),
        )


@dataclass(frozen=True)
class BoardSpec:
    """A whole system: what :class:`~amplink.board.system.Board` boots."""

    name: str
    source: str
    description: str = ""
    cores: tuple[CoreSpec, ...] = ()
    coredump_dir: str | None = None
    memories: tuple[MemorySpec, ...] = field(default=(), repr=False)
    mailboxes: tuple[MailboxSpec, ...] = field(default=(), repr=False)

    def core(self, name: str) -> CoreSpec:
        """The core called ``name``; ``ENODEV`` naming the cores there are."""
        for c in self.cores:
            if c.name == name:
                return c
        raise self.unknown_core(name)

    def unknown_core(self, name: str) -> AmplinkError:
        """The ``ENODEV`` error for a core the board does not have, listing those it has."""
        return AmplinkError(
            errno.ENODEV,
            f"board {self.name} has no core {name!r} (cores: {', '.join(self.names())}, "
            f"or remoteproc0..{len(self.cores) - 1})",
        )

    def names(self) -> list[str]:
        """The cores' names, in the file's order."""
        return [c.name for c in self.cores]


def load_board(path: str | Path | None = None) -> BoardSpec:
    """Read and check a board file; the built-in default board without ``path``."""
    if path is None:
        ref = resources.files("amplink.board").joinpath(DEFAULT_BOARD)
        return parse_board(ref.read_text(encoding="utf-8"), "<built-in default board>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise AmplinkError(
            exc.errno or errno.ENOENT, f"cannot read board file {p}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise BoardError(str(p), "<file>", "not a text file (a board file is TOML)") from None
    return parse_board(text, str(p), base=p.parent)


def parse_board(text: str, source: str = "<board>", base: Path | None = None) -> BoardSpec:
    """Parse and check a board description given as TOML text.  Firmware references
    are resolved by :func:`amplink.remoteproc.fwref.resolve`'s rule: a relative path
    (``fw/echo.elf``, ``sensor_fw.py``) is relative to ``base``, the board file's folder
    (default: the current directory); a module name (``amplink.firmware.demo``) stays
    as it is, and a bare ``*.elf`` name
    not found there is looked up on the firmware search path
    (:mod:`amplink.remoteproc.firmware_path`).  Each must exist."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(source, "TOML", str(exc)) from None
    return _Parser(source, base).board(doc)


class _Parser:
    """The checks, with the file name for every error."""

    def __init__(self, source: str, base: Path | None = None) -> None:
        self.source = source
        self.base = base

    def fail(self, key: str, message: str) -> BoardError:
        return BoardError(self.source, key, message)

    def table(self, where: str, value: object, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a table, got {_show(value)}")
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, known, 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(
                    key if where == "<file>" else f"{where}.{key}",
                    f"unknown key{hint}; known keys: {', '.join(known)}",
                )
        return value

    def get(
        self,
        where: str,
        tbl: Mapping[str, Any],
        key: str,
        kind: type[_T],
        default: _T | None = None,
        *,
        check: Callable[[_T], str | None] = lambda v: None,
    ) -> _T:
        """``tbl[key]`` of type ``kind`` (required when ``default`` is None)."""
        if key not in tbl:
            if default is None:
                raise self.fail(f"{where}.{key}", f"required key is missing ({_what(kind)})")
            return default
        value = tbl[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{where}.{key}", f"expected {_what(kind)}, got {_show(value)}")
        problem = check(value)
        if problem is not None:
            raise self.fail(f"{where}.{key}", problem)
        return value

    def choice(self, where: str, tbl: Mapping[str, Any], key: str, options: tuple[str, ...],
               default: str) -> str:  # fmt: skip
        return self.get(where, tbl, key, str, default, check=_one_of(options))

    def name(self, where: str, tbl: Mapping[str, Any]) -> str:
        return self.get(where, tbl, "name", str, check=_valid_name)

    def board(self, doc: dict[str, Any]) -> BoardSpec:
        self.table("<file>", doc, ("board", "memory", "mailbox", "core"))
        head = self.table("board", doc.get("board", {}), ("name", "description", "coredump_dir"))
        name = self.get("board", head, "name", str, check=_valid_name)
        description = self.get("board", head, "description", str, "")
        dump_dir = head.get("coredump_dir")
        if dump_dir is not None:
            dump_dir = self.get("board", head, "coredump_dir", str)
        memories = self.named("memory", doc, self.memory)
        mailboxes = self.named("mailbox", doc, self.mailbox)
        cores = self.named(
            "core", doc, lambda where, tbl: self.core(where, tbl, memories, mailboxes)
        )
        if not cores:
            raise self.fail("core", "a board needs at least one [[core]]")
        self.check_sharing(cores)
        return BoardSpec(
            name,
            self.source,
            description,
            tuple(cores.values()),
            dump_dir,
            tuple(memories.values()),
            tuple(mailboxes.values()),
        )

    def named(
        self, kind: str, doc: Mapping[str, Any], make: Callable[[str, dict[str, Any]], _T]
    ) -> dict[str, _T]:
        """An array of tables (``[[kind]]``) whose items have unique names."""
        items = doc.get(kind, [])
        if not isinstance(items, list):
            raise self.fail(kind, f"expected an array of tables ([[{kind}]]), got {_show(items)}")
        out: dict[str, _T] = {}
        for i, item in enumerate(items):
            label = f"{kind}[{i}]"
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                label = f"{kind} {item['name']!r}"
            if not isinstance(item, dict):
                raise self.fail(label, f"expected a table, got {_show(item)}")
            name = self.name(label, item)
            if name in out:
                raise self.fail(f"{label}.name", f"{kind} {name!r} is defined twice")
            out[name] = make(label, item)
        return out

    def memory(self, where: str, tbl: dict[str, Any]) -> MemorySpec:
        self.table(where, tbl, ("name", "base", "size"))
        base = self.get(where, tbl, "base", int, check=_at_least(0))
        size = self.get(where, tbl, "size", int, check=_at_least(1))
        if base + size > DEVICE_ADDRESS_SPACE:
            raise self.fail(
                f"{where}.size",
                f"the memory ends at {base + size:#x}, beyond {DEVICE_ADDRESS_SPACE:#x}: "
                f"{_WHY_32_BITS}",
            )
        return MemorySpec(tbl["name"], base, size)

    def mailbox(self, where: str, tbl: dict[str, Any]) -> MailboxSpec:
        self.table(where, tbl, ("name", "model", "channels", "host_irq", "core_irq"))
        model = self.choice(where, tbl, "model", MAILBOX_MODELS, "imx-mu")
        self.get(where, tbl, "channels", int, MU_CHANNELS, check=_exactly(MU_CHANNELS, model))
        host_irq = self.get(where, tbl, "host_irq", int, MU_IRQ, check=_irq_line(host=True))
        core_irq = self.get(where, tbl, "core_irq", int, MU_IRQ, check=_irq_line(host=False))
        return MailboxSpec(tbl["name"], model, host_irq, core_irq)

    def core(
        self,
        where: str,
        tbl: dict[str, Any],
        memories: Mapping[str, MemorySpec],
        mailboxes: Mapping[str, MailboxSpec],
    ) -> CoreSpec:
        self.table(where, tbl, _CORE_KEYS + _EMULATED_KEYS)
        personality = self.choice(where, tbl, "personality", PERSONALITIES, "imx")
        mb_name = self.get(where, tbl, "mailbox", str, check=_defined("mailbox", mailboxes))
        emulated = None
        if self.choice(where, tbl, "platform", PLATFORMS, "process") == "emulated":
            emulated = self.emulated(where, tbl, memories, mailboxes[mb_name])
        else:
            for key in _EMULATED_KEYS:
                if key in tbl:
                    raise self.fail(f"{where}.{key}", 'only for a core with platform = "emulated"')
        channel = _at_most(MU_CHANNELS - 1, at_least=0)
        size = self.get(where, tbl, "memory_size", int, DEFAULT_MEMORY_SIZE, check=_address_space)
        mems = self.memories(where, tbl, "memories", memories)
        for i, mem in enumerate(mems):
            if mem.base + mem.size > size:
                raise self.fail(
                    f"{where}.memories[{i}]",
                    f"memory {mem.name!r} ends at {mem.base + mem.size:#x}, beyond the core's "
                    f"memory_size {size:#x}",
                )
        self.check_disjoint(f"{where}.memories", mems)
        cpu = tbl.get("cpu")
        if cpu is not None:
            cpu = self.get(where, tbl, "cpu", int, check=_usable_cpu)
        limits = self.limits(f"{where}.limits", tbl.get("limits", {}))
        return CoreSpec(
            name=tbl["name"],
            firmware=self.firmware(where, tbl),
            mailbox=mailboxes[mb_name],
            personality=personality,
            tx=self.get(where, tbl, "tx", int, 0, check=channel),
            rx=self.get(where, tbl, "rx", int, 0, check=channel),
            memories=tuple(mems),
            memory_size=size,
            auto_boot=self.get(where, tbl, "auto_boot", bool, True),
            graceful_shutdown=self.get(where, tbl, "graceful_shutdown", bool, personality == "k3"),
            delivery=self.choice(where, tbl, "delivery", DELIVERIES, "thread"),
            rpmsg=self.choice(where, tbl, "rpmsg", BACKENDS, "virtio"),
            recovery=self.choice(where, tbl, "recovery", RECOVERY, "enabled"),
            crash_loop_limit=self.get(
                where, tbl, "crash_loop_limit", int, CrashLoop().limit, check=_at_least(0)
            ),
            coredump=self.choice(where, tbl, "coredump", coredump.MODES, coredump.DISABLED),
            cpu=cpu,
            emulated=emulated,
            limits=limits,
        )

    def limits(self, where: str, value: object) -> RpmsgLimits:
        """A core's ``limits`` table: any field of :class:`RpmsgLimits`, each a count."""
        names = tuple(f.name for f in fields(RpmsgLimits))
        tbl = self.table(where, value, names)
        return replace(
            DEFAULT_LIMITS,
            **{n: self.get(where, tbl, n, int, check=_at_least(0)) for n in names if n in tbl},
        )

    def firmware(self, where: str, tbl: dict[str, Any]) -> str:
        """The core's firmware reference, resolved (a relative path is from the board
        file's folder) and checked to exist."""
        spec = self.get(where, tbl, "firmware", str, check=_not_empty)
        try:
            ref = resolve(spec, self.base)
            ref.check()
        except FirmwareError as exc:
            raise self.fail(f"{where}.firmware", exc.strerror or str(exc)) from None
        return ref.name

    def emulated(
        self,
        where: str,
        tbl: dict[str, Any],
        memories: Mapping[str, MemorySpec],
        mailbox: MailboxSpec,
    ) -> EmulatedSpec:
        """The keys of an emulated core; its memory is its memory map."""
        for key in ("memories", "memory_size"):
            if key in tbl:
                raise self.fail(
                    f"{where}.{key}", "an emulated core's memory is its memory_map; remove this"
                )
        if "memory_map" not in tbl:
            raise self.fail(f"{where}.memory_map", "required key is missing (an array)")
        windows = self.memories(where, tbl, "memory_map", memories)
        gdb_port = tbl.get("gdb_port")
        if gdb_port is not None:
            gdb_port = self.get(where, tbl, "gdb_port", int, check=_at_most(65535, at_least=1))
        spec = EmulatedSpec(
            cpu_model=self.choice(where, tbl, "cpu_model", CPUS, "cortex-m7"),
            clock_hz=self.get(where, tbl, "clock_hz", int, DEFAULT_CLOCK_HZ, check=_at_least(1)),
            memory_map=tuple(windows),
            mu_base=self.get(where, tbl, "mu_base", int, 0x30AB_0000, check=_at_least(0)),
            vtor=self.get(where, tbl, "vtor", int, 0, check=_at_least(0)),
            gdb_port=gdb_port,
            gdb_wait=self.get(where, tbl, "gdb_wait", bool, False),
        )
        if mailbox.core_irq >= NUM_IRQS:
            raise self.fail(
                f"mailbox {mailbox.name!r}.core_irq",
                f"an emulated core's NVIC has lines 0..{NUM_IRQS - 1}, not {mailbox.core_irq}",
            )
        try:
            replace(spec.soc(), mu_irq=mailbox.core_irq).check()
        except AmplinkError as exc:
            raise self.fail(f"{where}.memory_map", exc.strerror or str(exc)) from None
        return spec

    def memories(
        self, where: str, tbl: dict[str, Any], key: str, memories: Mapping[str, MemorySpec]
    ) -> list[MemorySpec]:
        """The memories an array of names under ``key`` names (each defined)."""
        out = []
        for i, mem_name in enumerate(self.get(where, tbl, key, list, [])):
            at = f"{where}.{key}[{i}]"
            if not isinstance(mem_name, str):
                raise self.fail(at, f"expected a memory's name, got {_show(mem_name)}")
            problem = _defined("memory", memories)(mem_name)
            if problem is not None:
                raise self.fail(at, problem)
            out.append(memories[mem_name])
        return out

    def check_disjoint(self, key: str, mems: list[MemorySpec]) -> None:
        ordered = sorted(mems, key=lambda m: m.base)
        for a, b in itertools.pairwise(ordered):
            if a.base + a.size > b.base:
                raise self.fail(key, f"memories {a.name!r} and {b.name!r} overlap")

    def check_sharing(self, cores: Mapping[str, CoreSpec]) -> None:
        """Each mailbox unit and each memory belongs to one core: the process platform
        gives every core its own MU and its own device memory."""
        owner: dict[tuple[str, str], str] = {}
        for core in cores.values():
            mems = core.memories + (core.emulated.memory_map if core.emulated else ())
            things = [("mailbox", core.mailbox.name)] + [("memory", m.name) for m in mems]
            for kind, name in things:
                first = owner.setdefault((kind, name), core.name)
                if first != core.name:
                    key = "memory_map" if core.emulated else "memories"
                    raise self.fail(
                        f"core {core.name!r}.{'mailbox' if kind == 'mailbox' else key}",
                        f"{kind} {name!r} is already used by core {first!r}; each core needs "
                        f"its own {kind} here",
                    )


_CORE_KEYS = (
    "name",
    "personality",
    "firmware",
    "mailbox",
    "tx",
    "rx",
    "memories",
    "memory_size",
    "auto_boot",
    "graceful_shutdown",
    "delivery",
    "rpmsg",
    "recovery",
    "crash_loop_limit",
    "coredump",
    "cpu",
    "platform",
    "limits",
)
_EMULATED_KEYS = ("cpu_model", "clock_hz", "memory_map", "mu_base", "vtor", "gdb_port", "gdb_wait")


def _what(kind: type) -> str:
    return {
        int: "an integer",
        str: "a string",
        bool: "true or false",
        list: "an array",
    }.get(kind, kind.__name__)


def _show(value: object) -> str:
    kind = {dict: "a table", list: "an array", bool: "a boolean", int: "an integer",
            float: "a float", str: "a string"}.get(type(value), type(value).__name__)  # fmt: skip
    return f"{kind} ({value!r})" if not isinstance(value, dict | list) else kind


def _valid_name(name: str) -> str | None:
    if _NAME.match(name):
        return None
    return (
        f"{name!r} is not a usable name (a letter, then up to 31 letters, digits, '_', '.' or '-')"
    )


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _one_of(options: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in options:
            return None
        return f"expected one of {', '.join(repr(o) for o in options)}, got {value!r}"

    return check


def _at_least(low: int) -> Callable[[int], str | None]:
    return lambda v: None if v >= low else f"must be at least {low}, got {v}"


DEVICE_ADDRESS_SPACE = MAX_MEMORY_SIZE
_WHY_32_BITS = "a resource table's carveout da and len are 32-bit"


def _address_space(v: int) -> str | None:
    if v < 1:
        return f"must be at least 1, got {v}"
    if v > DEVICE_ADDRESS_SPACE:
        return (
            f"must be at most {DEVICE_ADDRESS_SPACE:#x} (4 GiB: {_WHY_32_BITS}), got {v} ({v:#x})"
        )
    return None


def _usable_cpu(v: int) -> str | None:
    """A CPU this process may run on (``os.sched_getaffinity``), as a core is pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    if v in cpus:
        return None
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return f"expected one of {cpus[0]}..{cpus[-1]}, got {v}"
    return f"expected one of {', '.join(map(str, cpus))}, got {v}"


def _at_most(high: int, *, at_least: int) -> Callable[[int], str | None]:
    return lambda v: None if at_least <= v <= high else f"expected {at_least}..{high}, got {v}"


def _exactly(count: int, model: str) -> Callable[[int], str | None]:
    return lambda v: None if v == count else f"an {model} has {count} channels, not {v}"


def _irq_line(*, host: bool) -> Callable[[int], str | None]:
    def check(v: int) -> str | None:
        if not 0 <= v < 1020:
            return f"expected an interrupt number 0..1019, got {v}"
        if host and v == WDOG_IRQ:
            return f"line {WDOG_IRQ} is the host's core-exit line; choose another"
        return None

    return check


def _defined(kind: str, known: Mapping[str, object]) -> Callable[[str], str | None]:
    def check(name: str) -> str | None:
        if name in known:
            return None
        have = ", ".join(known) or "none"
        return f"{kind} {name!r} is not defined (defined: {have})"

    return check
