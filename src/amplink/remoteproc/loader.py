"""Getting firmware into a core: read and check the image, create its device memory and
load it there, and (for :func:`boot_core`) start the core the way a boot loader does,
before any host remoteproc exists, so that an ``Rproc`` can *attach* to it.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from amplink.errors import AddressError, AmplinkError
from amplink.memory.addrmap import AddressMap, Mapping
from amplink.memory.region import PAGE_SIZE, SharedRegion
from amplink.remoteproc.config import MAX_MEMORY_SIZE, RprocConfig
from amplink.remoteproc.devmem import DeviceMemory
from amplink.remoteproc.drivers import RprocDrivers
from amplink.remoteproc.elf import FirmwareError, FirmwareImage
from amplink.remoteproc.fwref import resolve
from amplink.remoteproc.layout import image_region_size
from amplink.remoteproc.platform import RprocPlatform, choose_platform
from amplink.remoteproc.resources import handle_resources, reserve_platform_memories
from amplink.remoteproc.subdev import ResourceContext
from amplink.wire import rsc_table as rt
from amplink.wire.vring import align_up


def read_firmware(name: str, spec: str, table: rt.ResourceTable | None) -> FirmwareImage:
    """The image to boot (``request_firmware``): an ELF file, or a Python program
    packed here with ``table`` (default: :func:`~.layout.default_rsc_table`); it must have a
    resource table.  Which platform runs it is chosen later (``ENOEXEC`` if none).
    ``spec`` is resolved by :func:`amplink.remoteproc.fwref.resolve`'s rule."""
    ref = resolve(spec)
    if table is not None and not ref.is_program:
        raise AmplinkError(
            errno.EINVAL,
            f"{spec} is an ELF image: its resource table comes from its "
            ".resource_table section, do not pass table=",
        )
    image = ref.image(table)
    image.require_table()
    return image


def device_memory_size(
    name: str, image: FirmwareImage, config: RprocConfig, drivers: RprocDrivers
) -> int:
    """Bytes of device memory from da 0 that core ``name`` needs for ``image`` on a
    platform without a memory map of its own: its segments and platform memories, then
    its resource table, vrings, buffers and carveouts, placed after the highest of them
    (:func:`~.layout.image_region_size`).  If that is more than ``config.memory_size``,
    a :class:`FirmwareError` (``EINVAL``; rule ``"segment-da"`` or ``"memory-da"``,
    whichever reaches highest) that says how high and what to change."""
    memories = {m.name: m for m in config.memories}
    size = image_region_size(image, memories, drivers)
    if size <= config.memory_size:
        return size
    highest = max(memories.values(), key=lambda m: m.da + m.len, default=None)
    if highest is not None and highest.da + highest.len > image.extent():
        top = highest.da + highest.len
        above = f"platform memory {highest.name!r} ([[memory]]) ends at {top:#x}"
        fix = f"place memory {highest.name!r} lower (its base {highest.da:#x})"
        rule = "memory-da"
    else:
        top = image.extent()
        above = f"its highest segment ends at {top:#x}"
        fix = "link the image lower"
        rule = "segment-da"
    room = size - align_up(top, PAGE_SIZE)
    if size <= MAX_MEMORY_SIZE:
        fix = f"raise its memory_size to at least {size:#x}, or {fix}"
    raise FirmwareError(
        rule,
        f"{image.name} needs {size:#x} bytes of device memory from da 0: {above}, and "
        f"its resource table, vrings, buffers and carveouts ({room:#x} bytes) are placed "
        f"after it; {name} has {config.memory_size:#x}: {fix}",
    )


def load_image(
    name: str,
    image: FirmwareImage,
    config: RprocConfig,
    drivers: RprocDrivers,
    windows: Sequence[Mapping] | None = None,
) -> DeviceMemory:
    """Create device memory for ``image`` and copy its segments there and the cached
    resource table over its loaded location (the copy both sides use from then on);
    the region is closed again if this fails.  The memory is the platform's
    ``windows`` (:meth:`~.platform.RprocPlatform.memory_map`), or one range from da 0
    with room for what the resources will place, of at most ``config.memory_size``
    bytes."""
    memories = {m.name: m for m in config.memories}
    if windows is None:
        size = device_memory_size(name, image, config, drivers)
        windows = [Mapping(0, size, 0, "shm")]
    region = SharedRegion.create(max(w.offset + w.size for w in windows), name)
    try:
        amap = AddressMap(list(windows))
        reserve_platform_memories(amap, memories)  # first: segments may load into them

        def in_platform_memory(da: int, size: int) -> bool:
            return any(m.da <= da and da + size <= m.da + m.len for m in memories.values())

        image.load(region, amap, in_platform_memory)
        assert image.table_da is not None
        memory = DeviceMemory(region, amap, image.table_da, len(image.table_bytes))
        try:
            off = memory.table_offset
        except AddressError:
            raise FirmwareError(
                "table-da",
                f"{image.name}: the resource table's address {image.table_da:#x} is outside "
                "device memory",
            ) from None
        region.mem[off : off + memory.table_len] = image.table_bytes
    except BaseException:
        region.close()
        raise
    return memory


@dataclass
class BootedImage:
    """An image a boot loader loaded and started: its memory and the running platform.

    Hand it to ``Rproc(attach=...)``; until then :meth:`release` stops it."""

    name: str
    firmware: str
    image: FirmwareImage
    memory: DeviceMemory
    platform: RprocPlatform

    def release(self) -> None:
        """Reset the core and release its memory."""
        self.platform.release()
        self.memory.close()


def boot_core(
    name: str,
    firmware: str,
    drivers: RprocDrivers,
    *,
    table: rt.ResourceTable | None = None,
    config: RprocConfig | None = None,
) -> BootedImage:
    """Start a core the way a boot loader does: load its firmware, place what its
    resources ask for (sized for ``drivers``: a host that attaches later with other
    drivers may find too little buffer memory), and release it from reset, with no host
    side.  The core waits (up to ``config.boot_timeout`` s) for a host to attach."""
    config = config if config is not None else RprocConfig(boot_timeout=60.0)
    image = read_firmware(name, firmware, table)
    platform = choose_platform(drivers.platforms, name, image).create(name, image, config)
    memory = load_image(name, image, config, drivers, platform.memory_map())
    try:
        ctx = ResourceContext(
            name,
            memory,
            placing=True,
            kick=_nobody,
            route=lambda notifyid, handler: None,
            next_notifyid=itertools.count().__next__,
            spin=platform.spin,
            report_crash=lambda kind, reason: None,
        )
        handle_resources(
            image.require_table(),
            ctx,
            virtio=drivers.virtio,
            handlers=drivers.resources,
            memories={m.name: m for m in config.memories},
            vendor=config.handle_rsc,
        )
        platform.power_on(memory.region, memory.table_da, memory.table_len, image.entry)
    except BaseException:
        platform.release()
        memory.close()
        raise
    return BootedImage(name, firmware, image, memory, platform)


def _nobody(notifyid: int) -> None:
    """A boot loader kicks nobody."""
