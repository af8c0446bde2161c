"""Shared regions (really shared with another process) and address maps."""

import errno
import os
import subprocess
import sys
import threading

import pytest

from amplink.errors import AddressError, AmplinkError
from amplink.memory import AddressMap, Mapping, SharedRegion, barrier
from waiting import entered_in_another_thread

CHILD = """
import os, sys
from amplink.memory import SharedRegion
r = SharedRegion.attach(int(sys.argv[1]))
assert bytes(r.mem[100:105]) == b"hello", bytes(r.mem[100:105])
r.mem[200:205] = b"world"
r.close()
"""


def test_region_is_shared_with_another_process():
    with SharedRegion.create(8192, "test") as region:
        region.mem[100:105] = b"hello"
        subprocess.run(
            [sys.executable, "-c", CHILD, str(region.fd)], pass_fds=(region.fd,), check=True
        )
        assert bytes(region.mem[200:205]) == b"world"


def test_region_rounds_to_pages_and_leaves_nothing_in_dev_shm():
    region = SharedRegion.create(100, f"leakcheck-{os.getpid()}")
    assert region.size == os.sysconf("SC_PAGE_SIZE")
    assert not [n for n in os.listdir("/dev/shm") if "leakcheck" in n]  # a memfd has no name
    fd = region.fd
    region.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_close_releases_typed_views():
    region = SharedRegion.create(4096)
    words = region.cast(0, 64, "I")
    words[3] = 0xDEADBEEF
    assert bytes(region.mem[12:16]) == (0xDEADBEEF).to_bytes(4, sys.byteorder)
    region.close()
    region.close()  # idempotent
    with pytest.raises(ValueError):
        _ = words[0]


def test_region_view_bounds():
    with SharedRegion.create(4096) as region, pytest.raises(AddressError):
        region.view(4000, 200)


def test_address_map_translate_and_bounds():
    amap = AddressMap([Mapping(0x1000_0000, 0x1000, 0, "a"), Mapping(0x2000_0000, 0x1000, 0x1000)])
    assert amap.translate(0x1000_0010, 16) == 0x10
    assert amap.translate(0x2000_0FF0, 16) == 0x1FF0
    assert amap.to_da(0x1004) == 0x2000_0004
    for da, length in [(0x1000_0FF0, 32), (0x0FFF_FFFF, 2), (0x3000_0000, 1), (0x1000_0000, -1)]:
        with pytest.raises(AddressError):
            amap.translate(da, length)


def test_address_map_rejects_overlap():
    amap = AddressMap.identity(0x1000)
    with pytest.raises(ValueError):
        amap.add(Mapping(0x800, 0x1000, 0))


def test_allocate_and_reserve():
    amap = AddressMap.identity(0x10000)
    assert amap.allocate(10, 16) == 0
    assert amap.allocate(10, 0x1000) == 0x1000
    amap.reserve(0x8000, 0x100)
    assert amap.allocate(1, 1) == 0x8100
    with pytest.raises(AddressError):
        amap.allocate(0x10000, 1)


def test_reserve_refuses_overlaps():
    amap = AddressMap.identity(0x10000)
    table = amap.allocate(0x100, 0x1000)
    with pytest.raises(AddressError, match="overlaps"):
        amap.reserve(table + 0x80, 0x100)
    amap.reserve(0x8000, 0x1000)
    amap.reserve(0x4000, 0x1000)  # below an earlier reservation, but disjoint: fine
    with pytest.raises(AddressError, match="overlaps"):
        amap.reserve(0x8800, 0x1000)
    assert amap.allocate(0x10, 0x10) == 0x9000


def test_a_fence_never_waits_for_another_thread():
    """Each thread fences on a lock of its own: a thread stuck inside its fence (here:
    holding its lock) does not hold up another thread's fence."""
    with entered_in_another_thread(lambda: barrier._fences.lock):  # stuck in its fence
        fenced = threading.Event()
        other = threading.Thread(target=lambda: (barrier.full_fence(), fenced.set()))
        other.start()
        assert fenced.wait(5)  # with one lock for the process this would wait for `stuck`
        other.join(5)
        barrier.full_fence()  # and so does this thread's


@pytest.mark.parametrize("machine", ["aarch64", "armv7l", "riscv64", "ppc64le", ""])
def test_hosts_without_store_ordering_are_refused(machine):
    with pytest.raises(AmplinkError) as exc:
        barrier.require_memory_model(machine)
    assert exc.value.errno == errno.EOPNOTSUPP
    assert "x86-64" in exc.value.strerror and "refuses to run" in exc.value.strerror


def test_no_shared_memory_is_mapped_on_such_a_host(monkeypatch):
    fds = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(barrier, "HOST_MACHINE", "aarch64")
    with pytest.raises(AmplinkError) as exc:
        SharedRegion.create(4096, "refused")
    assert exc.value.errno == errno.EOPNOTSUPP
    assert sorted(os.listdir("/proc/self/fd")) == fds  # its memfd was closed again
    monkeypatch.undo()
    barrier.require_memory_model()  # this host (the test machine is x86-64)
