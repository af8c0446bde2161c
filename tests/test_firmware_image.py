"""Firmware ELF images: packing, reading with pyelftools, every sanity rule, loading,
booting from an ELF file, and refusing what cannot run here."""

import errno
import io
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from amplink.errors import AmplinkError, WireError
from amplink.host import Rproc
from amplink.memory import AddressMap, SharedRegion
from amplink.remote.__main__ import read_program
from amplink.remoteproc.describe import describe_image, table_invalid
from amplink.remoteproc.elf import FirmwareError, FirmwareImage
from amplink.remoteproc.elf_writer import ET_EXEC, PF_R, OutSegment, write_elf
from amplink.remoteproc.fwpack import pack_python, packed_python
from amplink.remoteproc.layout import default_rsc_table
from amplink.remoteproc.states import OFFLINE
from amplink.wire import rsc_table as rt
from amplink.wire.pyprog import PY_MAGIC, encode_program
from resources import snapshot
from test_cli import run_cli

PROGRAM = """\
def main(core):
    core.create_endpoint("shout", lambda ept, data, src: ept.sendto(data.upper(), src))
    core.run()
"""
EM_ARM = 40
NATIVE = Path(__file__).parent / "native"


def packed() -> bytes:
    return pack_python(PROGRAM, default_rsc_table())


def test_pack_reads_back_with_pyelftools_and_readelf(tmp_path):
    data = packed()
    elf = ELFFile(io.BytesIO(data))
    assert elf.header["e_type"] == "ET_EXEC" and elf.header["e_machine"] == "EM_NONE"
    sec = elf.get_section_by_name(".resource_table")
    table = rt.parse(sec.data())
    assert table.entries[:-1] == default_rsc_table().entries  # plus the trace buffer's
    (trace,) = table.traces()
    tseg = elf.get_section_by_name(".trace")
    assert (tseg["sh_addr"], tseg["sh_size"]) == (trace.da, trace.len) == (0x2000, 0x1000)
    text = elf.get_section_by_name(".text.python")
    assert text["sh_addr"] == elf.header["e_entry"] == 0x1000
    assert text.data().startswith(PY_MAGIC) and PROGRAM.encode() in text.data()
    image = FirmwareImage.parse(data, "fw.elf")
    assert packed_python(image)
    assert [(s.da, s.memsz, s.filesz) for s in image.segments] == [
        (0, len(sec.data()), len(sec.data())),
        (0x1000, len(text.data()), len(text.data())),
        (0x2000, 0x1000, 0),  # the trace buffer: zero-filled at load
    ]
    if shutil.which("readelf"):
        path = tmp_path / "fw.elf"
        path.write_bytes(data)
        out = subprocess.run(
            ["readelf", "-lSW", str(path)], capture_output=True, text=True, check=True
        )
        assert ".resource_table" in out.stdout and "LOAD" in out.stdout and not out.stderr


def _patch(data: bytes, fmt: str, offset: int, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


E_PHOFF, E_SHOFF, E_PHNUM = 32, 40, 56
PH0 = 64  # the first program header


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda d: d[:40], "size"),
        (lambda d: b"\x7fELG" + d[4:], "magic"),
        (lambda d: d[:4] + b"\x03" + d[5:], "class"),
        (lambda d: d[:4] + b"\x02" + d[5:60], "size"),  # ELF64 shorter than its header
        (lambda d: d[:5] + b"\x02" + d[6:], "endian"),
        (lambda d: _patch(d, "<Q", E_SHOFF, len(d)), "shoff"),
        (lambda d: _patch(d, "<H", E_PHNUM, 0), "phnum"),
        (lambda d: _patch(d, "<Q", E_PHOFF, len(d) + 1), "phoff"),
        (lambda d: _patch(d, "<Q", PH0 + 40, 1), "segment-filesz"),  # memsz < filesz
        (lambda d: _patch(d, "<Q", PH0 + 8, len(d) - 8), "segment-offset"),
    ],
)
def test_every_sanity_rule(mutate, rule):
    with pytest.raises(FirmwareError) as exc:
        FirmwareImage.parse(mutate(packed()), "bad.elf")
    assert exc.value.rule == rule, exc.value
    assert exc.value.errno == errno.EINVAL
    assert "bad.elf" in str(exc.value)


def test_missing_or_invalid_resource_table():
    seg = OutSegment(0x1000, b"code", PF_R, section=".text")
    image = FirmwareImage.parse(write_elf([seg], elf_type=ET_EXEC), "notable.elf")
    assert image.table is None and "no .resource_table section" in image.table_problem
    assert "No resource table found" in describe_image(image) and not table_invalid(image)
    with pytest.raises(FirmwareError) as exc:
        image.require_table()
    assert exc.value.rule == "no-table"
    bad = bytearray(default_rsc_table().build())
    bad[0] = 2  # version 2
    tbl = OutSegment(0, bytes(bad), section=".resource_table")
    image = FirmwareImage.parse(write_elf([tbl, seg], elf_type=ET_EXEC), "v2.elf")
    assert image.table is None and "version" in image.table_problem
    assert table_invalid(image)  # found, and invalid: `fw inspect` exits 1
    assert "Resource table present but invalid: .resource_table of v2.elf" in describe_image(image)


def test_fw_inspect_of_an_invalid_table_says_so_and_fails(tmp_path):
    bad = bytearray(default_rsc_table().build())
    bad[0] = 2  # version 2
    path = tmp_path / "v2.elf"
    tbl = OutSegment(0, bytes(bad), section=".resource_table")
    path.write_bytes(write_elf([tbl], elf_type=ET_EXEC))
    proc = run_cli("fw", "inspect", str(path))
    assert proc.returncode == 1, proc.stderr
    assert "Resource table present but invalid" in proc.stdout
    assert "No resource table found" not in proc.stdout and "Traceback" not in proc.stderr


def test_load_copies_segments_zero_fills_and_refuses_outside_memory():
    data = write_elf(
        [OutSegment(0x100, b"\xaa" * 8, memsz=32), OutSegment(0x10000, b"x")], elf_type=ET_EXEC
    )
    image = FirmwareImage.parse(data, "two.elf")
    with SharedRegion.create(0x2000) as region:
        region.mem[0x100:0x120] = b"\xff" * 32
        with pytest.raises(FirmwareError) as exc:
            image.load(region, AddressMap.identity(region.size))
        assert exc.value.rule == "segment-da" and "0x10000" in str(exc.value)
        assert bytes(region.mem[0x100:0x120]) == b"\xaa" * 8 + bytes(24)  # first one loaded


def test_core_runs_the_program_loaded_into_its_memory():
    with SharedRegion.create(0x3000) as region:
        amap = AddressMap.identity(region.size)
        FirmwareImage.parse(packed(), "fw").load(region, amap)
        assert read_program(region, amap, 0x1000) == PROGRAM
        region.mem[0x1000] = 0
        with pytest.raises(WireError) as exc:
            read_program(region, amap, 0x1000)
        assert exc.value.rule == "entry"


def test_boot_from_an_elf_file(tmp_path):
    path = tmp_path / "shout.elf"
    path.write_bytes(packed())
    before = snapshot()
    with Rproc("elfcore", str(path)) as rp:
        assert rp.image is not None and rp.image.entry == 0x1000
        ept = rp.wait_channel("shout", 10).create_ept()
        ept.send(b"from an elf")
        assert ept.recv(10).data == b"FROM AN ELF"
    assert snapshot() == before
    with pytest.raises(AmplinkError) as exc:
        Rproc("t", str(path), table=default_rsc_table()).start()
    assert exc.value.errno == errno.EINVAL


def test_foreign_machine_is_inspectable_but_refused_at_start(tmp_path):
    table = OutSegment(0x0, default_rsc_table().build(), section=".resource_table")
    code = OutSegment(0x1000, b"\x00\xbf" * 8, section=".text")  # Thumb NOPs
    path = tmp_path / "m4.elf"
    path.write_bytes(write_elf([table, code], elf_type=ET_EXEC, machine=EM_ARM, entry=0x1001))
    text = describe_image(FirmwareImage.from_file(str(path)))
    assert "EM_ARM (no executor in amplink)" in text and "vring1" in text
    before = snapshot()
    rp = Rproc("m4", str(path))
    with pytest.raises(AmplinkError) as exc:
        rp.start()
    assert exc.value.errno == errno.ENOEXEC and "no platform runs" in str(exc.value)
    assert "Cortex-M executables (ELF32 EM_ARM, M profile)" in str(exc.value)  # not ELF64
    assert rp.state == OFFLINE and snapshot() == before


def test_firmware_too_big_for_device_memory_is_refused(tmp_path):
    program = encode_program(PROGRAM)
    data = write_elf(
        [
            OutSegment(0, default_rsc_table().build(), section=".resource_table"),
            OutSegment(0x1000, program),
            OutSegment(0x4000_0000, b"far away"),
        ],
        elf_type=ET_EXEC,
        entry=0x1000,
    )
    image = FirmwareImage.parse(data, "far.elf")
    assert image.extent() == 0x4000_0008
    path = tmp_path / "far.elf"
    path.write_bytes(data)
    before = snapshot()
    with pytest.raises(FirmwareError) as exc:
        Rproc("far", str(path)).start()
    assert exc.value.rule == "segment-da" and "0x40000008" in str(exc.value)
    assert snapshot() == before


def test_cli_pack_and_inspect(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    out = tmp_path / "prog.elf"
    proc = run_cli("fw", "pack", str(prog), "-o", str(out), "--vring-num", "16")
    assert proc.returncode == 0, proc.stderr
    image = FirmwareImage.from_file(str(out))
    assert [v.num for v in image.require_table().vdevs()[0].vrings] == [16, 16]
    proc = run_cli("fw", "inspect", str(out))
    assert proc.returncode == 0
    assert "EM_NONE (packed Python firmware), entry 0x1000" in proc.stdout
    assert "id 7 (rpmsg)" in proc.stdout and "num 16" in proc.stdout
    assert "trace" in proc.stdout and "vendor type 128" in proc.stdout
    bad = tmp_path / "bad.py"
    bad.write_text("def main(core)\n")
    proc = run_cli("fw", "pack", str(bad), "-o", str(tmp_path / "bad.elf"))
    assert proc.returncode == 1 and "error" in proc.stderr
    proc = run_cli("fw", "inspect", str(prog))
    assert proc.returncode == 1 and "not an ELF file" in proc.stderr


@pytest.fixture
def native_fw(tmp_path):
    """The native firmware of tests/native, built for this machine."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no C compiler on this machine to build the native firmware")
    out = tmp_path / "trace_fw"
    subprocess.run(
        [
            gcc, "-O1", "-no-pie", "-Wl,--section-start=.trace=0x800000",
            str(NATIVE / "trace_fw.c"), "-o", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def test_a_native_executable_runs_as_the_core_process(native_fw):
    image = FirmwareImage.from_file(str(native_fw))
    assert image.native and "native executable" in describe_image(image)
    before = snapshot()
    with Rproc("native", str(native_fw)) as rp:
        assert rp.link is None  # no rpmsg vdev in its table
        with pytest.raises(AmplinkError) as exc:
            rp.wait_channel("anything")
        assert exc.value.errno == errno.ENODEV and "no rpmsg vdev" in str(exc.value)
        deadline = time.monotonic() + 10
        while rp.trace(0) != "native core up\n" and time.monotonic() < deadline:
            time.sleep(0.01)  # the core writes its trace whenever it gets to run
        assert rp.trace(0) == "native core up\n"
    assert rp.last_stop == "reset" and rp.exit_code == -signal.SIGKILL
    assert snapshot() == before
    native_fw.chmod(0o644)
    with pytest.raises(AmplinkError) as exc:
        Rproc("noexec", str(native_fw)).start()
    assert exc.value.errno == errno.EACCES


def elf32(table: bytes, code: bytes) -> bytes:
    """A minimal little-endian ELF32 (EM_ARM) with a .resource_table, written by hand
    here because amplink itself only writes ELF64."""
    ehdr, phdr, shdr = (
        struct.Struct("<16sHHIIIIIHHHHHH"),
        struct.Struct("<8I"),
        struct.Struct("<10I"),
    )
    shstr = b"\0.resource_table\0.text\0.shstrtab\0"
    phoff = ehdr.size
    t_off = phoff + 2 * phdr.size
    c_off = t_off + len(table)
    s_off = c_off + len(code)
    sh_off = s_off + len(shstr)
    out = ehdr.pack(b"\x7fELF\x01\x01\x01" + bytes(9), 2, EM_ARM, 1, 0x1001, phoff, sh_off, 0,
                    ehdr.size, phdr.size, 2, shdr.size, 4, 3)  # fmt: skip
    out += phdr.pack(1, t_off, 0, 0, len(table), len(table), 6, 4)
    out += phdr.pack(1, c_off, 0x1000, 0x1000, len(code), len(code) + 64, 5, 4)
    out += table + code + shstr
    out += bytes(shdr.size)
    out += shdr.pack(1, 1, 2, 0, t_off, len(table), 0, 0, 4, 0)
    out += shdr.pack(17, 1, 6, 0x1000, c_off, len(code), 0, 0, 4, 0)
    out += shdr.pack(23, 3, 0, 0, s_off, len(shstr), 0, 0, 1, 0)
    return out


def test_elf32_images_are_read_and_loaded():
    image = FirmwareImage.parse(elf32(default_rsc_table().build(), b"\x00\xbf" * 4), "m4.elf")
    assert (image.elfclass, image.machine_name, image.entry) == (32, "EM_ARM", 0x1001)
    assert image.require_table() == default_rsc_table()
    assert [(s.da, s.filesz, s.memsz) for s in image.segments] == [
        (0, len(default_rsc_table().build()), len(default_rsc_table().build())),
        (0x1000, 8, 72),
    ]
    with SharedRegion.create(0x2000) as region:
        region.mem[0x1000:0x1048] = b"\xff" * 0x48
        image.load(region, AddressMap.identity(region.size))
        assert bytes(region.mem[0x1000:0x1048]) == b"\x00\xbf" * 4 + bytes(64)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"", "x.elf: an empty file, not an ELF file"),
        (b"\x7fEL", "x.elf: a truncated ELF header: the file has 3 bytes, an ELF header takes 52"),
        (b"root:x:0:0" * 10, "x.elf: not an ELF file (100 bytes, starting with b'root', not b'"),
        (
            b"\x7fELF" + bytes([152]) + bytes(59),
            "x.elf: not a valid ELF file (64 bytes): after the ELF magic, its class byte is 152, "
            "not 1 (ELF32) or 2 (ELF64); a damaged or truncated ELF header",
        ),
    ],
)
def test_what_is_not_an_elf_or_a_truncated_one_is_said_in_words_with_its_size(data, said):
    with pytest.raises(FirmwareError) as exc:
        FirmwareImage.parse(data, "x.elf")
    assert said in str(exc.value)


def test_a_truncated_elf_file_is_called_truncated():
    data = write_elf([OutSegment(0x100, b"\xaa" * 8)], elf_type=ET_EXEC)
    with pytest.raises(FirmwareError) as exc:
        FirmwareImage.parse(data[:100], "cut.elf")
    assert "cut.elf: a malformed or truncated ELF file (100 bytes): " in str(exc.value)
