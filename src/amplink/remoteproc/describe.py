"""Human-readable dumps of firmware images and resource tables (``amplink fw inspect``,
and what debugfs ``resource_table`` shows in Linux)."""

from __future__ import annotations

from amplink.remoteproc.elf import RSC_TABLE_SECTION, FirmwareImage
from amplink.remoteproc.elf_writer import PF_R, PF_W, PF_X
from amplink.remoteproc.fwpack import packed_python
from amplink.virtio.constants import VIRTIO_ID_RPMSG
from amplink.wire import rsc_table as rt

_VIRTIO_NAMES = {VIRTIO_ID_RPMSG: "rpmsg"}


def _addr(value: int) -> str:
    return "ANY" if value == rt.FW_RSC_ADDR_ANY else f"{value:#x}"


def describe_table(table: rt.ResourceTable) -> str:
    """Every entry of ``table`` with every field, vrings and config space included."""
    lines = [f"Resource table: version 1, {len(table.entries)} entries"]
    for i, e in enumerate(table.entries):
        at = f" (offset {e.offset:#x})" if e.offset >= 0 else ""
        if isinstance(e, rt.Carveout | rt.Devmem):
            lines += [
                f"  [{i}] {e.KIND}{at}: {e.name!r}",
                f"      da {_addr(e.da)}  pa {_addr(e.pa)}  len {e.len:#x}  flags {e.flags:#x}",
            ]
        elif isinstance(e, rt.Trace):
            lines += [f"  [{i}] trace{at}: {e.name!r}", f"      da {_addr(e.da)}  len {e.len:#x}"]
        elif isinstance(e, rt.Vdev):
            kind = _VIRTIO_NAMES.get(e.id, "virtio")
            lines += [
                f"  [{i}] vdev{at}: id {e.id} ({kind}), notifyid {e.notifyid}",
                f"      dfeatures {e.dfeatures:#x}  gfeatures {e.gfeatures:#x}  "
                f"status {e.status:#x}  config_len {len(e.config)}  vrings {len(e.vrings)}",
            ]
            for j, v in enumerate(e.vrings):
                lines.append(
                    f"      vring{j}: da {_addr(v.da)}  align {v.align}  num {v.num}  "
                    f"notifyid {v.notifyid}  pa {_addr(v.pa)}"
                )
            if e.config:
                lines.append(f"      config: {e.config.hex(' ')}")
        else:
            kind = "vendor" if e.vendor else "unknown"
            lines += [
                f"  [{i}] {kind} type {e.type}{at}: {len(e.data)} bytes",
                f"      {e.data[:32].hex(' ')}{' ...' if len(e.data) > 32 else ''}",
            ]
    return "\n".join(lines)


def _flags(flags: int) -> str:
    return "".join(c if flags & bit else "-" for c, bit in (("R", PF_R), ("W", PF_W), ("X", PF_X)))


def table_invalid(image: FirmwareImage) -> bool:
    """Whether ``image`` has a resource-table section that cannot be used."""
    return image.table is None and any(s[0] == RSC_TABLE_SECTION for s in image.sections)


def describe_image(image: FirmwareImage) -> str:
    """ELF header summary, loadable segments, sections and the resource table."""
    if packed_python(image):
        runs = "packed Python firmware"
    elif image.native:
        runs = "native executable"
    elif image.cortex_m:
        runs = f'Cortex-M, {image.arm_arch}: runs on an emulated core (platform = "emulated")'
    else:
        runs = "no executor in amplink"
    lines = [
        f"{image.name}",
        f"  ELF{image.elfclass} {'little' if image.little_endian else 'big'}-endian, "
        f"{image.elf_type}, {image.machine_name} ({runs}), entry {image.entry:#x}",
        f"Loadable segments: {len(image.segments)}",
    ]
    for seg in image.segments:
        lines.append(
            f"  da {seg.da:#010x}  filesz {seg.filesz:#8x}  memsz {seg.memsz:#8x}  "
            f"{_flags(seg.flags)}  file offset {seg.offset:#x}"
        )
    lines.append(f"Sections: {len([s for s in image.sections if s[0]])}")
    for name, addr, off, size in image.sections:
        if name:
            lines.append(f"  {name:<20} addr {addr:#010x}  offset {off:#8x}  size {size:#x}")
    if table_invalid(image):
        lines.append(f"Resource table present but invalid: {image.table_problem}")
    elif image.table is None:
        lines.append(f"No resource table found: {image.table_problem}")
    else:
        assert image.table_da is not None
        lines.append(f".resource_table at da {image.table_da:#x}, {len(image.table_bytes)} bytes")
        lines.append(describe_table(image.table))
    return "\n".join(lines)
