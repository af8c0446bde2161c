"""``amplink openamp host|remote``: amplink against OpenAMP linux-machine applications.

* ``host``: amplink is the host (virtio driver) of an OpenAMP remote application: it
  starts the given command as the remote (or meets one started elsewhere), waits for
  its ``rpmsg-openamp-demo-channel``, echoes one message of every size from 1 to 496
  bytes, compares every byte, says goodbye as OpenAMP's hosts do (a name-service
  destroy, on which OpenAMP's demo remotes exit) and prints a summary.  With ``--keep``
  it keeps the link up instead (:class:`KeptLink`): it prints the channels as they come
  and go and every message that arrives on them, and sends what is typed.
* ``remote``: a firmware program (ELF image, ``.py`` or module) is served as the
  remote (virtio device) to OpenAMP host applications.

``cli.py`` only registers these (:func:`register`).
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import statistics
import sys
import threading
import time
from typing import Any

from amplink.errors import AmplinkError
from amplink.host import OpenAmpRemote
from amplink.remote.served import until_signal
from amplink.remoteproc.fwref import resolve
from amplink.rpmsg.core import RpmsgDevice, RpmsgDriver, RpmsgLink, announce
from amplink.wire import openamp_linux as ol

SERVICE = "rpmsg-openamp-demo-channel"
MAX_PAYLOAD = ol.RPMSG_BUFFER_SIZE - 16
PEER_END_TIMEOUT = 5.0  # s a remote gets to end after the goodbye


def echo_payload(size: int) -> bytes:
    """The check's payload of ``size`` bytes: consecutive byte values from ``size`` on,
    so the first word is never OpenAMP's shutdown word (``0xEF56A55A``)."""
    return bytes((size + k) % 251 for k in range(size))


def goodbye(link: RpmsgLink, rpdev: RpmsgDevice, addr: int) -> None:
    """Withdraw the host endpoint ``addr`` of channel ``rpdev`` as OpenAMP's hosts do (a
    name-service destroy), on which OpenAMP's demo remotes exit."""
    announce(link, rpdev.name, addr, destroy=True)


class _CommandTail(argparse.ArgumentParser):
    """A subcommand parser for which everything after ``--`` is the peer's command line,
    wherever the options are (argparse alone loses a trailing positional that follows
    options: ``remote FIRMWARE --client -- COMMAND``)."""

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        head = list(sys.argv[1:] if args is None else args)
        tail: list[str] = []
        if "--" in head:
            cut = head.index("--")
            head, tail = head[:cut], head[cut + 1 :]
        ns, extras = super().parse_known_args(head, namespace)
        ns.peer_command = tail
        return ns, extras


def _roles(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--server", dest="server", action="store_true", default=default == "server",
        help="amplink listens on the socket and writes the resource table (OpenAMP's "
        f"proc 0){' (default)' if default == 'server' else ''}",
    )  # fmt: skip
    g.add_argument(
        "--client", dest="server", action="store_false",
        help="amplink connects to the peer's socket (OpenAMP's proc 1)"
        f"{' (default)' if default == 'client' else ''}",
    )  # fmt: skip
    p.add_argument(
        "--shm",
        metavar="NAME",
        help=f"the shared-memory object (default {ol.SHM_NAME}; a private one for a started "
        "command)",
    )
    p.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the kick socket (default {ol.SOCKET_PATH}; a private one for a started command)",
    )
    p.add_argument(
        "--no-isolate",
        action="store_true",
        help="run COMMAND as it is (it must use --shm and --socket), not in a private mount "
        "namespace where its hard-coded names are amplink's",
    )


def register(sub: Any) -> None:
    """Add ``amplink openamp`` and its subcommands to the ``amplink`` parser."""
    op = sub.add_parser(
        "openamp",
        help="meet OpenAMP linux-machine applications (their demos, your own), in either role",
        description="amplink as the host or the remote of OpenAMP applications built for "
        "OpenAMP's linux machine (shared memory openamp.shm, kicks on a UNIX socket).",
    )
    osub = op.add_subparsers(
        dest="openamp_command", required=True, metavar="COMMAND", parser_class=_CommandTail
    )
    h = osub.add_parser(
        "host",
        usage="amplink openamp host [options] [-- COMMAND...]",
        help="be the host of an OpenAMP remote and run the echo check",
        description="Start COMMAND as the OpenAMP remote (or meet one already running), wait "
        f"for its {SERVICE} channel, echo one message of every size from 1 to "
        f"{MAX_PAYLOAD} bytes comparing every byte, and exit 0 only if all came back. "
        "With --keep, keep the link up instead: print the channels and what arrives on "
        "them, and send each line typed (to the first channel, or 'NAME: text' to channel "
        "NAME) until Ctrl-C. Example: amplink openamp host -- rpmsg-echo-shared",
    )
    _roles(h, "client")
    h.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the remote (30)"
    )
    h.add_argument(
        "--keep",
        action="store_true",
        help="keep the link up until Ctrl-C: print channels and messages, send typed lines",
    )
    h.set_defaults(func=cmd_host)
    r = osub.add_parser(
        "remote",
        usage="amplink openamp remote FIRMWARE [options] [-- COMMAND...]",
        help="serve a firmware as the remote of OpenAMP host applications",
        description="Serve FIRMWARE as the rpmsg remote (virtio device) of the OpenAMP hosts "
        "that connect, one at a time, each in a session process of its own, until Ctrl-C; "
        "with COMMAND, start it as the host and exit when it ends, with its status. "
        "Example: amplink openamp remote amplink.firmware.echo -- rpmsg-echo-ping-shared 1",
    )
    r.add_argument("firmware", help="an ELF image (amplink fw pack), a .py file or a module")
    _roles(r, "server")
    r.add_argument("--once", action="store_true", help="exit 0 when the first host leaves")
    r.add_argument("--no-spin", action="store_true", help="never busy-poll the host's rings")
    r.set_defaults(func=cmd_remote)


def _remote(args: argparse.Namespace) -> OpenAmpRemote:
    return OpenAmpRemote(
        server=args.server,
        shm=args.shm,
        socket_path=args.socket,
        command=args.peer_command or None,
        isolate=not args.no_isolate,
    )


def cmd_host(args: argparse.Namespace) -> int:
    """``amplink openamp host``."""
    rp = _remote(args)
    try:
        rp.start(args.timeout)
        if args.keep:
            return KeptLink(rp, args.timeout).run()
        return _echo_check(rp, args)
    except OSError:
        if rp.peer is not None and rp.peer.proc is not None:
            print(rp.peer.describe(), file=sys.stderr)
        raise
    finally:
        rp.stop()


def _echo_check(rp: OpenAmpRemote, args: argparse.Namespace) -> int:
    link = rp.link
    assert link is not None
    rpdev = rp.wait_channel(SERVICE, args.timeout)
    ept = rpdev.create_ept()
    print(f"channel {SERVICE} from address {rpdev.dst}: echoing 1..{link.mtu} bytes")
    rtts = []
    for size in range(1, link.mtu + 1):
        data = echo_payload(size)
        t0 = time.perf_counter()
        ept.send(data)
        got = ept.recv(timeout=args.timeout).data
        rtts.append(time.perf_counter() - t0)
        if got != data:
            where = next(
                (i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b),
                min(len(got), len(data)),
            )
            raise AmplinkError(
                errno.EBADMSG,
                f"echo of {size} bytes came back as {len(got)} bytes, first difference "
                f"at byte {where}",
            )
    goodbye(link, rpdev, ept.addr)
    rp.shutdown(PEER_END_TIMEOUT)
    status = rp.peer.returncode if rp.peer is not None else None
    us = sorted(r * 1e6 for r in rtts)
    print(
        f"echo check passed: {len(rtts)} messages of 1..{link.mtu} bytes, every byte "
        f"compared; round trip p50 {statistics.median(us):.1f} us, max {us[-1]:.1f} us"
    )
    if rp.peer is not None:
        print(f"remote {' '.join(args.peer_command)}: " + _status(status))
    return 0


class KeptLink:
    """``--keep``: the link of ``rp`` kept up until Ctrl-C (or SIGTERM) or until the
    remote leaves.  Every channel the remote announces gets a host endpoint (a driver
    that matches every name); what arrives on it is printed, as text when it is UTF-8;
    each line read from standard input is sent to the first channel still there, or to
    channel ``NAME`` when it reads ``NAME: text``.  On the way out each channel gets the
    goodbye OpenAMP's hosts send, and the remote up to ``PEER_END_TIMEOUT`` s to end.
    Exit status 130 after Ctrl-C (143 after SIGTERM), 1 when the remote left."""

    def __init__(self, rp: OpenAmpRemote, timeout: float) -> None:
        self.rp = rp
        self.timeout = timeout
        self.channels: dict[str, RpmsgDevice] = {}
        self._lock = threading.Lock()
        self._quit = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._driver = _EveryChannel(self)

    def run(self) -> int:
        """Serve until Ctrl-C, SIGTERM or the remote's end; the exit status."""
        link = self.rp.link
        assert link is not None
        link.fail_listeners.append(lambda _err: os.eventfd_write(self._quit, 1))
        self.rp.bus.register_driver(self._driver)
        peer = f" {' '.join(self.rp.command)}" if self.rp.command else ""
        print(f"OpenAMP remote{peer} is up; type lines to send them, Ctrl-C stops", flush=True)
        try:
            return until_signal(lambda: os.eventfd_write(self._quit, 1), self._serve)
        finally:
            said_goodbye = self._leave(link)
            self.rp.bus.unregister_driver(self._driver)
            os.close(self._quit)
            if said_goodbye:  # on which OpenAMP's demos end
                self.rp.shutdown(PEER_END_TIMEOUT)
            else:
                self.rp.stop()
            if self.rp.peer is not None:
                print(f"remote {' '.join(self.rp.peer.argv)}: {_status(self.rp.peer.returncode)}")

    def _serve(self) -> int:
        stdin = sys.stdin.fileno()
        poller = select.poll()
        poller.register(self._quit, select.POLLIN)
        poller.register(stdin, select.POLLIN)
        pending = b""
        while True:
            ready = {fd for fd, _ev in poller.poll()}
            if self._quit in ready:
                failure = self.rp.link.failure if self.rp.link is not None else self.rp.failure
                if failure is None:
                    return 0
                print(f"the remote left: {failure.strerror}", flush=True)
                return 1
            data = os.read(stdin, 4096)
            if not data:  # standard input ended: serve on until Ctrl-C
                poller.unregister(stdin)
                continue
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                self._send(line.decode(errors="replace"))

    def _send(self, line: str) -> None:
        name, sep, text = line.partition(": ")
        with self._lock:
            rpdev = self.channels.get(name) if sep else None
            if rpdev is None:
                text = line
                rpdev = next(iter(self.channels.values()), None)
        if rpdev is None or rpdev.ept is None:
            print("no channel to send to yet", file=sys.stderr, flush=True)
            return
        try:
            rpdev.ept.send(text.encode(), timeout=self.timeout)
        except OSError as exc:
            print(f"{rpdev.name}: send failed: {exc.strerror}", file=sys.stderr, flush=True)

    def announced(self, rpdev: RpmsgDevice) -> None:
        """A channel came (the driver's probe): print it; it may be sent to."""
        with self._lock:
            self.channels.setdefault(rpdev.name, rpdev)
        print(f"channel {rpdev.name} from address {rpdev.dst}", flush=True)

    def withdrawn(self, rpdev: RpmsgDevice) -> None:
        """A channel went (the driver's remove): print it."""
        with self._lock:
            if self.channels.get(rpdev.name) is rpdev:
                del self.channels[rpdev.name]
        print(f"channel {rpdev.name} withdrawn", flush=True)

    def received(self, rpdev: RpmsgDevice, data: bytes, src: int) -> None:
        """A message on a channel's endpoint: print it (text if UTF-8, else hex)."""
        try:
            shown = data.decode()
        except UnicodeDecodeError:
            shown = data.hex(" ")
        print(f"{rpdev.name} <- {src}: {shown}", flush=True)

    def _leave(self, link: RpmsgLink) -> bool:
        """The goodbye on every channel still there; False if there was none."""
        with self._lock:
            channels = list(self.channels.values())
        said = False
        for rpdev in channels:
            if rpdev.ept is not None and link.failure is None:
                try:
                    goodbye(link, rpdev, rpdev.ept.addr)
                except OSError:
                    break  # the remote is going anyway
                said = True
        return said


class _EveryChannel(RpmsgDriver):
    """A driver for every channel name, reporting to a :class:`KeptLink`."""

    def __init__(self, kept: KeptLink) -> None:
        super().__init__(
            "amplink-openamp-keep",
            probe=kept.announced,
            remove=kept.withdrawn,
            callback=kept.received,
        )

    def matches(self, rpdev: RpmsgDevice) -> bool:
        return True


def _status(status: int | None) -> str:
    if status is None:
        return "still running, stopped by amplink"
    return "exited with 0" if status == 0 else f"exited with {status}"


def cmd_remote(args: argparse.Namespace) -> int:
    """``amplink openamp remote``."""
    from amplink.remote.openamp import OpenAmpHostDevice, serve_openamp  # noqa: PLC0415

    device = OpenAmpHostDevice(
        resolve(args.firmware).program(),
        server=args.server,
        shm=args.shm,
        socket_path=args.socket,
        command=args.peer_command or None,
        isolate=not args.no_isolate,
        once=args.once,
        spin=not args.no_spin,
    )

    def ready(dev: OpenAmpHostDevice) -> None:
        role = "listening on" if dev.server else "connecting to"
        print(
            f"serving {args.firmware} to OpenAMP hosts: {role} {dev.socket_path}, shared "
            f"memory {dev.shm_name}" + ("" if args.peer_command else " (Ctrl-C stops)"),
            flush=True,
        )

    rc = serve_openamp(device, ready)
    peer = device.peer
    if peer is None:
        return rc
    status = peer.wait(5.0)
    print(peer.output(), end="")
    print(f"host {' '.join(args.peer_command)}: {_status(status)}")
    return rc or (0 if status == 0 else 1)
