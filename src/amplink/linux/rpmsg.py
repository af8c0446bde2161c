"""rpmsg through the kernel's user-space interfaces (``rpmsg_char``, ``rpmsg_ctrl``,
``rpmsg_tty`` and the rpmsg bus in sysfs).

:class:`LinuxEptFile` has the methods of amplink's own
:class:`~amplink.rpmsg.chardev.RpmsgEptFile` (``read``, ``write``, ``fileno``,
``writer_fileno``, ``poll``, flow control, ``close``), and :class:`LinuxRpmsgChar` the
``wait_file`` of :class:`~amplink.rpmsg.chardev.RpmsgCharDriver`, so application code
written against one runs on the other (``AsyncEndpoint`` included).  Errors are the
kernel's own, raised as :class:`~amplink.errors.RpmsgError` with its errno.

Device nodes appear a moment after the kernel creates a device (udev, mdev or
devtmpfs make them), so every call that makes one waits for its node, bounded by a
timeout.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

from amplink.errors import RpmsgError
from amplink.wait import send_retry_delays

RPMSG_ADDR_ANY = 0xFFFFFFFF
ENDPOINT_INFO = struct.Struct("=32sII")  # struct rpmsg_endpoint_info: name, src, dst
RPMSG_CREATE_EPT_IOCTL = 0x4028B501
RPMSG_DESTROY_EPT_IOCTL = 0x0000B502
RPMSG_CREATE_DEV_IOCTL = 0x4028B503
RPMSG_RELEASE_DEV_IOCTL = 0x4028B504
RPMSG_GET_OUTGOING_FLOWCONTROL = 0x8004B505
RPMSG_SET_INCOMING_FLOWCONTROL = 0x8004B506
CHRDEV_DRIVER = "rpmsg_chrdev"
RAW_SERVICE = "rpmsg-raw"
MAX_MESSAGE = 65536  # a read buffer above any backend's MTU
NODE_TIMEOUT = 10.0
_POLL_STEP = 0.02


def _error(exc: OSError, what: str) -> RpmsgError:
    code = exc.errno or errno.EIO
    return RpmsgError(code, f"{what}: {os.strerror(code)}")


def endpoint_info(name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY) -> bytes:
    """The 40-byte ``struct rpmsg_endpoint_info`` (name NUL-padded, at most 31 bytes)."""
    raw = name.encode()
    if len(raw) > 31:
        raise RpmsgError(errno.EINVAL, f"channel name {name!r} is longer than 31 bytes")
    return ENDPOINT_INFO.pack(raw, src, dst)


_T = TypeVar("_T")


def wait_until(found: Callable[[], _T | None], what: str, timeout: float = NODE_TIMEOUT) -> _T:
    """Poll ``found`` until it gives something truthy (returned); ``ETIMEDOUT`` after
    ``timeout`` s saying ``what`` was awaited.  Nodes and sysfs entries give no event
    to wait on without udev, so this is a bounded poll."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        if time.monotonic() > deadline:
            raise RpmsgError(errno.ETIMEDOUT, f"{what} within {timeout}s")
        time.sleep(_POLL_STEP)
    return value


def wait_path(path: Path, timeout: float = NODE_TIMEOUT, *, gone: bool = False) -> None:
    """Wait until ``path`` exists (or, with ``gone``, no longer exists); ``ETIMEDOUT``."""
    state = "still exists" if gone else "did not appear"
    wait_until(lambda: path.exists() != gone, f"{path} {state}", timeout)


@dataclass(frozen=True)
class Channel:
    """An rpmsg device on the bus (``/sys/bus/rpmsg/devices/<id>``)."""

    id: str
    name: str
    src: int
    dst: int
    driver: str | None
    announce: bool

    @classmethod
    def read(cls, path: Path) -> Channel:
        """The channel whose sysfs folder is ``path``."""
        driver = path / "driver"
        return cls(
            id=path.name,
            name=_read_attr(path / "name"),
            src=_addr(_read_attr(path / "src")),
            dst=_addr(_read_attr(path / "dst")),
            driver=os.path.basename(os.readlink(driver)) if driver.exists() else None,
            announce=_read_attr(path / "announce") == "true",
        )


def _addr(text: str) -> int:
    value = int(text, 0)
    return value & 0xFFFFFFFF  # ANY may print as -1


def channels(sysfs: str = "/sys") -> list[Channel]:
    """Every rpmsg device on the bus, the control and name-service devices included."""
    root = Path(sysfs, "bus/rpmsg/devices")
    found = []
    for p in sorted(root.iterdir()) if root.exists() else []:
        with contextlib.suppress(FileNotFoundError):  # removed while we looked
            found.append(Channel.read(p))
    return found


@dataclass(frozen=True)
class EptDev:
    """An endpoint device (``/sys/class/rpmsg/rpmsgN``, made by ``rpmsg_char``)."""

    node: str
    name: str
    src: int
    dst: int


def ept_devices(sysfs: str = "/sys") -> list[EptDev]:
    """Every ``/dev/rpmsgN`` the kernel has made, with its endpoint's addresses."""
    root = Path(sysfs, "class/rpmsg")
    found = []
    for p in sorted(root.glob("rpmsg[0-9]*")) if root.exists() else []:
        with contextlib.suppress(FileNotFoundError):
            found.append(
                EptDev(
                    p.name,
                    _read_attr(p / "name"),
                    _addr(_read_attr(p / "src")),
                    _addr(_read_attr(p / "dst")),
                )
            )
    return found


def bind_chrdev(channel: Channel, sysfs: str = "/sys") -> None:
    """Give ``channel`` a ``/dev/rpmsgN`` on its default endpoint: set its
    ``driver_override`` to ``rpmsg_chrdev`` and rebind it."""
    dev = Path(sysfs, "bus/rpmsg/devices", channel.id)
    try:
        (dev / "driver_override").write_text(CHRDEV_DRIVER)
        if (dev / "driver").exists():
            (dev / "driver" / "unbind").write_text(channel.id)
        Path(sysfs, "bus/rpmsg/drivers", CHRDEV_DRIVER, "bind").write_text(channel.id)
    except OSError as exc:
        raise _error(exc, f"binding {channel.id} to {CHRDEV_DRIVER}") from None


class _KernelFile:
    """An open character device; the kernel's errors become ``RpmsgError``."""

    def __init__(self, path: str, flags: int) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | flags)
        except OSError as exc:
            raise _error(exc, f"open {path}") from None

    def _ioctl(self, request: int, arg: int | bytes, what: str) -> None:
        try:
            fcntl.ioctl(self._fd, request, arg)
        except OSError as exc:
            raise _error(exc, what) from None

    def close(self) -> None:
        """Close the file. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LinuxEptFile(_KernelFile):
    """``/dev/rpmsgN`` opened: one message per read and per write (closing it makes
    the kernel destroy a non-default endpoint).

    Send space: ``rpmsg_char`` reports ``POLLOUT`` only when the rpmsg backend polls
    for it, and Linux's ``virtio_rpmsg_bus`` does not (6.1 and 6.12 have no ``poll``
    endpoint op): its ``/dev/rpmsgN`` is never writable to ``poll()``, full ring or not.
    So the file asks once, at open, whether the kernel says ``POLLOUT``
    (:attr:`tx_poll`); where it does, a write that would wait sleeps until it does,
    and where it does not, the write is retried after
    :func:`~amplink.wait.send_retry_delays` (the kernel's own blocking write is
    not used: it cannot be bounded by a timeout, and the descriptor is shared with
    readers)."""

    def __init__(self, path: str, *, nonblocking: bool = False) -> None:
        super().__init__(path, os.O_NONBLOCK)
        self._nonblocking = nonblocking
        self._tx_poll = bool(self.poll() & select.POLLOUT)

    def __repr__(self) -> str:
        return f"<LinuxEptFile {self.path}>"

    @property
    def nonblocking(self) -> bool:
        """Whether :meth:`read` and :meth:`write` raise ``EAGAIN`` instead of waiting."""
        return self._nonblocking

    @nonblocking.setter
    def nonblocking(self, value: bool) -> None:
        self._nonblocking = value

    def fileno(self) -> int:
        """The file's descriptor: readable when a message is queued."""
        return self._fd

    @property
    def tx_poll(self) -> bool:
        """Whether the kernel reports send space to ``poll()`` (``POLLOUT``) for this
        file: False over ``virtio_rpmsg_bus``."""
        return self._tx_poll

    def writer_fileno(self) -> int | None:
        """The descriptor, if the kernel makes it writable when a send would not wait
        (:attr:`tx_poll`); None if it does not (then retry a send that would wait, as
        :meth:`write` and :class:`~amplink.rpmsg.aio.AsyncEndpoint` do)."""
        return self._fd if self._tx_poll else None

    def poll(self, timeout: float = 0) -> int:
        """What ``poll(2)`` reports: POLLIN, POLLOUT (only where :attr:`tx_poll`),
        POLLPRI, POLLERR."""
        p = select.poll()
        p.register(self._fd, select.POLLIN | select.POLLOUT | select.POLLPRI)
        events = p.poll(int(timeout * 1000))
        return events[0][1] if events else 0

    def _io(
        self, op: Callable[[], _T], event: int, what: str, busy: str, timeout: float | None
    ) -> _T:
        """Run ``op`` until it does not would-block: ``EAGAIN`` (saying ``busy``) when
        non-blocking, else wait for ``event`` or, for a send the kernel cannot
        announce, retry after a delay; ``ETIMEDOUT`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        retry = event == select.POLLOUT and not self._tx_poll
        delays = send_retry_delays()
        p = select.poll()
        p.register(self._fd, select.POLLERR if retry else event)  # POLLERR: endpoint gone
        while True:
            try:
                return op()
            except BlockingIOError:
                if self._nonblocking:
                    raise RpmsgError(errno.EAGAIN, busy) from None
            except OSError as exc:
                raise _error(exc, f"{what} {self.path}") from None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise RpmsgError(errno.ETIMEDOUT, f"{self.path}: {busy} within {timeout}s")
            wait = next(delays) if retry else left
            if left is not None and wait is not None:
                wait = min(wait, left)
            p.poll(-1 if wait is None else wait * 1000)

    def read(self, timeout: float | None = None) -> bytes:
        """The next message: ``EAGAIN`` if none and non-blocking, ``ETIMEDOUT`` after
        ``timeout`` s, ``EPIPE`` once the endpoint is gone."""
        op = lambda: os.read(self._fd, MAX_MESSAGE)  # noqa: E731
        return self._io(op, select.POLLIN, "read", "no message queued", timeout)

    def write(self, data: bytes, timeout: float | None = None) -> int:
        """Send ``data`` as one message; ``EMSGSIZE`` above the MTU, ``EAGAIN`` when
        non-blocking and no send buffer is free, ``EPIPE`` once the endpoint is gone."""
        op = lambda: os.write(self._fd, data)  # noqa: E731
        return self._io(op, select.POLLOUT, "write", "no free send buffer", timeout)

    def get_outgoing_flowcontrol(self) -> int:
        """``RPMSG_GET_OUTGOING_FLOWCONTROL``: 1 if the remote asked us to pause."""
        buf = bytearray(4)
        try:
            fcntl.ioctl(self._fd, RPMSG_GET_OUTGOING_FLOWCONTROL, buf)
        except OSError as exc:
            raise _error(exc, "RPMSG_GET_OUTGOING_FLOWCONTROL") from None
        return int.from_bytes(buf, "little")

    def set_incoming_flowcontrol(self, value: int) -> None:
        """``RPMSG_SET_INCOMING_FLOWCONTROL`` (``EOPNOTSUPP`` over virtio)."""
        self._ioctl(RPMSG_SET_INCOMING_FLOWCONTROL, value, "RPMSG_SET_INCOMING_FLOWCONTROL")

    def destroy(self) -> None:
        """``RPMSG_DESTROY_EPT_IOCTL``: remove this endpoint device (``EINVAL`` for a
        channel's default endpoint), then close."""
        self._ioctl(RPMSG_DESTROY_EPT_IOCTL, 0, "RPMSG_DESTROY_EPT_IOCTL")
        self.close()


class LinuxCtrl(_KernelFile):
    """``/dev/rpmsg_ctrlN``: endpoint devices and channels on demand."""

    def __init__(self, index: int = 0, *, dev: str = "/dev", sysfs: str = "/sys") -> None:
        path = Path(dev, f"rpmsg_ctrl{index}")
        wait_path(path)
        super().__init__(str(path), 0)
        self._dev = dev
        self._sysfs = sysfs

    def _info_ioctl(self, request: int, what: str, name: str, src: int, dst: int) -> None:
        info = endpoint_info(name, src, dst)
        self._ioctl(request, info, f"{what} {name!r} src {src:#x} dst {dst:#x}")

    def create_ept(
        self,
        name: str,
        src: int = RPMSG_ADDR_ANY,
        dst: int = RPMSG_ADDR_ANY,
        *,
        nonblocking: bool = False,
        timeout: float = NODE_TIMEOUT,
    ) -> LinuxEptFile:
        """``RPMSG_CREATE_EPT_IOCTL``: a new ``/dev/rpmsgN`` bound to (name, src, dst),
        opened (its endpoint is created at open)."""
        before = {d.node for d in ept_devices(self._sysfs)}
        self._info_ioctl(RPMSG_CREATE_EPT_IOCTL, "RPMSG_CREATE_EPT_IOCTL", name, src, dst)
        return open_ept(
            lambda d: d.node not in before and d.name == name,
            f"no endpoint device for {name!r} appeared",
            timeout,
            nonblocking=nonblocking,
            dev=self._dev,
            sysfs=self._sysfs,
        )

    def create_dev(self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY) -> None:
        """``RPMSG_CREATE_DEV_IOCTL``: a local channel, announced to the remote."""
        self._info_ioctl(RPMSG_CREATE_DEV_IOCTL, "RPMSG_CREATE_DEV_IOCTL", name, src, dst)

    def release_dev(self, name: str, src: int = RPMSG_ADDR_ANY, dst: int = RPMSG_ADDR_ANY) -> None:
        """``RPMSG_RELEASE_DEV_IOCTL``: withdraw a local channel (the remote sees the
        name-service destroy)."""
        self._info_ioctl(RPMSG_RELEASE_DEV_IOCTL, "RPMSG_RELEASE_DEV_IOCTL", name, src, dst)


class LinuxRpmsgChar:
    """The endpoint devices ``rpmsg_chrdev`` made for ``rpmsg-raw`` channels."""

    def __init__(self, *, dev: str = "/dev", sysfs: str = "/sys") -> None:
        self._dev = dev
        self._sysfs = sysfs

    def nodes(self, name: str = RAW_SERVICE) -> list[EptDev]:
        """The endpoint devices of channels called ``name``."""
        return [d for d in ept_devices(self._sysfs) if d.name == name]

    def wait_file(self, timeout: float = NODE_TIMEOUT, name: str = RAW_SERVICE) -> LinuxEptFile:
        """Open the first endpoint device of a ``name`` channel (waits for one)."""
        return open_ept(
            lambda d: d.name == name,
            f"no {name} channel",
            timeout,
            dev=self._dev,
            sysfs=self._sysfs,
        )


def open_tty(index: int = 0, *, dev: str = "/dev", timeout: float = NODE_TIMEOUT) -> int:
    """Open ``/dev/ttyRPMSG<index>`` in raw mode; returns the descriptor."""
    path = Path(dev, f"ttyRPMSG{index}")
    wait_path(path, timeout)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _error(exc, f"open {path}") from None
    try:
        tty.setraw(fd, termios.TCSANOW)
    except termios.error as exc:
        os.close(fd)
        raise RpmsgError(errno.ENOTTY, f"{path} is not a terminal: {exc}") from None
    return fd


def open_ept(
    match: Callable[[EptDev], bool],
    what: str,
    timeout: float = NODE_TIMEOUT,
    *,
    nonblocking: bool = False,
    dev: str = "/dev",
    sysfs: str = "/sys",
) -> LinuxEptFile:
    """Open the first endpoint device ``match`` accepts, once it and its node exist;
    ``ETIMEDOUT`` (saying ``what`` did not appear) otherwise."""
    found = wait_until(lambda: [d for d in ept_devices(sysfs) if match(d)], what, timeout)
    path = Path(dev, found[0].node)
    wait_path(path, timeout)
    return LinuxEptFile(str(path), nonblocking=nonblocking)


def _read_attr(path: Path) -> str:
    return path.read_text().strip()
