"""A broken or hostile core hurts only itself: attacks driven from the core's side.

Each test boots a core running ``firmware/hostile.py``, tells it to attack, and checks
that the host survives: the core's link fails with a clear error (a crash is reported),
every call returns within its timeout, and stop() leaves nothing behind."""

import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from amplink import ratelimit
from amplink.errors import RpmsgError
from amplink.host import RpmsgBuffers, RpmsgConfig, Rproc, RprocConfig
from amplink.remoteproc.states import CRASHED
from amplink.rpmsg.config import RpmsgLimits
from amplink.rpmsg.core import RpmsgBus
from amplink.rpmsg.tty import RpmsgTtyDriver
from backends import table_for
from resources import snapshot
from waiting import wait_for

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
        kind = "header announces" if backend == "virtio" else "which is not open"
        logged = [r for r in caplog.records if kind in r.getMessage()]
        assert 1 <= len(logged) <= 2 * ratelimit.DEFAULT_BURST, len(logged)
        assert ratelimit.suppressed(source) - before + len(logged) >= 500
        ept.send(b"after")
        assert ept.recv(10).data == b"after"


def test_kick_words_naming_no_notify_id_are_logged_rate_limited(caplog):
    """The core writes 20,000 words naming a notify id the host never gave out into the
    MU's data registers: at most a burst of those the host reads is logged (a core may
    send any word), the rest are counted as suppressed."""
    with Rproc("hostile-words", HOSTILE) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        before = ratelimit.suppressed(rp.name)

        def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "unknown notify id" in r.getMessage()]

        with caplog.at_level(logging.WARNING):
            # The words are written over each other: on a loaded machine the host may
            # read no more than a burst of one attack's; it is repeated until more came.
            for _ in range(5):
                ept.send(b"words:20000")
                assert ept.recv(30).data == b"words:20000"
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: ratelimit.suppressed(rp.name) > before, "", timeout=2.0)
                    break
            wait_for(lambda: ratelimit.suppressed(rp.name) > before, "suppressed kicks")
        assert 1 <= len(logged()) <= 2 * ratelimit.DEFAULT_BURST, len(logged())
        ept.send(b"after")
        assert ept.recv(10).data == b"after"


def test_announcements_with_names_no_channel_can_carry_are_dropped_rate_limited(caplog):
    """500 name-service messages with an empty name: each is dropped with a
    rate-limited warning (no traceback per message), no channel appears, and the core's
    own channel goes on.  (A 32-byte name without NUL is cut to 31 bytes, as
    rpmsg_ns_cb does.)"""
    with Rproc("hostile-names", HOSTILE) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        channels = len(rp.bus.devices())
        with caplog.at_level(logging.WARNING):
            ept.send(b"badns:500")
            assert ept.recv(30).data == b"badns:500"
            ept.send(b"after")
            assert ept.recv(10).data == b"after"
        assert len(rp.bus.devices()) == channels
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        logged = [r for r in caplog.records if "malformed name-service message" in r.getMessage()]
        assert 1 <= len(logged) <= 2 * ratelimit.DEFAULT_BURST, len(logged)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_channels_a_core_creates_are_capped_and_the_other_core_unaffected(backend):
    """The core announces (opens) 300 channels: the host keeps ``limits.channels`` of
    them, refuses the rest (counted, in status), and another core on the same bus
    keeps echoing; host fds grow only by what the kept channels hold."""
    limits = RpmsgLimits(channels=8)
    bus = RpmsgBus()
    table = table_for(backend)
    with Rproc(f"good-chan-{backend}", ECHO_FW, table=table, bus=bus) as good, Rproc(
        f"hostile-chan-{backend}", HOSTILE, table=table, bus=bus,
        rpmsg=RpmsgConfig(limits=limits),
    ) as bad:  # fmt: skip
        echo = good.wait_channel(SERVICE, 10).create_ept()
        ept = bad.wait_channel(SERVICE, 10).create_ept()
        fds = fd_count()
        ept.send(b"channels:300")
        assert ept.recv(30).data == b"channels:300"
        link = bad.link

        def refused() -> int:
            return link.refused.get("channels", 0)

        wait_until(lambda: refused() + len(mine(bus, link)) >= 301)
        assert len(mine(bus, link)) == limits.channels
        assert fd_count() - fds <= 2 * limits.channels
        echo.send(b"still here")
        assert echo.recv(10).data == b"still here"
        ept.send(b"and here")
        assert ept.recv(10).data == b"and here"


def test_ptys_a_core_asks_for_are_capped():
    """Over virtio the core announces 20 ``rpmsg-tty`` channels: ``limits.ttys`` get a
    pty, the others are refused (counted); no traceback is logged."""
    bus = RpmsgBus()
    ttys = RpmsgTtyDriver()
    bus.register_driver(ttys)
    try:
        with Rproc("hostile-ttys", HOSTILE, bus=bus,
                   rpmsg=RpmsgConfig(limits=RpmsgLimits(ttys=2))) as rp:  # fmt: skip
            ept = rp.wait_channel(SERVICE, 10).create_ept()
            ept.send(b"ttys:20")
            assert ept.recv(30).data == b"ttys:20"
            wait_until(lambda: rp.link.refused.get("ttys", 0) == 18)
            assert len(ttys.ttys) == 2
    finally:
        bus.unregister_driver(ttys)


def test_glink_intents_a_core_advertises_are_capped():
    """Over GLINK the core advertises 5000 intents of 4 GiB with fresh ids: the host
    keeps track of at most ``limits.intents`` and goes on."""
    limits = RpmsgLimits(intents=200)
    with Rproc("hostile-intents", HOSTILE, table=table_for("glink"),
               rpmsg=RpmsgConfig(limits=limits)) as rp:  # fmt: skip
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"intents:5000")
        assert ept.recv(30).data == b"intents:5000"
        link = rp.link
        wait_until(lambda: link.refused.get("intents", 0) > 0)
        with link._tx_lock:
            assert link.protocol._intent_count() <= limits.intents
        ept.send(b"after")
        assert ept.recv(10).data == b"after"


def mine(bus, link):
    return [d for d in bus.devices() if d.link is link]


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- the suite: every attack, both backends, a good core beside, resources counted -------
SURVIVES, CRASHES, HANGS = "survives", "crashes", "hangs"
ATTACKS = {
    b"tx-ring": CRASHES,  # a ring or FIFO index the host reads, out of range
    b"scribble": CRASHES,  # random bytes over what the host reads
    b"irq-fds": HANGS,  # interrupt descriptors jammed and made blocking
    b"shrink": SURVIVES,  # memory files truncated, grown, sealed
    b"bad:2000": SURVIVES,  # bad headers / CLOSE for unknown channels
    b"channels:300": SURVIVES,  # a name-service (GLINK: OPEN) flood
    b"kicks:20000": SURVIVES,  # a kick flood
    b"ttys:30": SURVIVES,  # ptys asked for (virtio)
    b"intents:5000": SURVIVES,  # 4 GiB intents with fresh ids (GLINK)
}


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("attack", list(ATTACKS), ids=[a.decode() for a in ATTACKS])
def test_hostile_firmware_suite(backend, attack):
    """One attack from one core of a two-core board: the other core keeps echoing; the
    attacker survives it, or crashes and is recovered, or hangs only itself; both stop
    in time; fds (ptys included), threads, children and mapped memory are as before,
    and the host's RSS grew by less than 40 MiB."""
    if (attack == b"ttys:30" and backend == "glink") or (
        attack == b"intents:5000" and backend == "virtio"
    ):
        pytest.skip("not an attack this backend has")
    before, rss = snapshot(), rss_bytes()
    bus = RpmsgBus()
    ttys = RpmsgTtyDriver()
    bus.register_driver(ttys)
    table = table_for(backend)
    name = attack.decode().split(":")[0]
    good = Rproc(f"good-{name}-{backend}", ECHO_FW, table=table, bus=bus)
    bad = Rproc(f"hostile-{name}-{backend}", HOSTILE, table=table, bus=bus,
                config=RprocConfig(shutdown_timeout=0.5),
                rpmsg=RpmsgConfig(buffers=RpmsgBuffers(tx_count=8),  # its ring is read soon
                                  limits=RpmsgLimits(channels=8, ttys=2, intents=200)))  # fmt: skip
    try:
        good.start()
        bad.start()
        echo = good.wait_channel(SERVICE, 10).create_ept()
        ept = bad.wait_channel(SERVICE, 10).create_ept()
        ept.send(attack)
        outcome = ATTACKS[attack]
        if outcome == CRASHES:  # its acknowledgement may be lost in what it broke
            with pytest.raises(OSError):  # the host finds out when it next looks (EIO, EPIPE)
                for _ in range(100):
                    ept.send(b"after", timeout=5)
                    ept.recv(5)
            bad.wait_crash_handled(1)
            again = bad.wait_channel(SERVICE, 10).create_ept()  # recovered
            again.send(b"recovered")
            assert again.recv(10).data == b"recovered"
        else:
            reply = ept.recv(30).data
            assert reply == attack or b"EPERM" in reply
        if outcome == SURVIVES:
            ept.send(b"after")
            assert ept.recv(10).data == b"after"
            assert bad.crash_count == 0
        echo.send(b"still here")
        assert echo.recv(10).data == b"still here"
    finally:
        in_thread(bad.stop)
        in_thread(good.stop)
        bad.delete()
        good.delete()
        bus.unregister_driver(ttys)
    assert snapshot() == before
    assert rss_bytes() - rss < 40 << 20


def test_glink_replies_a_core_never_reads_are_bounded():
    """Over GLINK the core sends 20,000 commands that each need a reply and never reads
    the host's FIFO: the replies queue beyond ``limits.queued_bytes`` (by at most what
    one FIFO's worth of commands asks for), then the link fails (a crash, with the
    reason) instead of growing the host's memory."""
    with Rproc("hostile-noread", HOSTILE, table=table_for("glink"),
               config=RprocConfig(recovery=False, shutdown_timeout=0.5),
               rpmsg=RpmsgConfig(limits=RpmsgLimits(queued_bytes=4096))) as rp:  # fmt: skip
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"noread:20000")  # its acknowledgement may never be read
        assert in_thread(lambda: rp.wait_state(CRASHED, timeout=30)) == CRASHED
        assert "does not read its FIFO" in rp.last_crash[1], rp.last_crash
        assert rp.link is None or rp.link.refused.get("queued_bytes", 0) == 1
