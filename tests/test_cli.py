"""The amplink command: demo and bench, run as a user runs them."""

import importlib.resources
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amplink.app import cli
from amplink.app.bench import emulated as bench_emulated
from amplink.app.bench import main as bench_main
from amplink.app.bench import openamp as bench_openamp
from amplink.hw import imx_mu
from amplink.irq import held_signals
from amplink.rpmsg import glink_ends
from amplink.virtio import rings
from amplink.wording import counted
from emulated import needs_firmware
from pty_run import PtyRun
from resources import children, snapshot
from waiting import wait_for


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The amplink command in a fresh interpreter, as a user's shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "amplink.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_exits_zero_and_reports(capsys):
    before = snapshot()
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "board amplink-default" in out
    for core in ("m4", "r5f"):
        assert f"ok  boot {core} (amplink.firmware.demo)" in out
        assert f"echo on {core}, sizes 1..496 and up, every byte checked: 496 messages" in out
    assert "answered 'hello from the host'" in out
    assert "got 'HELLO, RAW CHANNEL'" in out
    crash = "crash m4 on purpose and let remoteproc recover it (it logs the crash, as Linux does)"
    assert f"{crash}: crash #1 (watchdog: crash requested" in out
    assert "echo works" in out
    assert "stop r5f: graceful shutdown, now offline" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("m4 ", "r5f "))}
    assert "123,256" in rows["m4"] and "crash, recovered" in rows["m4"]
    assert rows["r5f"].rstrip().endswith("offline") and "stop: graceful shutdown" in rows["r5f"]
    assert snapshot() == before


def test_demo_on_a_board_file(tmp_path, capsys):
    board = tmp_path / "one.toml"
    board.write_text(
        '[board]\nname = "solo"\n[[mailbox]]\nname = "mu"\n[[core]]\nname = "dsp"\n'
        'firmware = "amplink.firmware.demo"\nmailbox = "mu"\nrpmsg = "glink"\n'
    )
    assert cli.main(["demo", str(board)]) == 0
    out = capsys.readouterr().out
    assert "rpmsg over glink" in out and "echo on dsp" in out and "503 messages" in out
    # one core: crashed, not stopped
    assert "crash dsp on purpose and let remoteproc recover it" in out


def test_the_demo_says_it_skipped_the_echo_of_a_core_without_the_echo_channel(capsys):
    board = Path(__file__).resolve().parent.parent / "examples" / "sensor-board.toml"
    assert cli.main(["demo", str(board)]) == 0
    out = capsys.readouterr().out
    assert "skip  echo on sensor: its firmware offers no rpmsg-openamp-demo-channel channel" in out
    (row,) = [line.split() for line in out.splitlines() if line.startswith("sensor ")]
    # core, personality, boot ms, then echoed, bytes, rtt p50, rtt p99: none measured
    assert row[3:7] == ["-", "-", "-", "-"], row
    # and the "-" is explained under the table
    assert "- for sensor: no echo ran (its firmware offers no rpmsg-openamp-demo-channel" in out


def test_demo_failure_exit_codes(tmp_path):
    board = tmp_path / "bad.toml"
    board.write_text('[board]\nname = "x"\n[[core]]\nname = "m4"\nfirmware = "f"\n')
    proc = run_cli("demo", str(board))
    assert proc.returncode == 1
    assert f"amplink demo: error: {board}: core 'm4'.mailbox: required key is missing" in (
        proc.stderr
    )
    proc = run_cli("board", "check", str(board))
    assert proc.returncode == 1 and "core 'm4'.mailbox" in proc.stderr
    board.write_text(
        '[board]\nname = "x"\n[[mailbox]]\nname = "mu"\n[[core]]\nname = "m4"\n'
        f'firmware = "{tmp_path}/absent.elf"\nmailbox = "mu"\n'
    )
    proc = run_cli("demo", str(board))
    assert proc.returncode == 1 and "absent.elf" in proc.stderr


def test_board_check_summarizes():
    proc = run_cli("board", "check")
    assert proc.returncode == 0, proc.stderr
    assert "board amplink-default, 2 cores, valid" in proc.stdout
    assert "r5f: k3, imx-mu mu-r5f tx 1 rx 1" in proc.stdout


def test_counts_of_one_are_singular(tmp_path, capsys):
    board = tmp_path / "one.toml"
    board.write_text(
        '[board]\nname = "one"\n[[mailbox]]\nname = "mu"\n[[core]]\nname = "m4"\n'
        'firmware = "amplink.firmware.demo"\nmailbox = "mu"\n'
    )
    assert cli.main(["board", "check", str(board)]) == 0
    assert "board one, 1 core, valid" in capsys.readouterr().out
    report = {"runs": 1, "whole_runs": [], "rtt": [], "rtt_in_process": []}
    assert "1 whole run of" in "\n".join(bench_openamp.format_openamp(report, 1))
    assert (counted(1, "sent message"), counted(0, "byte")) == ("1 sent message", "0 bytes")


def test_bench_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AMPLINK_FIRMWARE_CACHE", str(tmp_path))  # rows of their own below
    args = ["bench", "--json", "--rounds", "300", "--messages", "3000", "--deliveries", "50"]
    args += ["--cycles", "3", "--linux-rounds", "0", "--repeat", "2"]  # Linux: tests/linux
    args += ["--openamp-runs", "0"]  # the OpenAMP figures: tests/openamp
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in report["results"]]
    assert names == [
        "multiprocessing.Pipe",
        "amplink rpmsg virtio",
        "amplink rpmsg glink",
        "amplink rpmsg virtio, spin off",
    ]
    assert len(report["repetitions"]) == 2 and report["load"] == {"processes": 0}
    for name in names[1:]:
        for figure in ("rtt_p50", "rtt_p99", "msgs_per_s"):
            spread = report["ratios"][name][figure]
            assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert [(b["name"], b["size"]) for b in report["largest"]] == [
        ("amplink rpmsg virtio", 496),
        ("amplink rpmsg glink", 65536),
    ]
    assert all(b["mb_per_s"] > 0 for b in report["largest"])
    for r in report["results"]:
        assert r["rtt_p50_us"] > 0 and r["rtt_p99_us"] >= r["rtt_p50_us"]
        assert r["msgs_per_s"] > 0 and r["mb_per_s"] > 0
    assert set(report["placement"]) >= {"pinned", "host_cpu", "peer_cpu"}
    assert report["virtqueue"] == ("compiled" if rings.COMPILED else "pure Python")
    assert report["glink_fifo"] == ("compiled" if glink_ends.COMPILED else "pure Python")
    assert report["sections"] == ("compiled" if held_signals.COMPILED else "pure Python")
    assert report["mu"] == ("compiled" if imx_mu.COMPILED else "pure Python")
    assert report["params"]["rounds"] == 300
    assert report["mailbox"]["msgs_per_s"] > 0
    assert report["zero_copy"]["msgs_per_s"] > 0
    for s in report["spinning"]:  # a starving miss counts as a miss and a preemption
        assert 0 <= s["starving"] <= min(s["misses"], s["preempted"])
    spun = {s["name"]: s for s in report["spinning"]}
    assert spun["amplink rpmsg virtio"]["hits"] > 0
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
    emulated = report["emulated"]
    assert emulated["rows"] == [] and "make firmware" in emulated["missing"]


@needs_firmware
def test_bench_emulated_rows():
    report = bench_emulated.bench_emulated(rounds=300, messages=3000, cycles=3, cpu=None)
    assert not report["missing"]
    assert [r["name"].split()[0] for r in report["rows"]] == ["python", "rpmsg-lite", "OpenAMP"]
    for r in report["rows"]:
        assert 0 < r["rtt_p50_us"] <= r["rtt_p99_us"] and r["msgs_per_s"] > 0
        assert 0 < r["mbox_p50_us"] <= r["mbox_p99_us"] and r["boot_p50_ms"] > 0
    assert [r["mips"] is not None and r["mips"] > 0 for r in report["rows"]] == [
        False,
        True,
        True,
    ]
    table = "\n".join(bench_emulated.format_emulated(report, 300, 3000))
    assert "OpenAMP (emulated M7)" in table and "MIPS" in table
    assert max(map(len, table.splitlines())) <= 100, table


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["send", "m4", "rpmsg-raw", "hi", "--timeout", "inf"], "inf is not a finite number"),
        (["send", "m4", "rpmsg-raw", "hi", "--timeout", "nan"], "nan is not a finite number"),
        (["send", "m4", "rpmsg-raw", "hi", "--timeout", "1e308"], "must be <= 1,000,000"),
        (["bench", "--messages", "99999999999999999999"], "must be <= 10,000,000"),
        (["bench", "--rounds", "99999999999999999999"], "must be <= 10,000,000"),
        (["bench", "--cycles", "100000"], "must be <= 10,000"),
        (["trace", "m4", "--index", "99999999"], "must be <= 255"),
    ],
)
def test_numbers_out_of_any_sane_range_are_usage_errors_not_tracebacks(args, said):
    """Found by a new user: a huge, infinite or NaN number reached the OS (a socket
    timeout) or a struct and came back as a traceback."""
    proc = run_cli(*args)
    assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("ratio", [0.79, 20.99, 176.6, 4321.0])
def test_bench_ratio_cells_stay_apart_however_large(ratio):
    cells = [bench_main._ratio_cell({"median": ratio, "min": ratio, "max": ratio * 1.5})] * 3
    row = f"{'  virtio, spin off':<30}" + "".join(cells)
    assert len(row) <= 100 and len(row.split()) == 3 + 3 * 2  # name words + 3 x (x, [..])


def test_bench_table_under_load(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AMPLINK_FIRMWARE_CACHE", str(tmp_path))  # no emulated rows
    args = ["bench", "--rounds", "200", "--messages", "1000", "--deliveries", "20", "--no-pin"]
    args += ["--cycles", "2", "--linux-rounds", "0", "--openamp-runs", "0"]
    args += ["--repeat", "1", "--load", "1"]
    before = children()
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "not pinned" in out and "1 CPU-bound process running" in out
    assert "ratio to the Pipe" in out and "  glink " in out and "  virtio, spin off " in out
    assert children() == before  # the load is gone
    assert "amplink rpmsg glink at its largest message (65,536 B)" in out
    assert "amplink mailbox (MU+IRQ)" in out and "interrupt -> client callback" in out
    assert "zero-copy send" in out
    assert "Linux guest: skipped (--linux-rounds 0)" in out
    assert "OpenAMP demos: skipped (--openamp-runs 0)" in out
    assert "(left out: the Cortex-M images are not built: run make firmware)" in out
    assert max(map(len, out.splitlines())) <= 100, out  # fits a 100-column terminal


def test_bench_load_processes_go_however_the_bench_ends(monkeypatch):
    """A signal while the load is starting kills those already started; a bench killed
    outright takes its load with it (the kernel kills them: PR_SET_PDEATHSIG)."""
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        if len(started) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the third one starts
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(bench_main.subprocess, "Popen", popen)
    with pytest.raises(KeyboardInterrupt), bench_main.cpu_load(5):
        pass
    assert [p.poll() for p in started] == [-signal.SIGKILL] * 2
    monkeypatch.undo()

    program = "import sys, time\nfrom amplink.app.bench.main import cpu_load\n"
    program += "with cpu_load(2):\n    print('started', flush=True)\n    time.sleep(600)\n"
    bench = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert bench.stdout.readline() == "started\n"
    children_file = Path(f"/proc/{bench.pid}/task/{bench.pid}/children")
    hogs = [int(p) for p in children_file.read_text().split()]
    assert len(hogs) == 2
    bench.kill()
    bench.wait()
    bench.stdout.close()
    for pid in hogs:
        wait_for(lambda pid=pid: _dead(pid), f"load process {pid} to die")


def _dead(pid: int) -> bool:
    """Gone, or a zombie its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_bench_load_has_a_limit():
    proc = run_cli("bench", "--load", str(bench_main.MAX_LOAD + 1))
    assert proc.returncode == 2 and f"must be <= {bench_main.MAX_LOAD}" in proc.stderr


def test_an_unknown_option_is_told_with_the_commands_own_usage():
    proc = run_cli("bench", "--bogus")
    assert proc.returncode == 2, proc.stderr
    assert "usage: amplink bench" in proc.stderr
    assert "amplink bench: error: unrecognized arguments: --bogus" in proc.stderr
    proc = run_cli("board", "check", "--bogus")
    assert proc.returncode == 2 and "amplink board check: error: unrecognized" in proc.stderr


def test_help_and_bad_usage():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "demo" in proc.stdout and "bench" in proc.stdout
    assert run_cli("nope").returncode == 2
    commands = [
        "demo",
        "up",
        "board",
        "status",
        "start",
        "stop",
        "crash",
        "recovery",
        "coredump",
        "firmware",
        "send",
        "listen",
        "tty",
        "trace",
        "fw",
        "bench",
    ]
    for command in commands:
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0
    assert run_cli("recovery", "m4", "maybe").returncode == 2


def _exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse: --help, --version and bad usage
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--version"], 0, "amplink 0."),
        (["fw", "pack", "no.such.module", "-o", "{t}/x.elf"], 1, "module 'no.such.module' not"),
        (["fw", "pack", "{t}/nomain.py", "-o", "{t}/x.elf"], 1, "defines no main(core)"),
        (["fw", "pack", "{t}/hostname", "-o", "{t}/x.elf"], 1, "hostname is not an ELF image"),
        (["fw", "pack", "{t}/ok.py", "-o", "{t}/no/x.elf"], 2, "the folder {t}/no does not"),
        (["demo", "--trace", "{t}/no/t.json"], 2, "the folder {t}/no does not exist"),
        (["up", "--trace", "{t}/no/t.json"], 2, "the folder {t}/no does not exist"),
        (["send", "--socket", "{t}/s", "--hex", "m4", "x", "zz"], 2, "'zz' is not hexadecimal"),
        (["send", "--socket", "{t}/s", "--timeout", "-1", "m4", "x", "y"], 2, "out of range"),
        (["listen", "--socket", "{t}/s", "--count", "-1", "m4", "x"], 2, "out of range"),
        (["serve-linux", "{t}/ok.py", "--socket", "{t}/no/v.sock"], 1, "listen on {t}/no/v.sock"),
        (["serve-linux", "/usr/bin/true", "--socket", "{t}/v.sock"], 1, "runs Python firmware: a"),
        (["serve-linux", "{t}/exits.py", "--socket", "{t}/v.sock"], 1, "called sys.exit(3) while"),
        (["openamp", "remote", "{t}/exits.py"], 1, "exits.py' called sys.exit(3) while it was"),
        (["fw", "pack", "{t}/script.py", "-o", "{t}/x.elf"], 1, "no main(core) function, which a"),
        (["fw", "pack", "{t}/script.py", "-o", "{t}/x.elf"], 1, "(line 3 ends the program while"),
        (["fw", "pack", "{t}/ok.py", "-o", "{t}/ok.py"], 2, "{t}/ok.py is the program itself"),
        (["openamp"], 2, "amplink openamp: error: the following arguments are required: COMMAND"),
        (["board"], 2, "amplink board: error: the following arguments are required: COMMAND"),
        ([], 2, "amplink: error: the following arguments are required: COMMAND (one of demo, up"),
        (["--bogus"], 2, "amplink: error: unrecognized arguments: --bogus; a COMMAND is required"),
        (["-v", "--x=1"], 2, "unrecognized arguments: --x=1; a COMMAND is required (one of demo"),
        (["fw", "--zz"], 2, "amplink fw: error: unrecognized arguments: --zz; a COMMAND is"),
        (["board"], 2, "amplink board: error: the following arguments are required: COMMAND (one"),
        (["openamp", "remote", "no.such.module"], 1, "amplink openamp remote: error: firmware"),
    ],
)
def test_bad_input_is_one_line_naming_it_with_the_usage_exit_code(
    tmp_path, capsys, argv, code, says
):
    (tmp_path / "ok.py").write_text("def main(core):\n    pass\n")
    (tmp_path / "nomain.py").write_text("x = 1\n")
    (tmp_path / "script.py").write_text("import sys\nprint('hi')\nsys.exit(main())\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\ndef main(core):\n    pass\n")
    (tmp_path / "hostname").write_text("vm\n")
    before = sorted(tmp_path.iterdir())
    assert _exit_code([a.format(t=tmp_path) for a in argv]) == code
    out, err = capsys.readouterr()
    assert says.format(t=tmp_path) in (out if code == 0 else err)
    assert "Traceback" not in out + err and sorted(tmp_path.iterdir()) == before


def test_a_module_name_that_is_a_file_here_says_how_to_name_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("def main(core):\n    pass\n")
    assert _exit_code(["fw", "pack", "text.txt", "-o", "t.elf"]) == 1
    err = capsys.readouterr().err
    assert "module 'text.txt' not found" in err and "the file text.txt in the current" in err
    assert "named ./text.txt" in err and not (tmp_path / "t.elf").exists()


def test_send_passes_the_arguments_bytes_as_the_shell_gave_them():
    """``send r5f rpmsg-raw "$(printf 'a\\xffb')"``: not UTF-8, sent as given."""
    argv = os.fsdecode(b"a\xffb")  # what Python makes of the shell's bytes
    assert cli._payload(cli.build_parser().parse_args(["send", "m4", "x", argv])) == b"a\xffb"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["serve-linux", "openamp remote"])
def test_serving_commands_exit_128_plus_the_signal(tmp_path, command, signum):
    """As the README says of every command: 130 after Ctrl-C, 143 after SIGTERM."""
    sock = str(tmp_path / "s.sock")
    extra = ["--shm", f"amplink-test-{os.getpid()}-{signum}"] if command != "serve-linux" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "amplink.app.cli", *command.split(), "amplink.firmware.echo",
         "--socket", sock, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("serving"), proc.stderr.read()  # type: ignore[union-attr]
        proc.send_signal(signum)
        assert proc.wait(60) == 128 + signum
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert not os.path.exists(sock)


def test_every_option_states_its_default_once():
    parser = cli.build_parser()
    helps = [
        p.format_help()
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for p in action.choices.values()
    ]
    for text in helps:
        assert "(default: None)" not in text and "(default: False)" not in text
        assert text.count("default: $AMPLINK_SOCKET") <= 1
    assert any("(default: 5.0)" in text for text in helps)


@pytest.mark.skipif(os.path.isdir("/sys/bus/rpmsg"), reason="this kernel has an rpmsg bus")
def test_raw_client_on_linux_without_an_rpmsg_bus_says_so_at_once():
    example = Path(__file__).parent.parent / "examples" / "raw_client.py"
    proc = subprocess.run(
        [sys.executable, str(example), "--linux"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "no rpmsg bus (/sys/bus/rpmsg is missing)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_package_ships_py_typed():
    assert importlib.resources.files("amplink").joinpath("py.typed").is_file()


def test_a_bench_interrupted_before_its_first_row_says_nothing_was_measured():
    """The report of a bench stopped before any transport's figures is its header and
    one line saying so, not empty tables (user review)."""
    report = {
        "placement": {"pinned": False, "host_cpu": None, "peer_cpu": None},
        "load": {"processes": 0},
        "virtqueue": "compiled",
        "sections": "compiled",
        "glink_fifo": "compiled",
        "params": {"rounds": 10, "rtt_size": 64, "messages": 10, "throughput_size": 496,
                   "repeat": 1},
        "results": [],
        "interrupted": True,
    }  # fmt: skip
    text = bench_main.format_report(report)
    assert text.splitlines()[-1] == "nothing was measured yet"
    assert "transport" not in text and "ratio to the Pipe" not in text
    # Stopped after the Pipe's row: that row, and no headings without rows (rvx4).
    pipe = {"name": "multiprocessing.Pipe", "rtt_p50_us": 40.0, "rtt_p99_us": 90.0,
            "msgs_per_s": 1e5, "mb_per_s": 49.6, "wakeups_per_rt": 2.0,
            "preempted_per_rt": 0.0}  # fmt: skip
    report |= {"results": [pipe], "ratios": {}, "largest": [], "spinning": []}
    text = bench_main.format_report(report)
    assert "multiprocessing.Pipe" in text
    assert "ratio to the Pipe" not in text and "host's spins" not in text


TOP_MEMORY_BOARD = """
[board]
name = "top"
[[mailbox]]
name = "mu"
[[memory]]
name = "top"
base = 0xFFF0_0000
size = 0x10_0000
[[core]]
name = "m4"
firmware = "amplink.firmware.echo"
mailbox = "mu"
memory_size = 0x1_0000_0000
memories = ["top"]
"""


def test_board_check_refuses_a_memory_at_the_top_of_4_gib_saying_what_to_move(tmp_path):
    board = tmp_path / "top.toml"
    board.write_text(TOP_MEMORY_BOARD)
    proc = run_cli("board", "check", str(board))
    assert proc.returncode == 1, proc.stdout
    said = proc.stderr
    assert f"{board}: core 'm4'.memory_size:" in said
    assert "platform memory 'top' ([[memory]]) ends at 0x100000000" in said
    assert "place memory 'top' lower" in said
    assert "raise its memory_size" not in said  # 4 GiB is its most: that would not help
    # below 4 GiB, raising memory_size is the other way out, and said so
    board.write_text(TOP_MEMORY_BOARD.replace("0x1_0000_0000", "0x1000_0000").replace(
        "0xFFF0_0000", "0x0FF0_0000"))  # fmt: skip
    said = run_cli("board", "check", str(board)).stderr
    assert "raise its memory_size to at least 0x10047000, or place memory 'top' lower" in said


def test_a_failed_boot_step_says_the_error_in_words_without_errno(tmp_path):
    board = tmp_path / "top.toml"
    board.write_text(TOP_MEMORY_BOARD)
    proc = run_cli("demo", str(board))
    assert proc.returncode == 1
    (failed,) = [line for line in proc.stdout.splitlines() if "FAILED" in line]
    assert "boot m4 (amplink.firmware.echo): " in failed and "needs 0x100047000 bytes" in failed
    assert "[Errno" not in proc.stdout + proc.stderr


def test_the_emulated_bench_table_says_what_each_column_is_and_fits_100_columns():
    row = {
        "name": "python core (amplink.firmware.echo)",
        "rtt_p50_us": 20.1,
        "rtt_p99_us": 40.2,
        "msgs_per_s": 123_456,
        "mbox_p50_us": 50.5,
        "mbox_p99_us": 99.9,
        "boot_p50_ms": 80.1,
        "mips": None,
    }
    lines = bench_emulated.format_emulated({"missing": "", "rows": [row]}, 300, 3000)
    text = "\n".join(lines)
    assert "echo: 300 round trips of 64 B; msgs/s: 3000 echoes of 496 B" in text
    assert "mailbox: 300 round trips of one word through the core's interrupt handler" in text
    head, cols = lines[-3].split(), lines[-2].split()
    assert head == ["echo", "rtt", "us", "mailbox", "rtt", "us", "boot"]  # units above
    assert cols == ["core", "p50", "p99", "msgs/s", "p50", "p99", "ms", "MIPS"]
    assert max(map(len, lines)) <= 100, text


def test_a_file_that_is_no_firmware_is_refused_at_the_command_wrapped_to_the_terminal(tmp_path):
    """Before any `amplink up` is asked (none runs here: that would be exit 3), and in a
    100-column terminal each line is wrapped between words, not folded mid-word."""
    run = PtyRun(
        "firmware", "m4", "/etc/passwd", "--socket", str(tmp_path / "ctl.sock"), screen_cols=300
    )
    try:
        code = run.finish()
    finally:
        run.close()
    lines = [line for line in run.all_lines() if line]
    assert code == 1, lines
    assert max(map(len, lines)) <= 100, lines  # the command wrapped them itself
    said = " ".join(line.strip() for line in lines)
    assert said.startswith("amplink firmware: error: /etc/passwd is not an ELF image"), said
    assert "a firmware is an ELF image with a .resource_table section" in said


def test_a_ctrl_c_during_the_demos_echo_warns_of_no_reply_left_without_its_endpoint(tmp_path):
    """The echo in flight when Ctrl-C comes (2 ms per message here) is taken by the
    board's stop with its endpoint, not logged as a message to no recipient."""
    slow = Path(__file__).parent / "firmware" / "slow_echo.py"
    board = tmp_path / "slow.toml"
    board.write_text(
        f'[board]\nname = "slow"\n[[mailbox]]\nname = "mu"\n[[core]]\nname = "c0"\n'
        f'firmware = "{slow}"\nmailbox = "mu"\n'
    )
    run = PtyRun("demo", str(board))
    try:
        run.wait_for(lambda r: "echo on c0, sizes" in r.text(), 120)  # its spinner: it runs
        run.ctrl_c()
        code = run.finish()
    finally:
        run.close()
    said = "\n".join(run.all_lines())
    assert code == 130, said
    assert "--  echo on c0, sizes 1..496 and up, every byte checked: interrupted" in said, said
    assert "ok  stop the board" in said and "no recipient" not in said, said
