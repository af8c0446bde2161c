"""The amplink command: demo and bench, run as a user runs them."""

import json
import subprocess
import sys

from amplink import cli
from resources import snapshot


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The amplink command in a fresh interpreter, as a user's shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "amplink.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_exits_zero_and_reports(capsys):
    before = snapshot()
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "496 echoed, all identical" in out
    assert "123,256 each way" in out
    assert "offline (stopped by graceful shutdown)" in out
    assert snapshot() == before


def test_demo_failure_exit_code(tmp_path):
    fw = tmp_path / "nothing.py"
    fw.write_text("def main(core):\n    pass\n")
    proc = run_cli("demo", "--firmware", str(fw))
    assert proc.returncode == 1
    assert "amplink demo: error:" in proc.stderr


def test_bench_json(capsys):
    args = ["bench", "--json", "--rounds", "300", "--messages", "3000", "--deliveries", "50"]
    args += ["--cycles", "3"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in report["results"]]
    assert names == ["multiprocessing.Pipe", "amplink rpmsg virtio", "amplink rpmsg glink"]
    assert [(b["name"], b["size"]) for b in report["largest"]] == [
        ("amplink rpmsg virtio", 496),
        ("amplink rpmsg glink", 65536),
    ]
    assert all(b["mb_per_s"] > 0 for b in report["largest"])
    for r in report["results"]:
        assert r["rtt_p50_us"] > 0 and r["rtt_p99_us"] >= r["rtt_p50_us"]
        assert r["msgs_per_s"] > 0 and r["mb_per_s"] > 0
    assert set(report["placement"]) >= {"pinned", "host_cpu", "peer_cpu"}
    assert report["params"]["rounds"] == 300
    assert report["mailbox"]["msgs_per_s"] > 0
    assert report["zero_copy"]["msgs_per_s"] > 0
    assert report["mailbox"]["rtt_p99_us"] >= report["mailbox"]["rtt_p50_us"] > 0
    combos = [(d["path"], d["load"]) for d in report["delivery"]]
    assert combos == [
        ("irq-thread", "idle"),
        ("workqueue", "idle"),
        ("irq-thread", "busy workqueue"),
        ("workqueue", "busy workqueue"),
    ]
    for d in report["delivery"]:
        assert 0 < d["p50_us"] <= d["p99_us"] <= d["max_us"]
    phases = [t["name"] for t in report["lifecycle"]]
    assert phases == ["spawn python -c pass", "boot to channel", "graceful stop", "reset stop"]
    assert all(0 < t["p50_ms"] <= t["p99_ms"] for t in report["lifecycle"])


def test_bench_table(capsys):
    args = ["bench", "--rounds", "200", "--messages", "1000", "--deliveries", "20", "--no-pin"]
    args += ["--cycles", "2"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "not pinned" in out and "virtio / Pipe" in out and "glink / Pipe" in out
    assert "amplink rpmsg glink at its largest message (65,536 B)" in out
    assert "amplink mailbox (MU+IRQ)" in out and "interrupt -> client callback" in out
    assert "zero-copy send" in out


def test_help_and_bad_usage():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "demo" in proc.stdout and "bench" in proc.stdout
    assert run_cli("nope").returncode == 2
