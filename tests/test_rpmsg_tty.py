"""rpmsg-tty: a remote console channel as a real pseudo-terminal, used like a serial
port by a client that opens the pty device file."""

import errno
import os
import select
import sys
import termios
import time
from pathlib import Path

import pytest

from amplink.errors import RpmsgError
from amplink.host import Rproc
from amplink.rpmsg.tty import TTY_BUFFER, RpmsgTtyDriver
from backends import table_for
from resources import snapshot

sys.path.insert(0, str(Path(__file__).parent / "firmware"))
from tty_burst import pattern


def read_exactly(fd: int, n: int, timeout: float = 10.0) -> bytes:
    out = b""
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"only {len(out)} of {n} bytes came back"
        out += os.read(fd, n - len(out))
    return out


def test_console_over_a_real_pty(backend):
    before = snapshot()
    driver = RpmsgTtyDriver()
    with Rproc("console", "amplink.firmware.console", table=table_for(backend)) as rp:
        rp.bus.register_driver(driver)
        t = driver.wait_tty()
        assert t.path.startswith("/dev/pts/")
        fd = os.open(t.path, os.O_RDWR | os.O_NOCTTY)
        try:
            attrs = termios.tcgetattr(fd)
            assert not attrs[3] & termios.ECHO  # raw, no local echo: the remote echoes
            os.write(fd, b"hello\n")
            assert read_exactly(fd, 6) == b"hello\n"
            big = bytes(range(256)) * 8  # 2048 bytes: more than four messages' worth
            os.write(fd, big)
            assert read_exactly(fd, len(big)) == big
            sizes = [int(line.split()[1]) for line in rp.trace(0).splitlines()]
            assert sizes[0] == 6 and sum(sizes[1:]) == len(big)
            assert t.mtu == rp.link.mtu  # virtio: 496; GLINK: its largest message
            # Split at the MTU: at least ceil(2048 / MTU) messages after "hello\n".
            assert max(sizes) <= t.mtu and len(sizes) >= 1 + -(-len(big) // t.mtu)
        finally:
            os.close(fd)
    assert driver.ttys == {}  # the channel went away with the core, and its pty
    assert snapshot() == before


BURST = str(Path(__file__).parent / "firmware" / "tty_burst.py")


def burst_console(backend):
    """A core running the burst firmware, its pty opened by a user, and its control."""
    driver = RpmsgTtyDriver()
    rp = Rproc(f"burst-{backend}", BURST, table=table_for(backend))
    rp.start()
    rp.bus.register_driver(driver)
    t = driver.wait_tty()
    fd = os.open(t.path, os.O_RDWR | os.O_NOCTTY)
    os.write(fd, b"x")
    assert read_exactly(fd, 5) == b"ready"  # the console knows where to send now
    ctrl = rp.wait_channel("burst-control", 10).create_ept()
    return rp, t, fd, ctrl


def test_a_burst_read_late_arrives_whole(backend):
    """32 KiB sent while nobody reads, read afterwards: every byte is there."""
    rp, _tty, fd, ctrl = burst_console(backend)
    try:
        ctrl.send(b"32768")
        assert ctrl.recv(30).data == b"sent 32768"  # the core finished before we read
        assert read_exactly(fd, 32768) == pattern(32768)
    finally:
        os.close(fd)
        rp.stop()


def test_beyond_the_tty_buffer_the_sender_waits_and_nothing_is_lost(backend):
    """More than the tty buffers while nobody reads: the console stops giving receive
    buffers (virtio) or intents (GLINK) back, so the core's sends wait (it cannot
    finish; it pays no heed to flow control).  When the user reads, every byte arrives,
    in order."""
    n = TTY_BUFFER * 3
    rp, t, fd, ctrl = burst_console(backend)
    try:
        ctrl.send(b"%d" % n)
        deadline = time.monotonic() + 60
        while t.queued < TTY_BUFFER and time.monotonic() < deadline:
            time.sleep(0.01)  # the burst fills the queue as the core sends it
        assert t.queued >= TTY_BUFFER
        # Held: at most the virtio pool's 256 buffers, or the 256 intents a GLINK
        # channel grants, beyond the tty buffer.
        assert t.queued <= TTY_BUFFER + 256 * 496
        with pytest.raises(RpmsgError) as exc:
            ctrl.recv(0.5)  # the core is stalled mid-burst, not done
        assert exc.value.errno == errno.ETIMEDOUT
        assert read_exactly(fd, n, timeout=60) == pattern(n)
        assert ctrl.recv(60).data == b"sent %d" % n
    finally:
        os.close(fd)
        rp.stop()
