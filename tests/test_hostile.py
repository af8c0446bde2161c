"""A broken or hostile core hurts only itself: attacks driven from the core's side.

Each test boots a core running ``firmware/hostile.py``, tells it to attack, and checks
that the host survives: the core's link fails with a clear error (a crash is reported),
every call returns within its timeout, and stop() leaves nothing behind."""

import errno
import logging
import threading
from pathlib import Path

import pytest

from amplink import ratelimit
from amplink.errors import RpmsgError
from amplink.host import RpmsgBuffers, RpmsgConfig, Rproc, RprocConfig
from amplink.remoteproc.states import CRASHED
from amplink.rpmsg.core import RpmsgBus
from backends import table_for
from resources import snapshot

SERVICE = "rpmsg-openamp-demo-channel"
ECHO_FW = "amplink.firmware.echo"
HOSTILE = str(Path(__file__).parent / "firmware" / "hostile.py")


def in_thread(call, timeout: float = 30.0):
    """Run ``call`` in a thread; what it returned or raised, or a test failure if it
    did not finish within ``timeout`` s (a hang, not a slow machine)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{call} hung for {timeout} s"
    return outcome[0]


def test_a_broken_send_ring_fails_the_link_and_reports_a_crash(backend):
    """The core breaks the ring the host sends on (virtio: an impossible used index on
    vring 1; GLINK: the host's FIFO's read index out of range).  The host's sender gets
    the reason (EIO), later ones EPIPE; a crash is reported; stop() returns."""
    before = snapshot()
    rp = Rproc(
        f"hostile-txring-{backend}",
        HOSTILE,
        table=table_for(backend),
        config=RprocConfig(recovery=False),
        rpmsg=RpmsgConfig(buffers=RpmsgBuffers(tx_count=4)),  # the ring is read at once
    )
    rp.start()
    ept = rp.wait_channel(SERVICE, 10).create_ept()
    for i in range(8):  # every send buffer has been used and reclaimed once
        ept.send(b"%d" % i)
        assert ept.recv(10).data == b"%d" % i
    ept.send(b"tx-ring")
    assert ept.recv(10).data == b"tx-ring"
    err = in_thread(lambda: [ept.send(b"after", timeout=5) for _ in range(8)])
    assert isinstance(err, OSError) and err.errno in (errno.EIO, errno.EPIPE), err
    with pytest.raises(RpmsgError) as exc:
        ept.send(b"later", timeout=5)
    assert exc.value.errno == errno.EPIPE
    assert in_thread(lambda: rp.wait_state(CRASHED, timeout=20)) == CRASHED
    reason = "used index moved" if backend == "virtio" else "outside the"
    assert rp.last_crash[0] == "mmufault" and reason in rp.last_crash[1], rp.last_crash
    in_thread(rp.stop)
    rp.delete()
    assert snapshot() == before


def test_interrupt_descriptors_jammed_by_the_core_never_block_the_host(backend):
    """The core fills every interrupt descriptor it holds and makes it blocking; the
    host's kicks to it never block: sends time out, stop() returns, and another core
    on the same bus keeps echoing."""
    before = snapshot()
    bus = RpmsgBus()
    table = table_for(backend)
    good = Rproc(f"good-irq-{backend}", ECHO_FW, table=table, bus=bus)
    bad = Rproc(f"hostile-irq-{backend}", HOSTILE, table=table, bus=bus,
                config=RprocConfig(recovery=False, shutdown_timeout=1))  # fmt: skip
    good.start()
    bad.start()
    ept = bad.wait_channel(SERVICE, 10).create_ept()
    ept.send(b"irq-fds")
    assert ept.recv(10).data == b"irq-fds"

    def flood() -> OSError | None:
        for _ in range(1000):
            ept.send(b"x", timeout=0.5)  # each kicks the jammed core
        return None

    err = in_thread(flood)
    assert isinstance(err, RpmsgError) and err.errno == errno.ETIMEDOUT, err
    echo = good.wait_channel(SERVICE, 10).create_ept()
    echo.send(b"still here")
    assert echo.recv(10).data == b"still here"
    in_thread(bad.stop)
    in_thread(good.stop)
    bad.delete()
    good.delete()
    assert snapshot() == before


def test_memory_a_core_is_given_cannot_be_shrunk_grown_or_sealed_by_it(backend):
    """The core truncates, grows and seals every memory file it holds (device memory,
    the MMIO window): each attempt fails with EPERM, and the host goes on."""
    before = snapshot()
    with Rproc(f"hostile-shrink-{backend}", HOSTILE, table=table_for(backend)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"shrink")
        report = ept.recv(10).data.decode().split()
        names = {item.split(":")[1] for item in report}
        assert names == {f"hostile-shrink-{backend}", f"hostile-shrink-{backend}-mmio"}
        assert all(item.endswith(":EPERM,EPERM,EPERM") for item in report), report
        for payload in (b"after", b"again"):  # the host reads and writes both, unharmed
            ept.send(payload)
            assert ept.recv(10).data == payload
    assert snapshot() == before


def test_what_a_core_provokes_is_logged_rate_limited_with_a_count(backend, caplog):
    """The core sends 500 messages the host must drop (virtio: bad header lengths;
    GLINK: CLOSE for a channel never opened): at most a burst of them is logged, the
    rest are counted as suppressed, and the host goes on."""
    with Rproc(f"hostile-logs-{backend}", HOSTILE, table=table_for(backend)) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        source = rp.link.name
        before = ratelimit.suppressed(source)
        with caplog.at_level(logging.WARNING):
            ept.send(b"bad:500")
            assert ept.recv(30).data == b"bad:500"
        kind = "header announces" if backend == "virtio" else "which the remote never opened"
        logged = [r for r in caplog.records if kind in r.getMessage()]
        assert 1 <= len(logged) <= 2 * ratelimit.DEFAULT_BURST, len(logged)
        assert ratelimit.suppressed(source) - before + len(logged) >= 500
        ept.send(b"after")
        assert ept.recv(10).data == b"after"
