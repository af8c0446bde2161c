"""``amplink bench``: amplink's message path against a baseline measured in the same run.

Per transport (``multiprocessing.Pipe``, then rpmsg over each backend: virtio, GLINK,
and virtio with spinning off), between two real processes:

* round-trip latency: a 64-byte message to an echo peer and back, ``--rounds`` times
  after a warm-up, reported as p50 and p99;
* one-way throughput: ``--messages`` messages of 496 bytes (the rpmsg MTU) to a sink
  that counts them; the clock stops when the sink's count comes back; and the same at
  the largest message each rpmsg backend carries (virtio 496 B, GLINK 64 KiB).

The baseline is ``multiprocessing.Pipe`` (``send_bytes``/``recv_bytes``, no pickling)
with the same placement.  With two or more CPUs the host side is pinned to the first
allowed CPU and the peer to another; ``--no-pin`` lets the scheduler place both.
``--load N`` runs N CPU-bound processes (unpinned) for the whole measurement, as a busy
machine would.  Every figure is taken ``--repeat`` times, the transports in a rotating
order; the report gives medians, and each ratio to the Pipe is computed within one
repetition (amplink and the Pipe measured moments apart), then its median and its
range over the repetitions are given.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from amplink.app import signals
from amplink.app.bench import emulated as bench_emulated
from amplink.app.bench import lifecycle as bench_lifecycle
from amplink.app.bench import linux as bench_linux
from amplink.app.bench import mailbox as bench_mailbox
from amplink.app.bench import openamp as bench_openamp
from amplink.app.bench.switches import context_switches
from amplink.app.stats import latency_summary_us
from amplink.firmware import bench as fw
from amplink.host import Rproc, RprocConfig
from amplink.hw import imx_mu
from amplink.irq import held_signals
from amplink.remoteproc.layout import glink_rsc_table
from amplink.rpmsg import glink_ends
from amplink.rpmsg.core import Endpoint
from amplink.rpmsg.polled import PolledLink
from amplink.virtio import rings
from amplink.wording import counted

RTT_SIZE = 64
THROUGHPUT_SIZE = 496
WARMUP = 1000
EMULATED_ROUNDS = 2000  # an emulated core answers in ~0.1-1 ms: fewer rounds
EMULATED_MESSAGES = 5000
PIPE = "multiprocessing.Pipe"
VIRTIO = "amplink rpmsg virtio"
GLINK = "amplink rpmsg glink"
SPIN_OFF = "amplink rpmsg virtio, spin off"
TRANSPORTS = (PIPE, VIRTIO, GLINK, SPIN_OFF)
MAILBOX = "amplink mailbox (MU+IRQ)"  # keys of the report's ratios besides TRANSPORTS
ZERO_COPY = "zero-copy send"
Progress = Callable[[str], None]  # told what is measured next, in a few words


def _quiet(_what: str) -> None:
    pass


@dataclass
class Result:
    """One transport's figures: round trip and throughput."""

    name: str
    rtt_p50_us: float
    rtt_p99_us: float
    msgs_per_s: float
    mb_per_s: float
    wakeups_per_rt: float = 0.0  # voluntary context switches, both processes
    preempted_per_rt: float = 0.0  # involuntary ones


@dataclass
class Placement:
    """Which CPU the host and the peer are pinned to (None: not pinned)."""

    host_cpu: int | None
    peer_cpu: int | None

    @property
    def pinned(self) -> bool:
        """True when the host and the peer each have a CPU of their own."""
        return self.host_cpu is not None


def choose_placement(pin: bool) -> Placement:
    """Where the host and the peer run: on two different CPUs when ``pin`` and the machine has
    two."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Placement(None, None)
    return Placement(cpus[0], cpus[1])


MAX_LOAD = 64  # --load's limit: enough to swamp any desk machine, not to fork-bomb it

# A load process: CPU-bound until killed, and killed by the kernel if the bench dies
# first (PR_SET_PDEATHSIG; argv[1]: the bench's pid, in case it died before the prctl).
_HOG = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit()\n"
    "while True:\n"
    "    pass\n"
)


@contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` CPU-bound processes (placed by the scheduler) running until the
    block ends; each one started is killed however the block ends (also if a signal
    interrupts the starting), and dies with the bench if that is killed outright."""
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(processes):
            # A process group of its own, as a core's: a terminal's Ctrl-C reaches only
            # the bench, which kills them (no KeyboardInterrupt traceback from each).
            hogs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _HOG, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    process_group=0,
                )
            )
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


# -- baseline: multiprocessing.Pipe ---------------------------------------------------
def bench_pipe(rounds: int, messages: int, placement: Placement) -> Result:
    """The baseline: the same round trips and throughput over a ``multiprocessing.Pipe``."""
    ours, theirs = multiprocessing.Pipe()
    cpu = [] if placement.peer_cpu is None else [str(placement.peer_cpu)]
    peer = subprocess.Popen(
        [sys.executable, "-m", "amplink.app.bench.pipe_peer", str(theirs.fileno()), *cpu],
        stdin=subprocess.DEVNULL,
        pass_fds=(theirs.fileno(),),
        process_group=0,  # a terminal's Ctrl-C reaches only the bench, which ends it
    )
    theirs.close()
    try:
        ours.send_bytes(b"ECHO")
        ours.send_bytes(struct.pack("=Q", rounds + WARMUP))
        payload = bytes(RTT_SIZE)
        samples = []
        pids = (os.getpid(), peer.pid)
        before = context_switches(pids)
        for i in range(rounds + WARMUP):
            if i == WARMUP:
                before = context_switches(pids)
            t = time.perf_counter_ns()
            ours.send_bytes(payload)
            ours.recv_bytes()
            if i >= WARMUP:
                samples.append(time.perf_counter_ns() - t)
        switches = _per_round(before, context_switches(pids), rounds)
        ours.send_bytes(b"SINK")
        ours.send_bytes(struct.pack("=Q", messages))
        payload = bytes(THROUGHPUT_SIZE)
        t0 = time.perf_counter()
        for _ in range(messages):
            ours.send_bytes(payload)
        count, nbytes = struct.unpack("=QQ", ours.recv_bytes())
        elapsed = time.perf_counter() - t0
        ours.send_bytes(b"EXIT")
    finally:
        ours.close()  # an interrupted peer then ends with EOFError
        try:
            peer.wait(5)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
    return _result(PIPE, samples, count, nbytes, elapsed, messages, switches)


# -- amplink --------------------------------------------------------------------------
def _rtt(ept: Endpoint, rounds: int, pids: tuple[int, int]) -> tuple[list[int], Switches]:
    """Round-trip samples (ns) and the context switches per round trip of ``pids``."""
    payload = bytes(RTT_SIZE)
    samples = []
    before = context_switches(pids)
    for i in range(rounds + WARMUP):
        if i == WARMUP:
            before = context_switches(pids)
        t = time.perf_counter_ns()
        ept.send(payload)
        ept.recv(5.0)
        if i >= WARMUP:
            samples.append(time.perf_counter_ns() - t)
    return samples, _per_round(before, context_switches(pids), rounds)


Switches = tuple[float, float]  # (wake-ups, preemptions) per round trip


def _per_round(before: tuple[int, int], after: tuple[int, int], rounds: int) -> Switches:
    return (
        round((after[0] - before[0]) / max(rounds, 1), 2),
        round((after[1] - before[1]) / max(rounds, 1), 2),
    )


def _sink_run(
    sink: Endpoint, messages: int, zero_copy: bool, size: int = THROUGHPUT_SIZE
) -> tuple[int, int, float]:
    """``messages`` of ``size`` bytes to the sink, copied in by ``send`` or written in
    place."""
    payload = bytes(size)
    t0 = time.perf_counter()
    if zero_copy:
        for _ in range(messages):
            buf = sink.get_tx_buffer()
            buf.data[:size] = payload
            buf.send(size)
    else:
        for _ in range(messages):
            sink.send(payload)
    sink.send(fw.DONE)
    count, nbytes = fw.COUNTS.unpack(sink.recv(30.0).data)
    return count, nbytes, time.perf_counter() - t0


@dataclass
class Largest:
    """Throughput at the largest message a backend carries."""

    name: str
    size: int
    msgs_per_s: float
    mb_per_s: float


@dataclass
class Spinning:
    """What the host's adaptive spinning did during one transport's measurements
    (:class:`amplink.wait.AdaptiveSpin`'s counters): ``starving`` counts the misses at
    which the peer waited for the spinner's CPU (each also counts in ``preempted``)."""

    name: str
    hits: int
    misses: int
    preempted: int
    starving: int


@dataclass
class Repetition:
    """Everything measured once: per transport, and the virtio extras (filled in as
    they are measured: an interrupted repetition holds what was)."""

    results: dict[str, Result] = field(default_factory=dict)
    largest: list[Largest] = field(default_factory=list)
    zero_copy: float = 0.0
    mailbox: bench_mailbox.MboxRtt | None = None
    spinning: list[Spinning] = field(default_factory=list)


class Interrupted(BaseException):
    """The bench was interrupted (by ``signal``: a KeyboardInterrupt or
    :class:`amplink.app.signals.Interrupted`); :attr:`report` holds what was measured
    before, as :func:`run` reports it, with ``"interrupted": true``."""

    def __init__(self, report: dict[str, Any], signal: BaseException) -> None:
        super().__init__(*signal.args)
        self.report = report
        self.signal = signal


def bench_rpmsg(
    name: str, rounds: int, messages: int, placement: Placement
) -> tuple[Result, Largest | None, float | None, bench_mailbox.MboxRtt | None, Spinning]:
    """One rpmsg transport: round trips and throughput; virtio adds zero copy and the
    mailbox round trip (measured after rpmsg, on the same core)."""
    table = glink_rsc_table() if name == GLINK else None
    config = RprocConfig(cpu=placement.peer_cpu, spin=False if name == SPIN_OFF else None)
    largest = zero_copy = mbox = None
    with Rproc("bench-rpmsg", "amplink.firmware.bench", config=config, table=table) as rp:
        echo = rp.wait_channel(fw.ECHO).create_ept()
        sink = rp.wait_channel(fw.SINK).create_ept()
        samples, switches = _rtt(echo, rounds, (os.getpid(), rp.pid or 0))
        count, nbytes, elapsed = _sink_run(sink, messages, zero_copy=False)
        result = _result(name, samples, count, nbytes, elapsed, messages, switches)
        if name != SPIN_OFF:
            mtu = sink.get_mtu()
            few = max(messages * THROUGHPUT_SIZE // mtu // 4, 10)
            count, nbytes, elapsed = _sink_run(sink, few, zero_copy=False, size=mtu)
            big = _result(name, [0], count, nbytes, elapsed, few)
            largest = Largest(name, mtu, big.msgs_per_s, big.mb_per_s)
        if name == VIRTIO:
            zc_count, _, zc_elapsed = _sink_run(sink, messages, zero_copy=True)
            if zc_count != messages:
                raise RuntimeError(f"zero copy: the sink counted {zc_count} of {messages}")
            zero_copy = round(messages / zc_elapsed)
            mbox = bench_mailbox.bench_mbox_rtt(rp, rounds)
        link = echo.link
        spin = link.spin if isinstance(link, PolledLink) else None
        spinning = Spinning(
            name,
            *((spin.hits, spin.misses, spin.preempted, spin.starving) if spin else (0, 0, 0, 0)),
        )
    return result, largest, zero_copy, mbox, spinning


def _nth(progress: Progress, n: int, of: int) -> Progress:
    """``progress`` with the repetition's number appended."""
    return lambda what: progress(f"{what} ({n} of {of})")


def bench_repetition(
    rounds: int,
    messages: int,
    placement: Placement,
    turn: int,
    progress: Progress = _quiet,
    rep: Repetition | None = None,
) -> Repetition:
    """Every transport once, starting at ``turn`` in the rotation (the Pipe first),
    into ``rep`` (a new one if None) as each is measured; ``progress`` is told which."""
    rep = Repetition() if rep is None else rep
    progress(f"round trips and throughput over {PIPE}")
    rep.results[PIPE] = bench_pipe(rounds, messages, placement)
    ours = TRANSPORTS[1:]
    for name in ours[turn % len(ours) :] + ours[: turn % len(ours)]:
        progress(f"round trips and throughput over {name}")
        result, big, zc, mb, spun = bench_rpmsg(name, rounds, messages, placement)
        rep.results[name] = result
        rep.spinning.append(spun)
        rep.spinning.sort(key=lambda s: TRANSPORTS.index(s.name))
        if big is not None:
            rep.largest.append(big)
            rep.largest.sort(key=lambda b: TRANSPORTS.index(b.name))
        if zc is not None:
            rep.zero_copy = zc
        if mb is not None:
            rep.mailbox = mb
    return rep


def _result(
    name: str,
    samples: list[int],
    count: int,
    nbytes: int,
    elapsed: float,
    expected: int,
    switches: Switches = (0.0, 0.0),
) -> Result:
    if count != expected:
        raise RuntimeError(f"{name}: the sink counted {count} messages, {expected} were sent")
    p50, p99 = latency_summary_us(samples)
    return Result(
        name,
        round(p50, 2),
        round(p99, 2),
        round(count / elapsed),
        round(nbytes / elapsed / 1e6, 2),
        *switches,
    )


# -- aggregation over repetitions -----------------------------------------------------
def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of one ratio over the repetitions."""
    return {"median": _median(values), "min": round(min(values), 3), "max": round(max(values), 3)}


def _ratios(reps: list[Repetition]) -> dict[str, dict[str, dict[str, float]]]:
    """Per amplink transport: each figure over the Pipe's of the same repetition (of
    the repetitions that measured both: all but in an interrupted run)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in TRANSPORTS[1:]:
        per: dict[str, list[float]] = {"rtt_p50": [], "rtt_p99": [], "msgs_per_s": []}
        for rep in reps:
            if name not in rep.results or PIPE not in rep.results:
                continue
            r, base = rep.results[name], rep.results[PIPE]
            per["rtt_p50"].append(r.rtt_p50_us / base.rtt_p50_us)
            per["rtt_p99"].append(r.rtt_p99_us / base.rtt_p99_us)
            per["msgs_per_s"].append(r.msgs_per_s / base.msgs_per_s)
        if per["rtt_p50"]:
            out[name] = {k: _spread(v) for k, v in per.items()}
    mbox = [
        rep.mailbox.rtt_p50_us / rep.results[PIPE].rtt_p50_us
        for rep in reps
        if rep.mailbox is not None and PIPE in rep.results
    ]
    if mbox:
        out[MAILBOX] = {"rtt_p50": _spread(mbox)}
    zc = [rep.zero_copy / rep.results[VIRTIO].msgs_per_s for rep in reps if rep.zero_copy]
    if zc:
        out[ZERO_COPY] = {"msgs_per_s_vs_send": _spread(zc)}
    return out


def _median_result(name: str, results: list[Result]) -> Result:
    return Result(
        name,
        _median([r.rtt_p50_us for r in results]),
        _median([r.rtt_p99_us for r in results]),
        round(statistics.median(r.msgs_per_s for r in results)),
        _median([r.mb_per_s for r in results]),
        _median([r.wakeups_per_rt for r in results]),
        _median([r.preempted_per_rt for r in results]),
    )


def run(
    rounds: int = 10_000,
    messages: int = 50_000,
    pin: bool = True,
    deliveries: int = 2000,
    cycles: int = 20,
    linux_rounds: int = 2000,
    openamp_runs: int = 20,
    load: int = 0,
    repeat: int = 3,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Run every benchmark; returns the report that ``--json`` prints.  ``load``: CPU-bound
    processes running meanwhile (not during the Linux guest figures, taken when a UML
    kernel is available, ``linux_rounds`` 0: never; nor the OpenAMP ones, taken when its
    demos are built, ``openamp_runs`` 0: never).  ``progress`` is told what each step
    measures before it begins.  Interrupted (Ctrl-C, SIGTERM), it raises
    :class:`Interrupted` holding the report of what was measured before: the transports
    measured, and the sections that ended; the others are left out."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    placement = choose_placement(pin)
    params = {
        "rounds": rounds,
        "rtt_size": RTT_SIZE,
        "messages": messages,
        "throughput_size": THROUGHPUT_SIZE,
        "repeat": repeat,
        "deliveries": deliveries,
        "load_items": bench_mailbox.LOAD_ITEMS,
        "load_item_us": bench_mailbox.LOAD_ITEM_S * 1e6,
        "cycles": cycles,
        "linux_rounds": linux_rounds,
        "openamp_runs": openamp_runs,
    }
    reps: list[Repetition] = []
    sections: dict[str, Any] = {}  # delivery, lifecycle... as each ends
    try:
        _measure(reps, sections, params, placement, load, progress)
    except (KeyboardInterrupt, signals.Interrupted) as exc:
        report = _report(reps, sections, params, placement, load)
        raise Interrupted({**report, "interrupted": True}, exc) from exc
    return _report(reps, sections, params, placement, load)


def _measure(
    reps: list[Repetition],
    sections: dict[str, Any],
    params: dict[str, Any],
    placement: Placement,
    load: int,
    progress: Progress,
) -> None:
    """Every measurement, each result put into ``reps`` or ``sections`` as it is had."""
    rounds, messages, cycles = params["rounds"], params["messages"], params["cycles"]
    repeat, linux_rounds, openamp_runs = (
        params["repeat"],
        params["linux_rounds"],
        params["openamp_runs"],
    )
    saved = os.sched_getaffinity(0)
    with cpu_load(load):
        if placement.host_cpu is not None:
            os.sched_setaffinity(0, {placement.host_cpu})
        try:
            for turn in range(repeat):
                reps.append(Repetition())
                bench_repetition(
                    rounds, messages, placement, turn, _nth(progress, turn + 1, repeat), reps[-1]
                )
            progress("interrupt delivery latency (IRQ thread, workqueue)")
            sections["delivery"] = [
                asdict(d) for d in bench_mailbox.bench_deliveries(params["deliveries"])
            ]
            progress(f"{cycles} boot/stop cycles")
            sections["lifecycle"] = [asdict(t) for t in bench_lifecycle.bench_lifecycle(cycles)]
            progress("emulated Cortex-M cores (when their firmware is built)")
            sections["emulated"] = bench_emulated.bench_emulated(
                min(rounds, EMULATED_ROUNDS),
                min(messages, EMULATED_MESSAGES),
                cycles,
                placement.peer_cpu,
            )
        finally:
            os.sched_setaffinity(0, saved)
    if linux_rounds:
        progress("round trips with a Linux guest (when its kernel is built)")
    sections["linux"] = bench_linux.bench_linux(linux_rounds) if linux_rounds else None
    if openamp_runs:
        progress("OpenAMP's echo demos (when they are built)")
    sections["openamp"] = (
        bench_openamp.bench_openamp(openamp_runs, rounds // 5) if openamp_runs else None
    )


def _report(
    reps: list[Repetition],
    sections: dict[str, Any],
    params: dict[str, Any],
    placement: Placement,
    load: int,
) -> dict[str, Any]:
    """The report of what ``reps`` and ``sections`` hold (all of it, or an interrupted
    run's part: a transport no repetition measured, and a section not ended, are left
    out)."""
    measured = [n for n in TRANSPORTS if any(n in rep.results for rep in reps)]
    results = [
        _median_result(n, [rep.results[n] for rep in reps if n in rep.results]) for n in measured
    ]
    mboxes = [rep.mailbox for rep in reps if rep.mailbox is not None]
    zero_copies = [rep.zero_copy for rep in reps if rep.zero_copy]
    copied = next((r.msgs_per_s for r in results if r.name == VIRTIO), 0)
    report: dict[str, Any] = {
        "placement": {
            "pinned": placement.pinned,
            "host_cpu": placement.host_cpu,
            "peer_cpu": placement.peer_cpu,
            "cpus_online": os.cpu_count(),
        },
        "load": {"processes": load},
        "virtqueue": "compiled" if rings.COMPILED else "pure Python",
        "glink_fifo": "compiled" if glink_ends.COMPILED else "pure Python",
        "mu": "compiled" if imx_mu.COMPILED else "pure Python",
        "sections": "compiled" if held_signals.COMPILED else "pure Python",
        "params": params,
        "baseline": PIPE,
        "results": [asdict(r) for r in results],
        "repetitions": [
            [asdict(rep.results[n]) for n in TRANSPORTS if n in rep.results] for rep in reps
        ],
        "ratios": _ratios(reps),
        "largest": [
            asdict(Largest(name, size, *_largest_medians(reps, name)))
            for name, size in dict((b.name, b.size) for rep in reps for b in rep.largest).items()
        ],
    }
    if zero_copies:
        report["zero_copy"] = {
            "msgs_per_s": round(statistics.median(zero_copies)),
            "copy_msgs_per_s": copied,
        }
    if mboxes:
        report["mailbox"] = asdict(
            bench_mailbox.MboxRtt(
                mboxes[0].name,
                _median([m.rtt_p50_us for m in mboxes]),
                _median([m.rtt_p99_us for m in mboxes]),
                round(statistics.median(m.msgs_per_s for m in mboxes)),
            )
        )
    report["spinning"] = [asdict(s) for rep in reps for s in rep.spinning]
    return report | sections


def _largest_medians(reps: list[Repetition], name: str) -> tuple[float, float]:
    got = [b for rep in reps for b in rep.largest if b.name == name]
    return round(statistics.median(b.msgs_per_s for b in got)), _median([b.mb_per_s for b in got])


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    p = report["placement"]
    place = (
        f"host pinned to CPU {p['host_cpu']}, peer pinned to CPU {p['peer_cpu']}"
        if p["pinned"]
        else "not pinned (scheduler places both processes)"
    )
    load = report["load"]["processes"]
    hogs = counted(load, "CPU-bound process", "CPU-bound processes")
    busy = f"{hogs} running" if load else "no extra load"
    prm = report["params"]
    lines = [
        f"amplink bench: {place}; {busy}",
        f"rpmsg over virtio (vrings, 512 B buffers; {report['virtqueue']} virtqueue, "
        f"{report['sections']} sections)",
        f"  and over GLINK (FIFOs, intents; {report['glink_fifo']} FIFO ends)",
        f"round trip: {prm['rounds']} x {prm['rtt_size']} B; throughput: "
        f"{prm['messages']} x {prm['throughput_size']} B one way",
        f"each taken {counted(prm['repeat'], 'time')} (--repeat): medians, and ratios to the "
        "Pipe within each repetition",
        "",
    ]
    if not report["results"]:  # interrupted before the first row
        return "\n".join([*lines, "nothing was measured yet"])
    lines.append(f"{'transport':<32}{'rtt p50 us':>12}{'rtt p99 us':>12}{'msgs/s':>12}{'MB/s':>9}")
    for r in report["results"]:
        lines.append(
            f"{r['name']:<32}{r['rtt_p50_us']:>12.1f}{r['rtt_p99_us']:>12.1f}"
            f"{r['msgs_per_s']:>12,.0f}{r['mb_per_s']:>9.1f}"
        )
    ratios = [(name, figs) for name, figs in report["ratios"].items() if "rtt_p99" in figs]
    if ratios:  # (none yet in a bench interrupted after the Pipe's row)
        lines += ["", "ratio to the Pipe: median [min-max]"]
        lines.append(f"{'':<30}{'rtt p50':>23}{'rtt p99':>23}{'msgs/s':>23}")
        for name, figs in ratios:
            cells = "".join(_ratio_cell(figs[k]) for k in ("rtt_p50", "rtt_p99", "msgs_per_s"))
            lines.append(f"{'  ' + name.removeprefix('amplink rpmsg '):<30}{cells}")
        lines.append("(latency: lower is better; throughput: higher is better)")
    lines += [
        "threads woken per round trip, both processes (preempted meanwhile):",
        "  "
        + "; ".join(
            f"{_short(r['name'])} {r['wakeups_per_rt']:.1f} ({r['preempted_per_rt']:.1f})"
            for r in report["results"]
        ),
    ]
    for big in report["largest"]:
        lines.append(
            f"{big['name']} at its largest message ({big['size']:,} B): "
            f"{big['msgs_per_s']:,.0f} msgs/s, {big['mb_per_s']:,.1f} MB/s"
        )
    if "zero_copy" in report:
        z = report["zero_copy"]
        zc = report["ratios"][ZERO_COPY]["msgs_per_s_vs_send"]
        lines += [
            f"zero-copy send over virtio (buffer filled in place): {z['msgs_per_s']:,.0f} msgs/s,",
            f"  {_ratio_cell(zc).strip()} the {z['copy_msgs_per_s']:,.0f} of send(); GLINK lends "
            "no send buffers (its FIFO carries the data)",
        ]
    spun: dict[str, list[int]] = {}
    for s in report["spinning"]:
        acc = spun.setdefault(s["name"], [0, 0, 0, 0])
        for i, k in enumerate(("hits", "misses", "preempted", "starving")):
            acc[i] += s[k]
    if any(n != SPIN_OFF for n in spun):  # (none yet after the Pipe's row alone)
        lines += [
            "host's spins before it slept (all repetitions): hit = the answer came, missed = it",
            "  did not, cut short = preempted, or starving the core (which wanted the host's CPU)",
        ]
    lines += [
        f"  {n.removeprefix('amplink rpmsg ')}: {h:,} hit, {m:,} missed, {q:,} cut short "
        f"({st:,} starving)"
        for n, (h, m, q, st) in spun.items()
        if n != SPIN_OFF
    ]
    if "mailbox" in report:
        lines += _format_mailbox(report)
    if "delivery" in report:
        lines += [
            "",
            f"interrupt -> client callback: {prm['deliveries']} interrupts each; busy = "
            f"{prm['load_items']} other items of {prm['load_item_us']:.0f} us kept queued",
            f"{'delivery':<14}{'workqueue':<16}{'p50 us':>10}{'p99 us':>10}{'max us':>10}",
        ]
        for d in report["delivery"]:
            lines.append(
                f"{d['path']:<14}{d['load']:<16}{d['p50_us']:>10.1f}{d['p99_us']:>10.1f}"
                f"{d['max_us']:>10.1f}"
            )
    if "lifecycle" in report:
        lines += [
            "",
            f"lifecycle: {prm['cycles']} cycles each (baseline: the bare process spawn)",
            f"{'phase':<26}{'p50 ms':>10}{'p99 ms':>10}",
        ]
        for t in report["lifecycle"]:
            lines.append(f"{t['name']:<26}{t['p50_ms']:>10.1f}{t['p99_ms']:>10.1f}")
    if "emulated" in report:
        lines += bench_emulated.format_emulated(
            report["emulated"],
            min(prm["rounds"], EMULATED_ROUNDS),
            min(prm["messages"], EMULATED_MESSAGES),
        )
    if "linux" in report:
        lines += bench_linux.format_linux(report["linux"], prm["linux_rounds"])
    if "openamp" in report:
        lines += bench_openamp.format_openamp(report["openamp"], prm["openamp_runs"])
    if report.get("interrupted"):
        lines += ["", "interrupted: the figures above are what was measured before"]
    return "\n".join(lines)


def _format_mailbox(report: dict[str, Any]) -> list[str]:
    """The mailbox round trip's lines, beside the Pipe's."""
    prm, m = report["params"], report["mailbox"]
    base = report["results"][0]
    mr = report["ratios"][MAILBOX]["rtt_p50"]
    return [
        "",
        f"mailbox round trip: {prm['rounds']} x one 32-bit word, host -> core -> host "
        f"({report['mu']} MU register accessors)",
        f"{'transport':<32}{'rtt p50 us':>12}{'rtt p99 us':>12}{'1/p50 /s':>12}{'p50 / Pipe':>24}",
        f"{base['name']:<32}{base['rtt_p50_us']:>12.1f}{base['rtt_p99_us']:>12.1f}"
        f"{1e6 / base['rtt_p50_us']:>12,.0f}",
        f"{m['name']:<32}{m['rtt_p50_us']:>12.1f}{m['rtt_p99_us']:>12.1f}"
        f"{1e6 / m['rtt_p50_us']:>12,.0f}{_ratio_cell(mr):>24}",
        f"(1/p50 /s: round trips a second at the median; the whole run's rate, tail included: "
        f"{m['msgs_per_s']:,.0f}/s)",
    ]


def _short(name: str) -> str:
    """A transport's name in a line of figures: ``Pipe``, ``virtio``, ``glink``..."""
    return "Pipe" if name == PIPE else name.removeprefix("amplink rpmsg ")


def _ratio_cell(spread: dict[str, float]) -> str:
    """``median [min-max]``, right-aligned in 23 columns with at least one blank before
    it (ratios of 10 and more get fewer decimals: a tick-long p99 is 100x and more)."""

    def fig(x: float) -> str:
        return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"

    cell = f"{fig(spread['median'])}x [{fig(spread['min'])}-{fig(spread['max'])}]"
    return " " + cell.rjust(22)
