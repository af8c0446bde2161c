"""An interrupt storm from one core of two: the host disables the storming core's line
and the other core keeps working (driven by ``firmware/mu_storm.py``, a real process
that pulses its host's interrupt line as fast as it can)."""

import fcntl
import logging
import termios
from pathlib import Path

from amplink.host import Rproc
from amplink.remoteproc.process import ProcessPlatform
from amplink.rpmsg.core import RpmsgBus
from waiting import wait_for

SERVICE = "rpmsg-openamp-demo-channel"
STORM_FW = str(Path(__file__).parent / "firmware" / "mu_storm.py")


def _unread(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def test_a_core_pulsing_its_line_is_disabled_and_the_other_core_keeps_working(caplog):
    bus = RpmsgBus()
    with (
        Rproc("storm-good", "amplink.firmware.echo", bus=bus) as good,
        Rproc("storm-bad", STORM_FW, bus=bus) as bad,
    ):
        echo = good.wait_channel(SERVICE, 10).create_ept()
        ept = bad.wait_channel(SERVICE, 10).create_ept()
        platform = bad.platform
        assert isinstance(platform, ProcessPlatform) and platform.kick_path is not None
        line = platform.kick_path.domain.line(platform.mailbox.host_irq)
        with caplog.at_level(logging.ERROR, logger="amplink.irq"):
            ept.send(b"pulse")
            assert ept.recv(10).data == b"pulse"
            done = 0
            while not line.spurious_disabled:  # the honest core answers all along
                echo.send(b"%d" % done)
                assert echo.recv(10).data == b"%d" % done
                done += 1
                assert done < 1_000_000, "the storm was never detected"
        logged = [r.getMessage() for r in caplog.records if "nobody cared" in r.getMessage()]
        assert len(logged) == 1 and "storm-bad" in logged[0] and "restart" in logged[0]
        assert line.depth == 1
        # The host no longer reads the storming line: its pulses pile up in the pipe.
        wait_for(lambda: _unread(line.fd) >= 4096, "the storm's pulses to pile up unread")
        for i in range(50):
            echo.send(b"after %d" % i)
            assert echo.recv(10).data == b"after %d" % i
        good_line = good.platform.kick_path.domain.line(good.platform.mailbox.host_irq)
        assert not good_line.spurious_disabled
