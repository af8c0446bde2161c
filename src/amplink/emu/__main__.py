"""Entry point of an emulated core process: ``python -m amplink.emu ... --soc JSON``.

The host's platform driver (:mod:`amplink.remoteproc.emulated`) starts this
with the arguments every core process gets (:func:`amplink.core_process.core_arguments`)
and the core's description.  It maps the device memory windows of the shared region
into the emulated address space, puts the MU's side B at its address, wires the MU's
output to the NVIC line the description names (``mu_irq``: the host sets it from the
wiring's ``core_irq``; ``--mu-irq`` is not read here), resets the CPU from its vector
table and runs it.  It dies with its parent.

Signals: SIGUSR1 halts the core (a debug halt: the registers go to the CPU-state
block; the host does this before every reset, for core dumps), SIGTERM stops it.

Exit codes: 0 after a requested stop, 2 for a description or memory it cannot use,
4 when the core faulted (the fault is in the CPU-state block).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

from amplink.core_process import core_arguments, die_with_parent, pin_to_cpu
from amplink.emu.cpu import CortexM, host_address
from amplink.emu.peripherals import MuPeripheral
from amplink.emu.soc import CortexMSoc
from amplink.emu.waker import Waker
from amplink.errors import AmplinkError
from amplink.hw.imx_mu import ImxMu
from amplink.hw.soc import core_control, cpu_state_block, mu_words
from amplink.irq.line import IrqWire
from amplink.memory.region import SharedRegion
from amplink.tracing import start_from_environment

EXIT_BAD_SETUP = 2
EXIT_FAULT = 4
log = logging.getLogger("amplink.emu")


def main(argv: list[str] | None = None) -> int:
    parser = core_arguments("python -m amplink.emu", 0)
    parser.add_argument("--soc", required=True, help="the core's description (JSON)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("AMPLINK_REMOTE_LOG", "WARNING"),
        format=f"[emu {args.name}] %(levelname)s %(name)s: %(message)s",
    )
    die_with_parent(int(os.environ.get("AMPLINK_PARENT_PID", os.getppid())), EXIT_BAD_SETUP)
    start_from_environment()
    pinned = pin_to_cpu(args.cpu)
    if pinned is not None:
        log.error("%s", pinned)
        return EXIT_BAD_SETUP
    try:
        soc = CortexMSoc.from_json(args.soc)
    except AmplinkError as exc:
        log.error("%s", exc.strerror)
        return EXIT_BAD_SETUP
    region = SharedRegion.attach(args.region_fd, f"{args.name}-shm")
    mmio = SharedRegion.attach(args.mmio_fd, f"{args.name}-mmio")
    releases: list[Callable[[], None]] = []
    cpu: CortexM | None = None
    waker: Waker | None = None
    try:
        if region.size < soc.region_size():
            log.error("device memory has %#x bytes; the windows need %#x", region.size,
                      soc.region_size())  # fmt: skip
            return EXIT_BAD_SETUP
        memory = []
        for m in soc.layout():
            address, release = host_address(region.view(m.offset, m.size))
            releases.append(release)
            memory.append((m.da, m.size, address))
        mu = ImxMu(args.mu, mu_words(mmio), wire_a=IrqWire(args.peer_irq_fd),
                   wire_b=IrqWire(args.irq_fd))  # fmt: skip
        cpu = CortexM(
            soc,
            memory,
            [MuPeripheral(mu.b, soc.mu_base)],
            control=core_control(mmio, args.name),
            state=cpu_state_block(mmio),
        )
        cpu.scs.lines[soc.mu_irq] = mu.b.irq_active
        signal_r, signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        releases.append(lambda: _close_signal_pipe(signal_r, signal_w))
        signal.set_wakeup_fd(signal_w, warn_on_full_buffer=False)
        for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # the waker acts on the wake-up fd
        waker = Waker(cpu, [args.irq_fd], signal_r)
        if soc.gdb_port is not None:
            from amplink.emu.gdbstub import GdbServer  # noqa: PLC0415 (only with a port)

            server = GdbServer(cpu, soc.gdb_port, hold=soc.gdb_wait)
            releases.append(server.close)
        waker.start()
        stop = cpu.run()
        if stop.faulted:
            log.error("the core faulted: %s", stop.describe())
            return EXIT_FAULT
        return 0
    finally:
        if waker is not None:
            waker.stop()
        if cpu is not None:
            cpu.close()
        for release in reversed(releases):
            release()
        mmio.close()
        region.close()


def _close_signal_pipe(read_fd: int, write_fd: int) -> None:
    signal.set_wakeup_fd(-1)
    os.close(read_fd)
    os.close(write_fd)


if __name__ == "__main__":
    sys.exit(main())
