"""The tracer: every layer's events from host and core, merged into one Chrome/Perfetto
timeline in which one message's journey is in causal order."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from amplink.errors import RpmsgError
from amplink.host import Rproc, RprocConfig
from amplink.tracing import TRACER
from backends import BACKENDS, table_for
from test_cli import run_cli

ECHO_FW = "amplink.firmware.echo"

SERVICE = "rpmsg-openamp-demo-channel"
PAYLOAD = b"trace me, 23 bytes long"


def first(events, after, **match):
    for e in events:
        if e["ts"] >= after and all(
            e.get(k) == v or e["args"].get(k) == v for k, v in match.items()
        ):
            return e
    raise AssertionError(f"no event {match} after {after}")


def test_one_message_crosses_the_system_in_causal_order(tmp_path):
    out = tmp_path / "trace.json"
    TRACER.start()
    try:
        with Rproc("traced", ECHO_FW, config=RprocConfig(spin=False)) as rp:
            ept = rp.wait_channel(SERVICE, 10).create_ept()
            ept.send(PAYLOAD)
            assert ept.recv(10).data == PAYLOAD
            core_pid = rp.pid
        count = TRACER.export(str(out))
    finally:
        TRACER.stop()
    assert not TRACER.enabled
    trace = json.loads(out.read_text())
    events = trace["traceEvents"]
    meta = {
        (e["name"], e["pid"], e.get("tid")): e["args"]["name"] for e in events if e["ph"] == "M"
    }
    host = os.getpid()
    assert meta[("process_name", host, None)] == "host"
    assert meta[("process_name", core_pid, None)] == "core traced"
    threads = {name for (kind, pid, _), name in meta.items() if kind == "thread_name"}
    assert "irq/32-traced-mua_chan[1-0]" in threads and "irq-traced-gic" in threads
    inst = [e for e in events if e["ph"] == "i"]
    slices = [e for e in events if e["ph"] == "X"]
    assert count == len(inst) + len(slices)
    assert all({"ts", "pid", "tid", "cat", "args"} <= set(e) for e in inst + slices)
    assert all(isinstance(v, int | str) for e in inst for v in e["args"].values())  # no reprs
    n = len(PAYLOAD)
    send = first(slices, 0, name="send", cat="rpmsg", pid=host, len=n)
    # The host's send slice starts a flow that ends in the core's receive callback...
    arrow = flow_from(events, send)
    core_cb = flow_to(events, arrow, slices)
    assert core_cb["pid"] == core_pid and core_cb["name"] == "callback"
    assert core_cb["args"]["len"] == n and core_cb["ts"] >= send["ts"]
    # ...whose echo is a send slice nested in that callback, starting the reply's flow,
    reply = first(slices, core_cb["ts"], name="send", pid=core_pid, len=n)
    assert (
        reply["tid"] == core_cb["tid"]
        and reply["ts"] + reply["dur"] <= core_cb["ts"] + core_cb["dur"]
    )
    back = flow_from(events, reply)
    # ...which ends in the host, in a run of the mailbox RX thread function: in the
    # thread that waited in recv(), which takes the interrupt itself, or in the
    # channel's IRQ thread when the reply came before recv() slept.
    host_rx = flow_to(events, back, slices)
    assert host_rx["pid"] == host and host_rx["ts"] >= reply["ts"]
    irq = [e for e in slices if e["name"] == "thread" and e["tid"] == host_rx["tid"]]
    assert any(e["ts"] <= host_rx["ts"] <= e["ts"] + e["dur"] for e in irq)  # inside its run
    receiver = meta[("thread_name", host, host_rx["tid"])]
    assert receiver in ("MainThread", "irq/32-traced-mua_chan[1-0]")
    kick = first(inst, send["ts"], name="kick", pid=host)
    assert kick["ts"] <= core_cb["ts"] + core_cb["dur"]
    states = [e["args"]["state"] for e in inst if e["name"] == "state"]
    assert states == ["running", "offline"]


def flow_from(events, sl):
    """The id of the flow that leaves slice ``sl``."""
    assert sl["flow_out"] is True
    return sl["bind_id"]


def flow_to(events, flow_id, slices):
    """The slice that flow ``flow_id`` enters."""
    (end,) = [e for e in slices if e.get("bind_id") == flow_id and e.get("flow_in")]
    return end


def test_tracing_off_records_nothing():
    with Rproc("quiet", ECHO_FW) as rp:
        ept = rp.wait_channel(SERVICE, 10).create_ept()
        ept.send(b"x")
        ept.recv(10)
    assert TRACER.records() == []


def test_demo_writes_a_trace(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_cli("demo", "--trace", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"events in {out}" in proc.stdout
    names = {e["name"] for e in json.loads(out.read_text())["traceEvents"]}
    assert {"send", "callback", "thread", "kick", "handled", "add", "get", "put"} <= names
    events = json.loads(out.read_text())["traceEvents"]
    assert {"X", "i", "M"} <= {e["ph"] for e in events}
    assert {e["name"] for e in events if e.get("flow_out")} == {"send", "announce"}
    assert {e["name"] for e in events if e.get("flow_in")} == {"callback", "queued"}


def _traced(tmp_path, run) -> list[dict]:
    out = tmp_path / "trace.json"
    TRACER.start()
    try:
        run()
        TRACER.export(str(out))
    finally:
        TRACER.stop()
    return json.loads(out.read_text())["traceEvents"]


def _flows(events) -> dict[int, tuple[dict, dict]]:
    """Every flow as ``{id: (slice it leaves, slice it enters)}``; a flow leaves one
    slice and enters at most one (none: its message was not received while tracing)."""
    slices = [e for e in events if e["ph"] == "X" and "bind_id" in e]
    starts = [e for e in slices if e.get("flow_out")]
    ends = {e["bind_id"]: e for e in slices if e.get("flow_in")}
    assert len({e["bind_id"] for e in starts}) == len(starts)  # ids are unique
    assert len(ends) == len(slices) - len(starts)
    return {e["bind_id"]: (e, ends[e["bind_id"]]) for e in starts if e["bind_id"] in ends}


@pytest.mark.parametrize("backend", BACKENDS)
def test_flows_pair_right_with_several_senders_on_one_link(tmp_path, backend):
    """Four threads send on one endpoint at once, every message a length of its own:
    each flow must leave the send of a message and enter the callback (core) or the
    queue (host) of the same message, both ways, and a send refused for want of a
    buffer must not shift the pairing of those that follow."""
    lengths = [[1 + 4 * i + t for i in range(40)] for t in range(4)]
    got: list[int] = []
    refused: list[OSError] = []

    def run() -> None:
        with Rproc(
            f"flows-{backend}", ECHO_FW, table=table_for(backend), config=RprocConfig(spin=False)
        ) as rp:
            ept = rp.wait_channel(SERVICE, 10).create_ept()
            threads = [
                threading.Thread(target=lambda ns=ns: [ept.send(b"x" * n) for n in ns])
                for ns in lengths
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            for _ in range(160):
                got.append(len(ept.recv(10).data))
            os.kill(rp.pid, signal.SIGSTOP)  # fill the ring until sends are refused
            try:
                n = 200
                while len(refused) < 3:
                    try:
                        ept.trysend(b"y" * n)
                        n += 1
                    except RpmsgError as exc:
                        refused.append(exc)
            finally:
                os.kill(rp.pid, signal.SIGCONT)
            for _ in range(n - 200):
                got.append(len(ept.recv(10).data))
            for n in (300, 301, 302):  # after the refusals: still paired right
                ept.send(b"z" * n)
                got.append(len(ept.recv(10).data))

    events = _traced(tmp_path, run)
    sent = len(got)
    assert sorted(got[:160]) == sorted(n for ns in lengths for n in ns) and len(refused) == 3
    host = os.getpid()
    flows = list(_flows(events).values())
    messages = [(a, b) for a, b in flows if a["name"] == "send"]
    assert len(messages) == 2 * sent  # every message, and its echo
    for leave, enter in messages:
        assert leave["pid"] != enter["pid"] and leave["args"]["len"] == enter["args"]["len"]
        assert enter["name"] == ("queued" if enter["pid"] == host else "callback")
        assert enter["ts"] + enter["dur"] >= leave["ts"]


def test_name_service_announcements_are_flows_too(tmp_path):
    def run() -> None:
        with Rproc("nsflow", ECHO_FW, config=RprocConfig(spin=False)) as rp:
            rp.wait_channel(SERVICE, 10)

    flows = list(_flows(_traced(tmp_path, run)).values())
    [(announce, ns)] = [(a, b) for a, b in flows if a["name"] == "announce"]
    assert announce["args"]["name"] == SERVICE and announce["pid"] != os.getpid()
    assert ns["pid"] == os.getpid() and ns["name"] == "callback"
    assert ns["args"]["ept"] == 0x35 and ns["args"]["len"] == announce["args"]["len"] == 40


_FORGETFUL = """
import os, sys, time
from amplink.host import Rproc
from amplink.tracing import TRACER
TRACER.start()  # and never TRACER.stop(): the process's exit must remove the folder
with Rproc(sys.argv[1], "amplink.firmware.echo") as rp:
    print(os.path.dirname(TRACER.core_file(sys.argv[1])), flush=True)
    if sys.argv[2] == "wait":
        time.sleep(60)  # until Ctrl-C
    if sys.argv[2] == "raise":
        raise RuntimeError("the script failed")
TRACER.export(sys.argv[3])
"""


def _default_sigint() -> None:
    """In the child: Ctrl-C as a shell leaves it (a background job may ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("end", ["exit", "raise", "ctrl-c"])
def test_a_script_that_never_stops_the_tracer_leaves_no_trace_folder(tmp_path, end):
    """A traced script that exits (normally, on an exception or on Ctrl-C) without
    ``TRACER.stop()`` leaves none of its cores' event files behind in /tmp."""
    name = f"forget{os.getpid()}{end.replace('-', '')}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _FORGETFUL, name, "wait" if end == "ctrl-c" else end,
         str(tmp_path / "t.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - as a shell starts it
    )  # fmt: skip
    try:
        folder = proc.stdout.readline().strip()
        assert folder, proc.stderr.read()
        assert os.path.isdir(folder)  # where the core appends its events
        if end == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == {"exit": 0, "raise": 1, "ctrl-c": -signal.SIGINT}[end]
    assert not os.path.exists(folder)
