"""``amplink bench``: amplink's message path against a baseline measured in the same run.

Two figures per transport (``multiprocessing.Pipe``, then rpmsg over each backend:
virtio and GLINK), both between two real processes:

* round-trip latency: a 64-byte message to an echo peer and back, ``--rounds`` times
  after a warm-up, reported as p50 and p99;
* one-way throughput: ``--messages`` messages of 496 bytes (the rpmsg MTU) to a sink
  that counts them; the clock stops when the sink's count comes back; and the same at
  the largest message each rpmsg backend carries (virtio 496 B, GLINK 64 KiB).

The baseline is ``multiprocessing.Pipe`` (``send_bytes``/``recv_bytes``, no pickling)
with the same placement.  With two or more CPUs the host side is pinned to the first
allowed CPU and the peer to another, because unpinned figures on a 2-vCPU machine jump
with every scheduler decision; ``--no-pin`` measures unpinned.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from amplink.app.bench import emulated as bench_emulated
from amplink.app.bench import lifecycle as bench_lifecycle
from amplink.app.bench import linux as bench_linux
from amplink.app.bench import mailbox as bench_mailbox
from amplink.app.bench import openamp as bench_openamp
from amplink.app.stats import latency_summary_us
from amplink.firmware import bench as fw
from amplink.host import Rproc, RprocConfig
from amplink.remoteproc.layout import glink_rsc_table
from amplink.rpmsg.core import Endpoint

RTT_SIZE = 64
THROUGHPUT_SIZE = 496
WARMUP = 1000
EMULATED_ROUNDS = 2000  # an emulated core answers in ~0.1-1 ms: fewer rounds
EMULATED_MESSAGES = 5000


@dataclass
class Result:
    """One transport's figures: round trip and throughput."""

    name: str
    rtt_p50_us: float
    rtt_p99_us: float
    msgs_per_s: float
    mb_per_s: float


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


# -- baseline: multiprocessing.Pipe ---------------------------------------------------
def _pipe_peer(conn: Connection, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    while True:
        cmd = conn.recv_bytes()
        if cmd == b"ECHO":
            n = struct.unpack("=Q", conn.recv_bytes())[0]
            for _ in range(n):
                conn.send_bytes(conn.recv_bytes())
        elif cmd == b"SINK":
            n = struct.unpack("=Q", conn.recv_bytes())[0]
            total = 0
            for _ in range(n):
                total += len(conn.recv_bytes())
            conn.send_bytes(struct.pack("=QQ", n, total))
        else:
            return


def bench_pipe(rounds: int, messages: int, placement: Placement) -> Result:
    """The baseline: the same round trips and throughput over a ``multiprocessing.Pipe``."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    peer = ctx.Process(target=_pipe_peer, args=(theirs, placement.peer_cpu), daemon=True)
    peer.start()
    theirs.close()
    try:
        ours.send_bytes(b"ECHO")
        ours.send_bytes(struct.pack("=Q", rounds + WARMUP))
        payload = bytes(RTT_SIZE)
        samples = []
        for i in range(rounds + WARMUP):
            t = time.perf_counter_ns()
            ours.send_bytes(payload)
            ours.recv_bytes()
            if i >= WARMUP:
                samples.append(time.perf_counter_ns() - t)
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
        peer.join(5)
        if peer.is_alive():
            peer.kill()
            peer.join()
        ours.close()
    return _result("multiprocessing.Pipe", samples, count, nbytes, elapsed, messages)


# -- amplink --------------------------------------------------------------------------
def _rtt(ept: Endpoint, rounds: int) -> list[int]:
    payload = bytes(RTT_SIZE)
    samples = []
    for i in range(rounds + WARMUP):
        t = time.perf_counter_ns()
        ept.send(payload)
        ept.recv(5.0)
        if i >= WARMUP:
            samples.append(time.perf_counter_ns() - t)
    return samples


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


def bench_amplink(
    rounds: int, messages: int, placement: Placement
) -> tuple[list[Result], list[Largest], bench_mailbox.MboxRtt, float]:
    """rpmsg figures per backend, the mailbox round trip, and zero-copy messages/s."""
    results, largest = [], []
    zero_copy = 0.0
    mbox = None
    for backend, table in (("virtio", None), ("glink", glink_rsc_table())):
        name = f"amplink rpmsg {backend}"
        config = RprocConfig(cpu=placement.peer_cpu)
        with Rproc(f"bench-{backend}", "amplink.firmware.bench", config=config, table=table) as rp:
            if mbox is None:
                mbox = bench_mailbox.bench_mbox_rtt(rp, rounds)
            echo = rp.wait_channel(fw.ECHO).create_ept()
            sink = rp.wait_channel(fw.SINK).create_ept()
            samples = _rtt(echo, rounds)
            count, nbytes, elapsed = _sink_run(sink, messages, zero_copy=False)
            results.append(_result(name, samples, count, nbytes, elapsed, messages))
            mtu = sink.get_mtu()
            few = max(messages * THROUGHPUT_SIZE // mtu // 4, 10)
            count, nbytes, elapsed = _sink_run(sink, few, zero_copy=False, size=mtu)
            big = _result(name, [0], count, nbytes, elapsed, few)
            largest.append(Largest(name, mtu, big.msgs_per_s, big.mb_per_s))
            if backend == "virtio":
                zc_count, _, zc_elapsed = _sink_run(sink, messages, zero_copy=True)
                if zc_count != messages:
                    raise RuntimeError(f"zero copy: the sink counted {zc_count} of {messages}")
                zero_copy = round(messages / zc_elapsed)
    assert mbox is not None
    return results, largest, mbox, zero_copy


def _result(
    name: str, samples: list[int], count: int, nbytes: int, elapsed: float, expected: int
) -> Result:
    if count != expected:
        raise RuntimeError(f"{name}: the sink counted {count} messages, {expected} were sent")
    p50, p99 = latency_summary_us(samples)
    return Result(
        name, round(p50, 2), round(p99, 2), round(count / elapsed), round(nbytes / elapsed / 1e6, 2)
    )


def run(
    rounds: int = 10_000,
    messages: int = 50_000,
    pin: bool = True,
    deliveries: int = 2000,
    cycles: int = 20,
    linux_rounds: int = 2000,
    openamp_runs: int = 20,
) -> dict[str, Any]:
    """Run every benchmark; returns the report that ``--json`` prints.  The Linux
    guest figures are taken when a UML kernel is available (``linux_rounds`` 0: never),
    the OpenAMP ones when its demos are built (``openamp_runs`` 0: never)."""
    placement = choose_placement(pin)
    saved = os.sched_getaffinity(0)
    if placement.host_cpu is not None:
        os.sched_setaffinity(0, {placement.host_cpu})
    try:
        baseline = bench_pipe(rounds, messages, placement)
        ours, largest, mbox, zero_copy = bench_amplink(rounds, messages, placement)
        delivery = bench_mailbox.bench_deliveries(deliveries)
        lifecycle = bench_lifecycle.bench_lifecycle(cycles)
        emulated = bench_emulated.bench_emulated(
            min(rounds, EMULATED_ROUNDS),
            min(messages, EMULATED_MESSAGES),
            cycles,
            placement.peer_cpu,
        )
    finally:
        os.sched_setaffinity(0, saved)
    linux = bench_linux.bench_linux(linux_rounds) if linux_rounds else None
    openamp = bench_openamp.bench_openamp(openamp_runs, rounds // 5) if openamp_runs else None
    return {
        "placement": {
            "pinned": placement.pinned,
            "host_cpu": placement.host_cpu,
            "peer_cpu": placement.peer_cpu,
            "cpus_online": os.cpu_count(),
        },
        "params": {
            "rounds": rounds,
            "rtt_size": RTT_SIZE,
            "messages": messages,
            "throughput_size": THROUGHPUT_SIZE,
            "deliveries": deliveries,
            "load_items": bench_mailbox.LOAD_ITEMS,
            "load_item_us": bench_mailbox.LOAD_ITEM_S * 1e6,
            "cycles": cycles,
            "linux_rounds": linux_rounds,
            "openamp_runs": openamp_runs,
        },
        "baseline": baseline.name,
        "results": [asdict(baseline), *(asdict(r) for r in ours)],
        "ratios": {
            r.name: {
                "rtt_p50": round(r.rtt_p50_us / baseline.rtt_p50_us, 3),
                "msgs_per_s": round(r.msgs_per_s / baseline.msgs_per_s, 3),
            }
            for r in ours
        },
        "largest": [asdict(big) for big in largest],
        "zero_copy": {"msgs_per_s": zero_copy, "copy_msgs_per_s": ours[0].msgs_per_s},
        "mailbox": asdict(mbox),
        "delivery": [asdict(d) for d in delivery],
        "lifecycle": [asdict(t) for t in lifecycle],
        "emulated": emulated,
        "linux": linux,
        "openamp": openamp,
    }


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table of a report."""
    p = report["placement"]
    place = (
        f"host pinned to CPU {p['host_cpu']}, peer pinned to CPU {p['peer_cpu']}"
        if p["pinned"]
        else "not pinned (scheduler places both processes)"
    )
    prm = report["params"]
    lines = [
        f"amplink bench: {place}",
        "rpmsg over both backends: virtio (vrings, 512 B buffers) and GLINK (FIFOs, intents)",
        f"round trip: {prm['rounds']} x {prm['rtt_size']} B; throughput: "
        f"{prm['messages']} x {prm['throughput_size']} B one way",
        "",
        f"{'transport':<24}{'rtt p50 us':>12}{'rtt p99 us':>12}{'msgs/s':>12}{'MB/s':>9}",
    ]
    base = report["results"][0]
    for r in report["results"]:
        lines.append(
            f"{r['name']:<24}{r['rtt_p50_us']:>12.1f}{r['rtt_p99_us']:>12.1f}"
            f"{r['msgs_per_s']:>12,.0f}{r['mb_per_s']:>9.1f}"
        )
    for r in report["results"][1:]:
        ratios = [r[k] / base[k] for k in ("rtt_p50_us", "rtt_p99_us", "msgs_per_s", "mb_per_s")]
        lines.append(
            f"{'  ' + r['name'].split()[-1] + ' / Pipe':<24}{ratios[0]:>11.2f}x{ratios[1]:>11.2f}x"
            f"{ratios[2]:>11.2f}x{ratios[3]:>8.2f}x"
        )
    lines.append("(latency: lower is better; throughput: higher is better)")
    for big in report["largest"]:
        lines.append(
            f"{big['name']} at its largest message ({big['size']:,} B): "
            f"{big['msgs_per_s']:,.0f} msgs/s, {big['mb_per_s']:,.1f} MB/s"
        )
    z = report["zero_copy"]
    ratio = z["msgs_per_s"] / z["copy_msgs_per_s"]
    lines.append(
        f"zero-copy send over virtio (buffer filled in place): {z['msgs_per_s']:,.0f} "
        f"msgs/s vs {z['copy_msgs_per_s']:,.0f} with send() ({ratio:.2f}x); GLINK lends "
        "no buffers (data goes through its FIFO, as in Linux)"
    )
    m = report["mailbox"]
    lines += [
        "",
        f"mailbox round trip: {prm['rounds']} x one 32-bit word, host -> core -> host",
        f"{'transport':<26}{'rtt p50 us':>12}{'rtt p99 us':>12}{'msgs/s':>12}",
        f"{base['name']:<26}{base['rtt_p50_us']:>12.1f}{base['rtt_p99_us']:>12.1f}"
        f"{1e6 / base['rtt_p50_us']:>12,.0f}  (1/rtt p50)",
        f"{m['name']:<26}{m['rtt_p50_us']:>12.1f}{m['rtt_p99_us']:>12.1f}{m['msgs_per_s']:>12,.0f}",
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
    lines += [
        "",
        f"lifecycle: {prm['cycles']} cycles each (baseline: the bare process spawn)",
        f"{'phase':<26}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for t in report["lifecycle"]:
        lines.append(f"{t['name']:<26}{t['p50_ms']:>10.1f}{t['p99_ms']:>10.1f}")
    lines += bench_emulated.format_emulated(
        report["emulated"],
        min(prm["rounds"], EMULATED_ROUNDS),
        min(prm["messages"], EMULATED_MESSAGES),
    )
    lines += bench_linux.format_linux(report["linux"], prm["linux_rounds"])
    lines += bench_openamp.format_openamp(report["openamp"], prm["openamp_runs"])
    return "\n".join(lines)
