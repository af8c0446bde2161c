"""The settings of rpmsg's drivers: buffer geometry and how long a sender waits.

Linux fixes them (512-byte virtio buffers, 256 per direction, 15 s for a virtio TX
buffer, 10 s for a GLINK intent); OpenAMP, rpmsg-lite and Zephyr let firmware builders
choose.  :class:`RpmsgConfig` is what a host gives its rpmsg drivers.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, fields

from amplink.errors import RpmsgError
from amplink.wire.rpmsg import RPMSG_HDR_SIZE

RPMSG_BUF_SIZE = 512
MAX_RPMSG_NUM_BUFS = 512
MAX_BUF_SIZE = 65536  # amplink's bound (Linux: 512)


@dataclass(frozen=True)
class RpmsgBuffers:
    """The host's buffer geometry, per direction: Linux fixes 512-byte buffers and at
    most 256 per direction (the interoperable default); amplink lets both be chosen.

    ``rx_*`` are the buffers the host receives in (the remote sends into them, so the
    remote's MTU is ``rx_size - 16``: a device learns it from the length of the buffers
    the driver posts); ``tx_*`` the buffers the host sends from (the host's MTU is
    ``tx_size - 16``).  A count of None means ``min(vring num, 256)``.
    """

    rx_size: int = RPMSG_BUF_SIZE
    tx_size: int = RPMSG_BUF_SIZE
    rx_count: int | None = None
    tx_count: int | None = None

    def __post_init__(self) -> None:
        for what, size in (("rx_size", self.rx_size), ("tx_size", self.tx_size)):
            if not RPMSG_HDR_SIZE < size <= MAX_BUF_SIZE:
                raise RpmsgError(
                    errno.EINVAL, f"{what} {size} is not in ({RPMSG_HDR_SIZE}, {MAX_BUF_SIZE}]"
                )

    def counts(self, rx_num: int, tx_num: int) -> tuple[int, int]:
        """Buffers per direction for vrings of ``rx_num`` and ``tx_num`` entries."""
        out = []
        for what, count, num in (("rx", self.rx_count, rx_num), ("tx", self.tx_count, tx_num)):
            n = min(num, MAX_RPMSG_NUM_BUFS // 2) if count is None else count
            if not 0 < n <= num:
                raise RpmsgError(
                    errno.EINVAL, f"{n} {what} buffers do not fit a vring of {num} entries"
                )
            out.append(n)
        return out[0], out[1]

    def pool_bytes(self, rx_num: int, tx_num: int) -> int:
        """Bytes of shared memory the buffer pool needs for vrings of these sizes."""
        n_rx, n_tx = self.counts(rx_num, tx_num)
        return n_rx * self.rx_size + n_tx * self.tx_size


DEFAULT_BUFFERS = RpmsgBuffers()


@dataclass(frozen=True)
class RpmsgLimits:
    """What one remote may make the host allocate on one link (amplink's bounds: Linux
    has none, and a remote that announces channels without end exhausts it).

    * ``channels``: channels the remote creates (name-service announcements, GLINK
      channels it opens), each with an endpoint and maybe a pty or a file;
    * ``endpoints``: endpoints bound on the link at once (the channels' and the host's
      own);
    * ``ttys``: ``rpmsg-tty`` channels given a pty (3 fds and a thread each);
    * ``intents``: GLINK intents the remote advertises, and those the host grants it
      on request, each counted; ``intent_bytes``: the total size of the granted ones
      (what reassembling messages into them may take);
    * ``queued_bytes``: GLINK replies waiting for room in a FIFO the remote does not
      read; beyond it the link fails as if the remote had broken the FIFO (a crash).

    What goes beyond a limit is refused (``ENOSPC``), logged (rate-limited) and
    counted in the link's ``refused``; the link and the other cores carry on."""

    channels: int = 64
    endpoints: int = 256
    ttys: int = 4
    intents: int = 1024
    intent_bytes: int = 16 << 20
    queued_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 0:
                raise RpmsgError(errno.EINVAL, f"RpmsgLimits.{f.name} = {value!r}: not a count")


DEFAULT_LIMITS = RpmsgLimits()  # a host's
UNLIMITED = RpmsgLimits(**{f.name: 1 << 62 for f in fields(RpmsgLimits)})
"""A firmware's links: the limits protect a host from its remotes."""


@dataclass(frozen=True)
class RpmsgConfig:
    """The host's rpmsg drivers' settings: ``buffers`` (the virtio backend's buffer
    geometry), ``send_timeout`` (s) a blocking send waits for a buffer or an intent
    (None: each backend's Linux default, virtio 15 s, GLINK 10 s) and ``limits``, what
    the remote may make the host allocate (:class:`RpmsgLimits`)."""

    buffers: RpmsgBuffers = DEFAULT_BUFFERS
    send_timeout: float | None = None
    limits: RpmsgLimits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if self.send_timeout is not None and self.send_timeout < 0:
            raise RpmsgError(errno.EINVAL, f"send_timeout {self.send_timeout} is negative")
