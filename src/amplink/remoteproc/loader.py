"""Getting firmware into a core: read and check the image, lay out device memory, and
(for :func:`boot_core`) start the core the way a boot loader does, before any host
remoteproc exists, so that :class:`~amplink.remoteproc.rproc.Rproc` can *attach* to it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from amplink.errors import AmplinkError
from amplink.memory.addrmap import AddressMap
from amplink.memory.addrmap import Mapping as Window
from amplink.memory.region import SharedRegion
from amplink.remoteproc.elf import HOST_MACHINE, FirmwareError, FirmwareImage
from amplink.remoteproc.firmware_path import locate_firmware
from amplink.remoteproc.fwpack import is_image_file, pack_python, packed_python, program_source
from amplink.remoteproc.layout import (
    LoadedImage,
    default_rsc_table,
    image_region_size,
    load_image,
)
from amplink.remoteproc.process_core import ProcessCore
from amplink.remoteproc.resources import RSC_IGNORED, Memory, VendorHook
from amplink.rpmsg.virtio_link import DEFAULT_BUFFERS, RpmsgBuffers
from amplink.wire import rsc_table as rt

DEFAULT_MEMORY_SIZE = 64 << 20
Executor = Callable[[str, FirmwareImage], None]


def read_firmware(
    name: str, spec: str, table: rt.ResourceTable | None, executor: Executor | None = None
) -> FirmwareImage:
    """The image to boot (``request_firmware``): an ELF file (a bare ``*.elf`` name is
    looked up on the firmware search path), or a Python program packed here with
    ``table`` (default: :func:`default_rsc_table`).  ``executor(name, image)`` is the
    platform's check of what it can run; without one, this refuses what no process
    core can run (``ENOEXEC``, ``EACCES``)."""
    spec = locate_firmware(spec)
    if is_image_file(spec):
        if table is not None:
            raise AmplinkError(
                errno.EINVAL,
                f"{spec} is an ELF image: its resource table comes from its "
                ".resource_table section, do not pass table=",
            )
        image = FirmwareImage.from_file(spec)
    else:
        source, path = program_source(spec)
        image = FirmwareImage.parse(pack_python(source, table or default_rsc_table()), path)
    if executor is not None:
        executor(name, image)
        image.require_table()
        return image
    if image.native and not os.access(spec, os.X_OK):
        raise AmplinkError(
            errno.EACCES,
            f"{name}: {spec} is a native executable but not executable by this user (chmod +x it)",
        )
    if not packed_python(image) and not image.native:
        raise AmplinkError(
            errno.ENOEXEC,
            f"{name}: no executor for {image.name} ({image.machine_name}, {image.elf_type}): "
            "amplink loads and inspects any ELF, but runs only packed Python firmware "
            f"(amplink fw pack) and executables for this machine ({HOST_MACHINE})",
        )
    image.require_table()
    return image


@dataclass
class DeviceMemory:
    """A core's device memory with an image loaded into it."""

    region: SharedRegion
    amap: AddressMap
    loaded: LoadedImage
    windows: list[Window] = field(default_factory=list)  # device address ranges

    def read(self, da: int, size: int) -> bytes:
        """A copy of ``size`` bytes at device address ``da`` (bounds-checked)."""
        off = self.amap.translate(da, size)
        return bytes(self.region.mem[off : off + size])

    def write(self, da: int, data: bytes) -> None:
        """Write ``data`` at device address ``da`` (bounds-checked)."""
        off = self.amap.translate(da, len(data))
        self.region.mem[off : off + len(data)] = data

    def table(self) -> bytes:
        """The loaded resource table as it is now."""
        return self.read(self.loaded.table_da, self.loaded.table_len)


def place_image(
    name: str,
    image: FirmwareImage,
    *,
    buffers: RpmsgBuffers = DEFAULT_BUFFERS,
    memory_size: int = DEFAULT_MEMORY_SIZE,
    memories: Mapping[str, Memory] | None = None,
    vendor: VendorHook = lambda entry: RSC_IGNORED,
    windows: list[Window] | None = None,
) -> DeviceMemory:
    """Create device memory for ``image`` and load it there: ``windows`` (device
    address ranges at offsets of one region, the memory map of an emulated core), or
    else one flat range from da 0 of at most ``memory_size`` bytes.  The region is
    closed again if loading fails."""
    if windows is None:
        size = image_region_size(image, buffers, memories)
        if size > memory_size:
            raise FirmwareError(
                "segment-da",
                f"{image.name} needs {size:#x} bytes of device memory from da 0 (its highest "
                f"segment ends at {image.extent():#x}); {name} has {memory_size:#x}",
            )
    region = SharedRegion.create(
        size if windows is None else max(w.offset + w.size for w in windows), name
    )
    if windows is None:
        windows = [Window(0, region.size, 0, "shm")]
    try:
        amap = AddressMap(windows)
        loaded = load_image(region, amap, image, buffers=buffers, memories=memories, vendor=vendor)
    except BaseException:
        region.close()
        raise
    return DeviceMemory(region, amap, loaded, windows)


@dataclass
class BootedCore:
    """A core started by a boot loader: its image, memory and running process.

    Hand it to ``Rproc(attach=...)``; until then :meth:`release` stops it."""

    name: str
    firmware: str
    image: FirmwareImage
    memory: DeviceMemory
    core: ProcessCore

    def release(self) -> None:
        """Reset the core and release its memory."""
        self.core.release()
        self.memory.region.close()


def boot_core(
    name: str,
    firmware: str = "amplink.firmware.echo",
    *,
    table: rt.ResourceTable | None = None,
    cpu: int | None = None,
    spin: bool = True,
    boot_timeout: float = 60.0,
) -> BootedCore:
    """Start a core the way a boot loader does: load its firmware and release it from
    reset, with no host side.  The core waits (up to ``boot_timeout`` s) for a host
    to set DRIVER_OK on its vdev."""
    image = read_firmware(name, firmware, table)
    memory = place_image(name, image)
    core = ProcessCore(
        name, firmware, cpu=cpu, spin=spin, boot_timeout=boot_timeout, native=image.native
    )
    try:
        loaded = memory.loaded
        core.power_on(memory.region, loaded.table_da, loaded.table_len, image.entry)
    except BaseException:
        core.release()
        memory.region.close()
        raise
    return BootedCore(name, firmware, image, memory, core)
