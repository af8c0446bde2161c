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
    assert count == len(inst) and all({"ts", "pid", "tid", "cat", "args"} <= set(e) for e in inst)
    n = len(PAYLOAD)
    send = first(inst, 0, name="send", cat="rpmsg", pid=host, len=n)
    kick = first(inst, send["ts"], name="kick", pid=host)
    # The kick interrupts the core; its main loop may already be draining the ring
    # (it was awake), so the interrupt and the receive can come in either order.
    first(inst, kick["ts"], name="handled", cat="irq", pid=core_pid)
    core_rx = first(inst, send["ts"], name="receive", cat="rpmsg", pid=core_pid, len=n)
    core_tx = first(inst, core_rx["ts"], name="send", cat="rpmsg", pid=core_pid, len=n)
    rx_thread = "traced-mua_chan[1-0]"
    host_irq = first(inst, core_tx["ts"], name="thread", cat="irq", pid=host, action=rx_thread)
    host_rx = first(inst, host_irq["ts"], name="receive", cat="rpmsg", pid=host, len=n)
    assert host_rx["tid"] == host_irq["tid"]  # delivered in the mailbox IRQ thread
    states = [e["args"]["state"] for e in inst if e["name"] == "state"]
    assert states == ["running", "offline"]


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
    assert {"send", "receive", "kick", "handled", "add", "get", "put"} <= names
