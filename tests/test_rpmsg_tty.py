"""rpmsg-tty: a remote console channel as a real pseudo-terminal, used like a serial
port by a client that opens the pty device file."""

import os
import select
import termios
import time

from amplink.host import Rproc
from amplink.rpmsg.tty import RpmsgTtyDriver
from backends import table_for
from resources import snapshot


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
        assert t.dropped == 0
    assert driver.ttys == {}  # the channel went away with the core, and its pty
    assert snapshot() == before


def test_output_nobody_reads_is_dropped_and_counted(caplog, backend):
    """The remote echoes 64 KB onto a pty whose reader never reads: what does not fit
    in the pty's buffer is dropped, counted and logged, and nothing blocks."""
    driver = RpmsgTtyDriver()
    with Rproc("flood", "amplink.firmware.console", table=table_for(backend)) as rp:
        rp.bus.register_driver(driver)
        t = driver.wait_tty()
        fd = os.open(t.path, os.O_RDWR | os.O_NOCTTY)
        try:
            for _ in range(64):
                os.write(fd, b"y" * 1024)  # never read back
            deadline = time.monotonic() + 10
            while not t.dropped and time.monotonic() < deadline:
                time.sleep(0.01)  # the echoes arrive as the remote gets to them
        finally:
            os.close(fd)
    assert t.dropped > 0 and "dropped" in caplog.text
