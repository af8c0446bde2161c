"""One tracer that every layer reports to, and its export as a Chrome/Perfetto timeline.

Off by default.  Each report point is written ``if TRACER.enabled: TRACER.event(...)``,
so when tracing is off a report costs one attribute test.  When it is on, events are
``(time, pid, tid, category, name, args)`` with ``time.perf_counter_ns()``, which is
CLOCK_MONOTONIC and therefore comparable across the processes of one machine.

A host that traces tells the core processes it starts (environment variable
:data:`ENV_VAR`) to append their events, one JSON line each, to a file; the export
merges them.  A core is reset with SIGKILL, so it writes each event at once rather
than at exit.

:func:`export_chrome` writes the Trace Event Format that Perfetto and
``chrome://tracing`` open: one process track per process (the host, each core), one
thread track per thread (the IRQ dispatcher, each ``irq/<n>-<name>`` thread, the core's
main loop...), duration slices for work that takes time (an IRQ thread's run, an rpmsg
send including its wait for a buffer, a name-service announcement, a receive callback),
instant events, and *flows* that link one rpmsg message's send slice (host or core) to
the slice of the callback (or queue) that received it in the other process, bound to
the slices themselves (``bind_id`` with ``flow_out``/``flow_in``, the format's flow v2,
so that a slice nested in a callback cannot catch them).  A message is identified on
both sides by its link (name and the shared memory's inode, so a recovered core's link
is another) and its position in that direction's order (:func:`message_flow`): the
sender counts when the message enters the ring or FIFO, under the link's send lock, the
receiver every message it takes out, so several senders on one link, sends that fail
and messages nobody receives keep the pairing right.  (A hostile peer that writes
malformed GLINK data can shift the pairing of its own link's later flows.)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import weakref
from typing import Any

ENV_VAR = "AMPLINK_TRACE_FILE"


def message_flow(link_key: str, sender: str, seq: int) -> int:
    """The flow id of message ``seq`` (0, 1, ...) sent by ``sender`` (``host`` or
    ``core``) on the link ``link_key``: the same number in both processes."""
    digest = hashlib.blake2b(f"{link_key}/{sender}/{seq}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


class Tracer:
    """Collects events of this process (in memory, or appended to a file)."""

    def __init__(self) -> None:
        self.enabled = False
        self.process_name = "host"
        self._events: list[tuple[Any, ...]] = []
        self._threads: dict[int, str] = {}
        self._lock = threading.Lock()
        self._file: Any = None
        self._dir: str | None = None
        self._dir_release: weakref.finalize[Any, Any] | None = None
        self._core_files: list[str] = []
        self.local = threading.local()  # flow ids handed from a link to the enclosing slice

    @property
    def role(self) -> str:
        """``host`` or ``core``: who sends in this process."""
        return "host" if self.process_name == "host" else "core"

    def start(self, process_name: str = "host", path: str | None = None) -> None:
        """Record from now on; with ``path``, append each event to that file."""
        with self._lock:
            self.process_name = process_name
            self._events = []
            self._threads = {}
            if path is not None:
                self._file = open(path, "a", buffering=1)  # noqa: SIM115 - lives while tracing
            self.enabled = True
        self.event("process", "start", name=process_name)

    def stop(self) -> None:
        """Stop recording and forget what was recorded (export first)."""
        with self._lock:
            self.enabled = False
            self._events = []
            self._threads = {}
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._dir_release is not None:
                self._dir_release()
                self._dir_release = None
            self._dir = None
            self._core_files = []

    def core_file(self, core: str) -> str:
        """Where a core process started now appends its events: a file in a temporary
        folder that :meth:`stop` removes, and the process's exit too if nothing called
        it (normal end, uncaught exception, Ctrl-C: anything but a fatal signal)."""
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="amplink-trace-")
                self._dir_release = weakref.finalize(self, _remove_dir, self._dir, os.getpid())
            path = os.path.join(self._dir, f"{core}-{len(self._core_files)}.jsonl")
            self._core_files.append(path)
            return path

    def export(self, path: str) -> int:
        """Write this process's and its cores' events to ``path`` (Chrome trace JSON);
        returns how many events it holds."""
        records = self.records()
        with self._lock:
            files = list(self._core_files)
        for f in files:
            records += read_records(f)
        return export_chrome(path, records)

    def event(self, category: str, what: str, **args: Any) -> None:
        """Record one instant event in the calling thread."""
        ts = time.perf_counter_ns()
        self._record("event", (ts, os.getpid(), threading.get_native_id(), category, what, args))

    def sent(self, link: Any) -> None:
        """A link sent a message (in the sending thread, in send order): its flow id
        is handed to the enclosing send slice."""
        seq = link.trace_seq[0]
        link.trace_seq[0] = seq + 1
        self.local.flow_out = message_flow(link.trace_key, self.role, seq)

    def received(self, link: Any) -> None:
        """A link received a message (in receive order): its flow id is handed to
        the slice of the callback that gets it."""
        seq = link.trace_seq[1]
        link.trace_seq[1] = seq + 1
        other = "core" if self.role == "host" else "host"
        self.local.flow_in = message_flow(link.trace_key, other, seq)

    def take(self, which: str) -> int | None:
        """The flow id a link handed to this thread (``flow_out``/``flow_in``), once."""
        flow: int | None = getattr(self.local, which, None)
        setattr(self.local, which, None)
        return flow

    def span(
        self,
        category: str,
        what: str,
        start_ns: int,
        *,
        flow_out: int | None = None,
        flow_in: int | None = None,
        **args: Any,
    ) -> None:
        """Record a slice of the calling thread from ``start_ns`` until now; a message
        flow leaves it (``flow_out``) or arrives in it (``flow_in``)."""
        dur = time.perf_counter_ns() - start_ns
        pid, tid = os.getpid(), threading.get_native_id()
        self._record("slice", (start_ns, dur, pid, tid, category, what, args, flow_out, flow_in))

    def _record(self, kind: str, event: tuple[Any, ...]) -> None:
        """Keep ``event`` (of the calling thread) and append it to the file, after the
        thread's name the first time."""
        with self._lock:
            if not self.enabled:
                return
            tid = threading.get_native_id()
            if tid not in self._threads:
                self._threads[tid] = threading.current_thread().name
                self._write(("thread", os.getpid(), tid, self._threads[tid], self.process_name))
            self._events.append(event)
            self._write((kind, *event))

    def _write(self, record: tuple[Any, ...]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, default=str) + "\n")

    def records(self) -> list[tuple[Any, ...]]:
        """What this process recorded, in the file format (for :func:`export_chrome`)."""
        with self._lock:
            pid = os.getpid()
            out: list[tuple[Any, ...]] = [
                ("thread", pid, tid, name, self.process_name) for tid, name in self._threads.items()
            ]
            out += [("slice" if len(e) == 9 else "event", *e) for e in self._events]
            return out


TRACER = Tracer()


def _remove_dir(path: str, owner: int) -> None:
    """Remove a tracer's folder of core files, in the process that made it only (not in
    a child forked meanwhile)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def start_from_environment() -> None:
    """In a core process: trace into the file the host named, if it named one."""
    path = os.environ.get(ENV_VAR)
    if path:
        TRACER.start(process_name=os.environ.get("AMPLINK_CORE_NAME", "core"), path=path)


def read_records(path: str) -> list[tuple[Any, ...]]:
    """The records a core appended to ``path`` (a torn last line is ignored)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(tuple(json.loads(line)))
                except json.JSONDecodeError:
                    break  # the core was reset in the middle of writing this one
    except FileNotFoundError:
        pass
    return out


def export_chrome(path: str, records: list[tuple[Any, ...]]) -> int:
    """Write ``records`` (of every process) as a Trace Event Format file; returns how
    many events it holds."""
    events: list[dict[str, Any]] = []
    processes: dict[int, str] = {}
    for rec in records:
        if rec[0] == "thread":
            _, pid, tid, tname, pname = rec
            processes[pid] = pname
            events.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": tname}}
            )
    for pid, pname in processes.items():
        events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": pname}})
    count = 0
    timed = sorted((r for r in records if r[0] in ("event", "slice")), key=lambda r: r[1])
    for rec in timed:
        if rec[0] == "event":
            _, ts, pid, tid, cat, name, args = rec
            events.append(
                {"ph": "i", "s": "t", "name": name, "cat": cat, "ts": ts / 1000, "pid": pid,
                 "tid": tid, "args": args}
            )  # fmt: skip
        else:
            _, ts, dur, pid, tid, cat, name, args, flow_out, flow_in = rec
            event = {"ph": "X", "name": name, "cat": cat, "ts": ts / 1000, "dur": dur / 1000,
                     "pid": pid, "tid": tid, "args": args}  # fmt: skip
            if flow_out is not None:  # the flow is bound to the slice itself (flow v2)
                event.update(bind_id=flow_out, flow_out=True)
            elif flow_in is not None:
                event.update(bind_id=flow_in, flow_in=True)
            events.append(event)
        count += 1
    with open(path, "w") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ns"}, f)
    return count
