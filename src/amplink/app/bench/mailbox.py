"""The mailbox and interrupt figures of ``amplink bench``.

* **Mailbox round trip**: the host sends a 32-bit word on MU data channel 1 through
  the mailbox framework; the core's interrupt handler sends it back on the same
  channel; the host's RX callback hands it to the waiting sender, which takes the
  MU's interrupt itself while it waits (``take_notifications``: the RX callback runs
  in its thread), as an rpmsg ``recv()`` does; it sends the word once it has taken
  the line, so that the echo cannot reach the dispatcher first.
  Two real processes, two interrupt lines, both drivers.
* **Callback delivery**: the time from raising the interrupt (the peer writing the MU
  data register) to the client's callback running, when the RX callback is called
  straight from the channel's IRQ thread versus deferred to a workqueue, with the
  workqueue idle and with it kept busy by other work items.  A dedicated IRQ thread
  does not queue behind unrelated work; a deferred callback does.  The peer is a
  thread of this process so that the two clocks are the same.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from queue import Empty, SimpleQueue
from typing import Literal

from amplink.app.stats import latency_summary_us
from amplink.firmware import bench as fw
from amplink.host import Rproc
from amplink.hw.imx_mu import MU_TR0, ImxMu
from amplink.hw.imx_mu import SIZE as MU_SIZE
from amplink.irq.domain import IrqDomain
from amplink.irq.workqueue import Work, Workqueue
from amplink.mailbox.framework import (
    MboxClient,
    free_channel,
    request_channel,
    request_channel_byname,
    send_message,
)
from amplink.mailbox.imx_mu import IMX_MU_TYPE_RX, ImxMuController
from amplink.memory.region import SharedRegion
from amplink.remoteproc.process import ProcessPlatform
from amplink.wait import Wakeup

WARMUP = 200
LOAD_ITEMS = 4  # work items kept queued on the busy workqueue
LOAD_ITEM_S = 0.0005  # each one sleeps this long (it occupies a worker, not the CPU)


@dataclass
class MboxRtt:
    """The mailbox round trip of one word."""

    name: str
    rtt_p50_us: float
    rtt_p99_us: float
    msgs_per_s: float


@dataclass
class Delivery:
    """Interrupt-to-callback latency for one delivery path and load."""

    path: str
    load: str
    p50_us: float
    p99_us: float
    max_us: float


def bench_mbox_rtt(rp: Rproc, rounds: int) -> MboxRtt:
    """Round trips of one word host -> core -> host through the mailbox framework."""
    platform = rp.platform
    assert isinstance(platform, ProcessPlatform)
    assert platform.kick_path is not None and platform.kick_path.controller is not None
    replies: deque[int] = deque()
    arrived = Wakeup()  # the RX callback wakes us without holding the GIL (amplink.wait)
    waiting = (arrived.fileno(),)

    def has_reply() -> bool:
        return bool(replies)

    me = threading.get_ident()

    def rx_callback(_cl: MboxClient, word: int) -> None:
        replies.append(word)
        if threading.get_ident() != me:  # not the waiter itself, which took the interrupt
            arrived.set()

    cl = fw.mbox_echo_client(platform.kick_path.controller.dev, "bench-mbox", rx_callback)
    tx = request_channel_byname(cl, "tx")
    rx = request_channel_byname(cl, "rx")
    try:
        samples = []
        t0 = time.perf_counter()
        for i in range(rounds + WARMUP):
            if i == WARMUP:
                t0 = time.perf_counter()
            t = time.perf_counter_ns()
            word: Callable[[], object] | None = partial(send_message, tx, i)
            while not replies:  # taking the MU's interrupt in this thread, if it can
                # (the word goes out once the line is taken: its echo cannot reach the
                # dispatcher first, which would cost two more thread wake-ups)
                got = platform.take_notifications(waiting, 5.0, has_reply, word)
                if got is None:
                    if word is not None:
                        word()
                    got = arrived.wait(5.0)
                else:
                    arrived.clear()
                word = None
                if not got and not replies:
                    raise RuntimeError("no mailbox echo within 5 s")
            if replies.popleft() != i:
                raise RuntimeError("mailbox echo returned the wrong word")
            if i >= WARMUP:
                samples.append(time.perf_counter_ns() - t)
        elapsed = time.perf_counter() - t0
    finally:
        free_channel(rx)
        free_channel(tx)
        arrived.close()
    p50, p99 = latency_summary_us(samples)
    return MboxRtt(
        "amplink mailbox (MU+IRQ)", round(p50, 2), round(p99, 2), round(rounds / elapsed)
    )


def _busy(wq: Workqueue, stop: threading.Event) -> None:
    """Keep ``LOAD_ITEMS`` unrelated work items queued on ``wq`` until ``stop``."""
    slots = threading.Semaphore(LOAD_ITEMS)

    def item() -> None:
        time.sleep(LOAD_ITEM_S)
        slots.release()

    while not stop.is_set():
        if slots.acquire(timeout=0.05):
            wq.queue_work(Work(item, "load"))


def bench_delivery(path: Literal["irq-thread", "workqueue"], busy: bool, samples: int) -> Delivery:
    """Interrupt-to-callback latency on an in-process MU, ``samples`` times."""
    mmio = SharedRegion.create(MU_SIZE, "bench-delivery")
    domain = IrqDomain("bench")
    wq = Workqueue("bench-events", max_active=1)
    stop = threading.Event()
    loader = threading.Thread(target=_busy, args=(wq, stop), name="bench-load", daemon=True)
    raised = [0]
    lat: SimpleQueue[int] = SimpleQueue()

    def client_callback() -> None:
        lat.put(time.perf_counter_ns() - raised[0])

    work = Work(client_callback, "deferred-rx")

    def rx_callback(_cl: MboxClient, _word: object) -> None:  # in the IRQ thread
        if path == "irq-thread":
            client_callback()
        else:
            wq.queue_work(work)

    ctrl: ImxMuController | None = None
    try:
        line = domain.add_line(1)
        unit = ImxMu("bench-mu", mmio.cast(0, MU_SIZE, "I"), wire_a=line.wire)
        line.add_source(unit.a.irq_active)
        domain.start()
        ctrl = ImxMuController("bench-mu-a", unit.a, domain, 1)
        ctrl.register()
        cl = MboxClient(
            "bench", mboxes=(("bench-mu-a", IMX_MU_TYPE_RX, 0),), rx_callback=rx_callback
        )
        request_channel(cl, 0)
        if busy:
            loader.start()
        out = []
        for i in range(samples + WARMUP):
            raised[0] = time.perf_counter_ns()
            unit.b.writel(MU_TR0, i)
            try:
                ns = lat.get(timeout=5.0)
            except Empty:
                raise RuntimeError("no callback within 5 s of the interrupt") from None
            if i >= WARMUP:
                out.append(ns)
    finally:
        stop.set()
        if loader.is_alive():
            loader.join()
        if ctrl is not None:
            ctrl.unregister()
        wq.destroy()
        domain.close()
        mmio.close()
    p50, p99 = latency_summary_us(out)
    load = "busy workqueue" if busy else "idle"
    return Delivery(path, load, round(p50, 2), round(p99, 2), round(max(out) / 1000, 2))


def bench_deliveries(samples: int) -> list[Delivery]:
    """Interrupt-to-callback latency from the IRQ thread and through a workqueue, idle and busy."""
    paths: tuple[Literal["irq-thread", "workqueue"], ...] = ("irq-thread", "workqueue")
    return [bench_delivery(path, busy, samples) for busy in (False, True) for path in paths]
