"""The settings of rpmsg's drivers: buffer geometry and how long a sender waits.

Linux fixes them (512-byte virtio buffers, 256 per direction, 15 s for a virtio TX
buffer, 10 s for a GLINK intent); OpenAMP, rpmsg-lite and Zephyr let firmware builders
choose.  :class:`RpmsgConfig` is what a host gives its rpmsg drivers.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

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
class RpmsgConfig:
    """The host's rpmsg drivers' settings: ``buffers`` (the virtio backend's buffer
    geometry) and ``send_timeout`` (s) a blocking send waits for a buffer or an intent
    (None: each backend's Linux default, virtio 15 s, GLINK 10 s)."""

    buffers: RpmsgBuffers = DEFAULT_BUFFERS
    send_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.send_timeout is not None and self.send_timeout < 0:
            raise RpmsgError(errno.EINVAL, f"send_timeout {self.send_timeout} is negative")
