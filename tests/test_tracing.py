"""The tracer: every layer's events from host and core, merged into one Chrome/Perfetto
timeline in which one message's journey is in causal order."""

import json
import os

from amplink.host import Rproc, RprocConfig
from amplink.tracing import TRACER
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
    # ...which ends in the host, in the mailbox IRQ thread that received it.
    host_rx = flow_to(events, back, slices)
    assert host_rx["pid"] == host and host_rx["ts"] >= reply["ts"]
    irq = [e for e in slices if e["name"] == "thread" and e["tid"] == host_rx["tid"]]
    assert any(e["ts"] <= host_rx["ts"] <= e["ts"] + e["dur"] for e in irq)  # inside its run
    assert meta[("thread_name", host, host_rx["tid"])] == "irq/32-traced-mua_chan[1-0]"
    kick = first(inst, send["ts"], name="kick", pid=host)
    assert kick["ts"] <= core_cb["ts"] + core_cb["dur"]
    states = [e["args"]["state"] for e in inst if e["name"] == "state"]
    assert states == ["running", "offline"]


def flow_from(events, sl):
    """The id of the flow that starts inside slice ``sl``."""
    (start,) = [
        e
        for e in events
        if e["ph"] == "s" and e["tid"] == sl["tid"] and sl["ts"] <= e["ts"] <= sl["ts"] + sl["dur"]
    ]
    return start["id"]


def flow_to(events, flow_id, slices):
    """The slice in which flow ``flow_id`` ends."""
    (end,) = [e for e in events if e["ph"] == "f" and e["id"] == flow_id]
    assert end["bp"] == "e"
    return next(
        e
        for e in slices
        if e["pid"] == end["pid"]
        and e["tid"] == end["tid"]
        and e["ts"] <= end["ts"] <= e["ts"] + e["dur"]
    )


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
    phases = {e["ph"] for e in json.loads(out.read_text())["traceEvents"]}
    assert {"X", "s", "f", "i", "M"} <= phases
