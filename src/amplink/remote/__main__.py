"""Entry point of a remote core process: ``python -m amplink.remote ...``.

The host starts this with inherited file descriptors: the shared region, the MU's
state, and two interrupt lines (the core's own and the host's).  It maps the region,
brings up its side of the MU (side B, classic hard-IRQ driver: the ISR only wakes the
main loop), parses the resource table the host loaded (trusting nothing in it), brings
up rpmsg over the first entry the drivers of :mod:`amplink.bindings` make rpmsg of (a
GLINK edge at once; an rpmsg vdev in the virtio device role once the host has set
DRIVER_OK) and runs the
firmware program the host loaded into device memory at the boot address (``main(core)``
of a packed Python program, see :mod:`amplink.remoteproc.fwpack`).  It dies with its
parent (:func:`amplink.core_process.die_with_parent`) so that a host crash never
leaves a core process behind.

``kill -USR2 <pid>`` prints every thread's stack to stderr (where a firmware is stuck).

Exit codes: 0 after a requested stop, 2 for bad arguments or an unusable resource
table, 3 when the host never set DRIVER_OK, 1 when the firmware raised (or raised
``SystemExit`` with a message, which goes to the host with the crash, as Python prints
it), the firmware's own status when it raised ``SystemExit`` with one.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from functools import partial

from amplink.bindings import firmware_rpmsg
from amplink.core_process import core_arguments, die_with_parent, pin_to_cpu, write_crash_note
from amplink.errors import AmplinkError
from amplink.hw.core_ctrl import STATUS_REPORTS_UNBOUND, STATUS_UNBOUND
from amplink.hw.soc import core_control
from amplink.irq.line import drain
from amplink.mailbox.mu_path import MU_IRQ, MuKickPath, MuWiring
from amplink.memory.addrmap import AddressMap
from amplink.memory.region import SharedRegion
from amplink.remote import program
from amplink.remote.program import load_program
from amplink.remote.runtime import Core, FirmwarePlatform
from amplink.rpmsg.polled import PolledLink
from amplink.tracing import start_from_environment
from amplink.wire import rsc_table
from amplink.wire.protocol import (
    RP_MBOX_ECHO_REPLY,
    RP_MBOX_ECHO_REQUEST,
    RP_MBOX_READY,
    RP_MBOX_SHUTDOWN,
    Features,
)
from amplink.wire.pyprog import PY_HEADER, decode_source, program_length
from amplink.wire.trace import TraceWriter

EXIT_BAD_SETUP = 2
EXIT_NO_DRIVER_OK = 3
log = logging.getLogger("amplink.remote")


def _parse_args(argv: list[str]) -> argparse.Namespace:
    return core_arguments("python -m amplink.remote", MU_IRQ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("AMPLINK_REMOTE_LOG", "WARNING"),
        format=f"[remote {args.name}] %(levelname)s %(name)s: %(message)s",
    )
    die_with_parent(int(os.environ.get("AMPLINK_PARENT_PID", os.getppid())), EXIT_BAD_SETUP)
    start_from_environment()

    faulthandler.register(signal.SIGUSR2, all_threads=True)
    pinned = pin_to_cpu(args.cpu)
    if pinned is not None:
        log.error("%s", pinned)
        return EXIT_BAD_SETUP
    region = SharedRegion.attach(args.region_fd, f"{args.name}-shm")
    mmio = SharedRegion.attach(args.mmio_fd, f"{args.name}-mmio")
    control = core_control(mmio, args.name)
    wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    notifyids: set[int] = set()
    shutdown_requested = threading.Event()
    core: Core | None = None
    path: MuKickPath | None = None

    def on_kick(word: int) -> None:  # the mailbox ISR: note what came, wake the main loop
        if word == RP_MBOX_SHUTDOWN:
            shutdown_requested.set()
        elif word == RP_MBOX_ECHO_REQUEST and path is not None:
            path.kick(RP_MBOX_ECHO_REPLY)
            return
        elif word >= RP_MBOX_READY:
            return  # other protocol words mean nothing to this core
        elif notifyids and word not in notifyids:
            log.warning("kick with unknown notify id %#x ignored", word)
            return
        os.eventfd_write(wake_fd, 1)

    signal.signal(signal.SIGTERM, lambda *_: core.stop() if core else sys.exit(0))
    try:
        # From here on the path owns both line fds, even if it fails.
        wiring = MuWiring(args.mu, args.mu_tx, args.mu_rx, args.mu_irq, args.mu_irq)
        path = MuKickPath(
            args.name,
            mmio,
            "b",
            args.irq_fd,
            args.peer_irq_fd,
            on_kick,
            threaded=False,
            wiring=wiring,
        )
        amap = AddressMap.identity(region.size)
        kick = path.kick
        try:
            off = amap.translate(args.table_da, args.table_len)
            table = rsc_table.parse(region.mem[off : off + args.table_len])
            features = Features.of(table)
            trace = _trace_writer(region, amap, table)
            up = firmware_rpmsg(args.name, region, amap, off, table, kick, not args.no_spin)
            notifyids.update(up.notifyids)
        except AmplinkError as exc:
            log.error("unusable resource table: %s", exc)
            return EXIT_BAD_SETUP

        def make_link(deadline: float | None) -> PolledLink | None:
            """Wait for the host to bring its side up (until ``deadline``, or until
            stopped), then bring up the firmware's side of rpmsg.  Core control says
            UNBOUND meanwhile: a host attaching again waits for it before it lays out
            fresh rings, so that none are laid under a core still using the old ones."""
            control.set_status(STATUS_UNBOUND | STATUS_REPORTS_UNBOUND)
            while not up.ready():
                if deadline is not None and time.monotonic() > deadline:
                    return None
                if core is not None and core.stopping:
                    return None
                _wait_readable(wake_fd, 0.05)
            link = up.probe()
            control.set_status(clear_bits=STATUS_UNBOUND)
            notifyids.clear()
            notifyids.update(up.notifyids)
            return link

        try:
            link = make_link(time.monotonic() + args.boot_timeout)
        except AmplinkError as exc:
            log.error("cannot bring rpmsg up: %s", exc)
            return EXIT_BAD_SETUP
        if link is None:
            log.error("the host did not set DRIVER_OK within %ss", args.boot_timeout)
            return EXIT_NO_DRIVER_OK
        assert path.controller is not None

        def relink() -> tuple[PolledLink, list[int]] | None:
            new = make_link(None)
            return None if new is None else (new, [wake_fd])

        hw = FirmwarePlatform(
            relink,
            control=control,
            send_word=kick,
            disable_rx=path.stop_receiving,
            shutdown_requested=shutdown_requested,
            trace=trace,
            watchdog_ms=features.watchdog_ms,
            take_notifications=partial(path.domain.take_while_waiting, args.mu_irq),
        )
        core = Core(args.name, link, [wake_fd], hw, mailbox=path.controller.dev)
        try:
            firmware = load_program(read_program(region, amap, args.boot_addr), args.firmware)
            firmware(core)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                raise  # the firmware chose its exit status
            text = f"{exc.code}\n"  # SystemExit("text"): Python prints it and exits 1
            if not write_crash_note(text):
                sys.stderr.write(text)
            return 1
        except BaseException as exc:  # (KeyboardInterrupt too: a terminal's goes to the host)
            if not write_crash_note(firmware_traceback(exc)):  # the host shows it, once
                log.exception("firmware %s crashed", args.firmware)
            return 1
        return 0
    finally:
        if core is not None:
            core.close()
        if path is not None:
            path.close()
        os.close(wake_fd)
        mmio.close()
        region.close()


_LOADER_FILES = frozenset(
    os.path.normcase(os.path.abspath(m.__file__ or "")) for m in (sys.modules[__name__], program)
)


def firmware_traceback(exc: BaseException) -> str:
    """The traceback of what a firmware raised, from its own first frame: the loader's
    frames before it (this module's ``main``, :func:`load_program`) are left out, as
    Python leaves out runpy's; every exception of the chain is shown, each trimmed so.
    An exception that cannot be trimmed or formatted (a ``__traceback__`` or ``__str__``
    that raises) is shown as far as Python's own formatting manages, else by its type."""
    with contextlib.suppress(BaseException):  # the firmware's exception misbehaves
        return _trimmed_traceback(exc)  # (a property of it may raise anything)
    with contextlib.suppress(BaseException):
        return "".join(traceback.format_exception(exc))
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__} (its traceback could not be formatted)\n"


def _trimmed_traceback(exc: BaseException) -> str:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None and _is_loader(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        if tb is not None:  # all of it the loader's: a fault of amplink's, shown whole
            e.__traceback__ = tb
        todo += [e.__cause__, e.__context__]
    return "".join(traceback.format_exception(exc))


def _is_loader(filename: str) -> bool:
    return os.path.normcase(os.path.abspath(filename)) in _LOADER_FILES


def read_program(region: SharedRegion, amap: AddressMap, entry: int) -> str:
    """The Python source the host loaded at ``entry`` (what this core executes)."""
    off = amap.translate(entry, PY_HEADER.size)
    length = program_length(bytes(region.mem[off : off + PY_HEADER.size]))
    start = amap.translate(entry + PY_HEADER.size, length)
    return decode_source(bytes(region.mem[start : start + length]))


def _trace_writer(
    region: SharedRegion, amap: AddressMap, table: rsc_table.ResourceTable
) -> TraceWriter | None:
    """A writer for the table's first trace buffer (``trace0``), if it has one."""
    traces = table.traces()
    if not traces:
        return None
    off = amap.translate(traces[0].da, traces[0].len)
    return TraceWriter(region.view(off, traces[0].len))


def _wait_readable(fd: int, timeout: float) -> None:
    p = select.poll()
    p.register(fd, select.POLLIN)
    if p.poll(int(timeout * 1000)):
        drain(fd)


if __name__ == "__main__":
    sys.exit(main())
