"""Real Cortex-M firmware on emulated cores: rpmsg-lite and OpenAMP images built from
the pinned upstream sources (``make firmware``), loaded by remoteproc and run by
amplink.emu against the same host stack as any core."""

import asyncio
import errno
import os
import select
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from amplink.app.cli import main as cli_main
from amplink.emu import firmware
from amplink.emu.firmware import DEMO_FAULT_MESSAGE, FAULTS_SERVICE
from amplink.errors import RpmsgError
from amplink.host import Rproc, RprocConfig, boot_core
from amplink.hw.core_ctrl import STATUS_HALTED
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.emulated import EmulatedPlatformDriver
from amplink.remoteproc.states import CRASHED, OFFLINE, RUNNING
from amplink.rpmsg.aio import AsyncEndpoint
from amplink.rpmsg.chardev import RpmsgCtrl
from amplink.rpmsg.core import RpmsgBus
from amplink.rpmsg.tty import RpmsgTtyDriver
from amplink.wire import rsc_table as rt
from emulated import ECHO, echo, emulated, image, needs_firmware
from resources import snapshot
from waiting import wait_for

pytestmark = needs_firmware

ECHO_IMAGES = {"rpmsg-lite": "rpmsg-lite-echo.elf", "openamp": "openamp-rpmsg-echo.elf"}
GDB = shutil.which("arm-none-eabi-gdb") or shutil.which("gdb-multiarch")
DDR = 0x5500_0000


def pattern(size: int) -> bytes:
    return bytes((size * 7 + i * 13) & 0xFF for i in range(size))


def symbol_range(path: str, name: str) -> range:
    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]
    start = sym["st_value"] & ~1
    return range(start, start + sym["st_size"])


@pytest.fixture(params=ECHO_IMAGES)
def stack(request) -> str:
    return request.param


# -- images and loading ------------------------------------------------------------------
def test_fw_inspect_shows_a_cortex_m_image_its_segments_and_table(stack, capsys):
    assert cli_main(["fw", "inspect", image(ECHO_IMAGES[stack])]) == 0
    out = capsys.readouterr().out
    assert "ELF32 little-endian, ET_EXEC, EM_ARM (Cortex-M, ARMv7E-M" in out
    assert "da 0x00000000" in out and "da 0x20000000" in out  # ITCM and DTCM segments
    assert "vdev (offset" in out and "id 7 (rpmsg)" in out and "'trace0'" in out


def test_loading_places_segments_and_zeroes_bss(stack):
    img = FirmwareImage.from_file(image(ECHO_IMAGES[stack]))
    windows = EmulatedPlatformDriver().create("load-test", img, RprocConfig()).memory_map()
    assert [(w.da, w.size) for w in windows] == [(w.da, w.size) for w in firmware.soc().windows]
    region = SharedRegion.create(sum(w.size for w in windows), "load-test")
    try:
        region.mem[:] = b"\xaa" * region.size  # what a previous boot left
        amap = AddressMap(list(windows))
        img.load(region, amap)
        for seg in img.segments:
            off = amap.translate(seg.da, seg.memsz)
            got = bytes(region.mem[off : off + seg.memsz])
            assert got[: seg.filesz] == seg.data
            assert got[seg.filesz :] == bytes(seg.memsz - seg.filesz)  # .bss
    finally:
        region.close()


def test_the_vrings_and_buffers_are_placed_as_linux_places_them(stack):
    before = snapshot()
    booted = boot_core(f"placed-{stack}", image(ECHO_IMAGES[stack]))  # as a boot loader does
    try:
        memory = booted.memory
        vdev = rt.parse(memory.table()).vdevs()[0]
        das = [v.da for v in vdev.vrings]
        if stack == "rpmsg-lite":  # fixed where rpmsg-lite computes them
            assert das == [DDR, DDR + 0x8000]
        else:  # placed by the host in the first window, the shared DDR
            assert all(DDR <= da < DDR + 0x10_0000 and da % 0x1000 == 0 for da in das)
        assert [v.notifyid for v in vdev.vrings] == [0, 1]
        (pool,) = memory.pools.values()
        assert pool.da >= DDR and pool.da + 2 * 256 * 512 <= DDR + 0x10_0000
        assert pool.da >= max(das) + 0x3000  # after the vrings, not on them
    finally:
        booted.release()
    assert snapshot() == before


def test_a_host_attaches_to_a_core_a_boot_loader_started(stack):
    before = snapshot()
    booted = boot_core(f"early-{stack}", image(ECHO_IMAGES[stack]))
    rp = Rproc(f"early-{stack}", "", attach=booted)
    assert rp.state == "detached"
    rp.boot()
    try:
        assert rp.state == "attached" and rp.pid == booted.platform.pid
        echo(rp, [b"attached", pattern(496)])
    finally:
        rp.stop()
    assert snapshot() == before


# -- rpmsg --------------------------------------------------------------------------------
def test_name_service_and_the_echo_of_every_size(stack):
    before = snapshot()
    with emulated(stack, ECHO_IMAGES[stack]) as rp:
        chan = rp.wait_channel(ECHO, 10)
        assert chan.dst != 0xFFFF_FFFF
        echo(rp, [pattern(n) for n in range(1, 497)])
        with chan.create_ept() as ept, pytest.raises(RpmsgError) as exc:
            ept.send(bytes(497))
        assert exc.value.errno == errno.EMSGSIZE
        assert rp.core_status & 0x1  # BOOTED, as the emulator reports it
    assert snapshot() == before


def test_the_trace_buffer_is_readable_through_debugfs(stack):
    expected = {
        "rpmsg-lite": "rpmsg-lite: rpmsg-openamp-demo-channel at address",
        "openamp": "created rpmsg channel rpmsg-openamp-demo-channel",
    }[stack]
    with emulated(stack, ECHO_IMAGES[stack]) as rp:
        echo(rp, [b"serving"])  # the firmware logs before its loop serves
        assert expected in rp.debugfs.trace(0)


def test_mailbox_echo_requests_are_answered_by_the_firmware(stack):
    with emulated(stack, ECHO_IMAGES[stack]) as rp:
        rp.wait_channel(ECHO, 10)
        assert rp.platform is not None
        assert 0 < rp.platform.mailbox_ping(5.0) < 5.0


@pytest.mark.timeout(900)
def test_200_start_stop_and_50_crash_recover_cycles_leave_nothing_behind():
    before = snapshot()
    # crash_loop=None: every crash is recovered at once, as Linux does (by default the
    # fifth crash within 10 s of its boot would be given up on)
    rp = emulated("cycles", "rpmsg-lite-echo.elf", config=RprocConfig(crash_loop=None))
    for i in range(200):
        rp.start()
        echo(rp, [b"cycle %d" % i])
        rp.stop()
    assert snapshot() == before
    rp.start()
    for i in range(50):
        with rp.wait_channel(ECHO, 10).create_ept() as ept:
            ept.send(DEMO_FAULT_MESSAGE)
        rp.wait_crash_handled(i + 1)
        assert rp.state == RUNNING and rp.crash_count == i + 1
        assert rp.last_crash[0] == "mmufault"
        echo(rp, [b"recovered %d" % i])
    rp.stop()
    assert snapshot() == before


# -- crashes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "kind", "says"),
    [
        ("unmapped-write", "mmufault", "write to unmapped memory at 0x60000000"),
        ("unmapped-read", "mmufault", "read from unmapped memory at 0x60000010"),
        ("undefined", "fatal error", "undefined instruction"),
        ("lockup", "fatal error", "lockup"),
        ("spin", "watchdog", f"no heartbeat for {firmware.FAULTS_WATCHDOG_MS} ms"),
    ],
)
def test_each_crash_path_is_reported_with_its_pc_and_address(command, kind, says):
    path = image("rpmsg-lite-faults.elf")
    with emulated("faulty", "rpmsg-lite-faults.elf", config=RprocConfig(recovery=False)) as rp:
        with rp.wait_channel(FAULTS_SERVICE, 10).create_ept() as ept:
            ept.send(command.encode())
        assert rp.wait_state(CRASHED, timeout=30) == CRASHED
        got_kind, why = rp.last_crash
        assert (got_kind, says in why) == (kind, True), why
        if kind != "watchdog":
            pc = int(why.rsplit("PC ", 1)[1].split()[0], 16)
            assert pc in symbol_range(path, "fault_run")


def test_a_core_spinning_with_interrupts_masked_is_stopped_and_leaves_nothing_behind():
    before = snapshot()
    rp = emulated("spinner", "rpmsg-lite-faults.elf", config=RprocConfig(recovery=False))
    rp.start()
    try:
        with rp.wait_channel(FAULTS_SERVICE, 10).create_ept() as ept:
            ept.send(b"spin")
        assert rp.platform is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # pings are answered until the loop begins
            try:
                rp.platform.mailbox_ping(0.5)
            except OSError as exc:  # then not even its mailbox is answered
                assert exc.errno == errno.ETIMEDOUT
                break
        else:
            pytest.fail("the spinning core kept answering echo requests for 30 s")
        pid = rp.pid
    finally:
        rp.stop()  # a reset: the core never acknowledges anything again
    assert rp.state == OFFLINE
    assert not os.path.exists(f"/proc/{pid}")
    assert snapshot() == before


def test_a_core_that_scribbles_its_vrings_breaks_only_its_own_link():
    bus = RpmsgBus()
    with (
        emulated("scribbler", "rpmsg-lite-faults.elf", bus=bus) as bad,
        emulated("neighbour", "openamp-rpmsg-echo.elf", bus=bus) as oa,
        Rproc("python", "amplink.firmware.echo", bus=bus) as py,
    ):
        for rp in (bad, oa, py):
            echo(rp, [b"before"])
        with bad.wait_channel(FAULTS_SERVICE, 10).create_ept() as ept:
            ept.send(b"scribble")
        bad.wait_crash_handled(1)
        assert bad.last_crash[0] == "mmufault" and "used index moved" in bad.last_crash[1]
        assert (oa.crash_count, py.crash_count) == (0, 0)
        for rp in (oa, py, bad):  # the scribbler was recovered
            echo(rp, [b"after"])


def test_a_core_dump_is_an_arm_elf_core_that_readelf_accepts(tmp_path):
    path = image("rpmsg-lite-faults.elf")
    config = RprocConfig(coredump_mode="enabled", coredump_dir=str(tmp_path))
    with emulated("dumped", "rpmsg-lite-faults.elf", config=config) as rp:
        with rp.wait_channel(FAULTS_SERVICE, 10).create_ept() as ept:
            ept.send(b"unmapped-write")
        rp.wait_coredump(1)
        pc = int(rp.last_crash[1].rsplit("PC ", 1)[1].split()[0], 16)
    core = tmp_path / "dumped-crash1.core"
    with open(core, "rb") as f:
        elf = ELFFile(f)
        assert (elf.elfclass, elf["e_machine"], elf["e_type"]) == (32, "EM_ARM", "ET_CORE")
        segments = list(elf.iter_segments())
        loads = [(s["p_vaddr"], s["p_memsz"]) for s in segments if s["p_type"] == "PT_LOAD"]
        assert loads == [(w.da, w.size) for w in firmware.soc().windows]
        (note_seg,) = [s for s in segments if s["p_type"] == "PT_NOTE"]
        (note,) = list(note_seg.iter_notes())
        assert (note["n_name"], note["n_type"]) == ("CORE", "NT_PRSTATUS")
        regs = struct.unpack_from("<18I", note["n_desc"], 72)
        assert regs[15] == pc and pc in symbol_range(path, "fault_run")
    readelf = shutil.which("arm-none-eabi-readelf")
    assert readelf is not None
    out = subprocess.run([readelf, "-a", str(core)], capture_output=True, text=True, check=True)
    assert "CORE" in out.stdout and "NT_PRSTATUS" in out.stdout and not out.stderr
    if GDB is not None:  # post-mortem: the registers and memory give the whole stack
        cmds = ["set osabi GNU/Linux", f"core-file {core}", "bt"]
        gdb = [GDB, "-nx", "-batch", path, *(a for c in cmds for a in ("-ex", c))]
        bt = subprocess.run(gdb, capture_output=True, text=True, timeout=60, check=False)
        assert "in fault_run (" in bt.stdout and "in main ()" in bt.stdout, bt.stdout


# -- the same host code on every kind of core ------------------------------------------------
KINDS = {
    "rpmsg-lite": ("rpmsg-lite-echo.elf", "rpmsg-lite-tty.elf"),
    "openamp": ("openamp-rpmsg-echo.elf", "openamp-tty.elf"),
    "python": ("amplink.firmware.demo", "amplink.firmware.demo"),
}


def start_core(name: str, fw: str, bus: RpmsgBus) -> Rproc:
    """The same call for every kind of core: amplink.host.PLATFORMS runs a Python
    program in a process and a Cortex-M image on an emulated core."""
    rp = Rproc(name, fw if fw.startswith("amplink.") else image(fw), bus=bus)
    rp.start()
    return rp


def host_echo_through_files_and_asyncio(rp: Rproc) -> None:
    """What a host application does: an endpoint file from rpmsg_ctrl to the echo
    service, used blocking and from asyncio."""
    chan = rp.wait_channel(ECHO, 10)
    with RpmsgCtrl(chan, rp.bus).create_ept("app", dst=chan.dst) as f:
        f.write(b"through a file")
        assert f.read(timeout=10) == b"through a file"

        async def exchange() -> list[bytes]:
            ept = AsyncEndpoint(f)
            for i in range(20):
                await ept.send(b"async %d" % i)
            return [await asyncio.wait_for(ept.recv(), 10) for _ in range(20)]

        assert asyncio.run(exchange()) == [b"async %d" % i for i in range(20)]


def host_console_over_the_tty(driver: RpmsgTtyDriver, rp: Rproc) -> str:
    """Type a command on the core's console pty and return the answer line."""
    tty = driver.wait_tty(10)
    assert tty.rpdev.link is rp.link
    fd = os.open(tty.path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"echo same host code\r")
        seen = b""
        while seen.count(b"\r\n") < 2 or not seen.endswith(b"> "):
            assert select.select([fd], [], [], 10)[0], f"the console answered {seen!r}"
            seen += os.read(fd, 4096)
    finally:
        os.close(fd)
    return seen.split(b"\r\n")[1].decode()


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_host_code_works_on_every_kind_of_core(kind):
    before = snapshot()
    bus = RpmsgBus()
    ttys = RpmsgTtyDriver()
    bus.register_driver(ttys)
    echo_fw, tty_fw = KINDS[kind]
    cores = [start_core(f"{kind}-echo", echo_fw, bus)]
    try:
        if tty_fw != echo_fw:
            cores.append(start_core(f"{kind}-tty", tty_fw, bus))
        host_echo_through_files_and_asyncio(cores[0])
        assert host_console_over_the_tty(ttys, cores[-1]) == "same host code"
    finally:
        for rp in cores:
            rp.stop()
        bus.unregister_driver(ttys)
    assert snapshot() == before


def test_the_demo_runs_the_cortex_m_example_board(capsys):
    from amplink.app import demo  # noqa: PLC0415
    from amplink.board import load_board  # noqa: PLC0415

    before = snapshot()
    spec = load_board(Path(__file__).resolve().parent.parent / "examples" / "cortex-m.toml")
    assert [c.emulated is not None for c in spec.cores] == [True, True, False]
    result = demo.run(spec)
    assert [r.messages for r in result.cores] == [496, 496, 496]
    shown = {r.name: (r.shown, r.final) for r in result.cores}
    assert shown["lite"] == ("crash, recovered", "running")
    assert "write to unmapped memory at 0x60000000" in capsys.readouterr().out
    assert snapshot() == before


# -- the GDB stub ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(GDB is None, reason="no ARM GDB: apt-get install gdb-multiarch")
def test_gdb_attaches_breaks_in_the_rx_callback_and_steps():
    path = image("rpmsg-lite-echo.elf")
    port = free_port()
    with emulated("debugged", "rpmsg-lite-echo.elf", soc=firmware.soc(gdb_port=port)) as rp:
        chan = rp.wait_channel(ECHO, 10)
        script = [
            "set confirm off", "set pagination off", f"target remote 127.0.0.1:{port}",
            "break echo", "continue", "info registers pc", "step", "info registers pc",
            "delete", "detach",
        ]  # fmt: skip
        cmd = [GDB, "-nx", "-batch", path, *(a for line in script for a in ("-ex", line))]
        gdb = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: rp.core_status & STATUS_HALTED, "GDB to attach (the core halts)")
            wait_for(lambda: not rp.core_status & STATUS_HALTED, "GDB to continue the core")
            with chan.create_ept() as ept:
                ept.send(b"hit the breakpoint")
                out, _ = gdb.communicate(timeout=60)
                assert ept.recv(10).data == b"hit the breakpoint"  # it ran on after detach
        finally:
            if gdb.poll() is None:
                gdb.kill()
        assert "Breakpoint 1, echo (" in out, out
        pcs = [int(line.split()[1], 16) for line in out.splitlines() if line.startswith("pc ")]
        assert len(pcs) == 2 and pcs[0] in symbol_range(path, "echo") and pcs[1] != pcs[0], out
