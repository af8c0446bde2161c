"""What a user sees in a 100-column terminal, and what Ctrl-C does there: `amplink up`'s
live view and `amplink demo`, each on a real pty whose screen pyte emulates, with
Ctrl-C typed on the terminal (SIGINT to its foreground process group)."""

import contextlib
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import pytest

from amplink.app.terminal import Terminal, table
from amplink.control.protocol import request
from pty_run import PtyRun, tagged_processes

HEADER = re.compile(r"^#\s+core\s+state\s+pid\s+firmware")


def core_rows(run: PtyRun) -> list[str]:
    return [line for line in run.lines() if re.match(r"^[01]\s+(m4|r5f)\s+running\s+\d+", line)]


def tagged_env(tag: str, state: Path) -> dict:
    return dict(os.environ, AMPLINK_TEST_TAG=tag, COLUMNS="", LINES="", XDG_STATE_HOME=str(state))


@pytest.fixture
def tag():
    t = uuid.uuid4().hex
    yield t
    assert tagged_processes(t) == []  # the command and its cores are gone


def column_cells(lines: list[str], column: str, after: str | None) -> dict[str, str]:
    """Per core, the text of the table's ``column`` (the next column is ``after``, None
    for the last): the pieces of its wrapped lines joined, as a user reads them."""
    header = next(line for line in lines if HEADER.match(line))
    start, end = header.index(column), header.index(after) if after else None
    cells: dict[str, list[str]] = {}
    row = None
    for line in lines[lines.index(header) + 2 :]:
        if not line.strip():
            break
        if m := re.match(r"^\d+\s+(\S+)", line):
            row = cells.setdefault(m.group(1), [])
        if row is not None:
            row.append(line[start:end].strip())
    return {core: "".join(pieces) for core, pieces in cells.items()}


def names_are_whole(lines: list[str]) -> None:
    """The firmware and every channel name can be read in full: wrapped, never cropped."""
    assert not any("…" in line for line in lines), lines
    assert set(column_cells(lines, "firmware", "channels").values()) == {"amplink.firmware.demo"}, (
        lines
    )
    channels = "rpmsg-openamp-demo-channelrpmsg-rawrpmsg-tty"
    assert set(column_cells(lines, "channels", " in ").values()) == {channels}, lines
    assert set(column_cells(lines, "devices", None).values()) >= {"m4/ttyRPMSG0m4/rpmsg0"}, lines


def test_up_live_view_at_100_columns_and_ctrl_c(tmp_path, tag):
    sock = tmp_path / "ctl.sock"
    run = PtyRun("up", "--socket", str(sock), cols=100, rows=30, env=tagged_env(tag, tmp_path))
    try:
        run.wait_for(lambda r: any(HEADER.match(line) for line in r.lines()), 60)
        run.wait_for(lambda r: len(core_rows(r)) == 2, 30)
        run.wait_for(lambda r: "rpmsg-tty" in r.text(), 30)
        # A crash logs lines while the view is redrawn: they go above it.
        assert request(Path(sock), "crash", core="m4", kind=1)["crashes"] == 1
        run.wait_for(lambda r: "crash detected in m4" in r.text(), 30)
        recovered = " 1   m4/ttyRPMSG0"  # one crash; its devices back
        run.wait_for(lambda r: any(row.endswith(recovered) for row in core_rows(r)), 30)
        run.wait_for(lambda r: r.text().count("rpmsg-tty") == 2, 30)
        for _ in range(8):  # four redraws at least (two a second)
            run.pump(0.25)
        lines = run.lines()
        assert sum(bool(HEADER.match(line)) for line in lines) == 1, run.text()
        rows = core_rows(run)
        assert len(rows) == 2, run.text()
        assert rows[0].endswith(recovered), rows
        names_are_whole(lines)
        assert run.scrolled() == 0, run.text()  # nothing scrolled: drawn in place, in 100 cols
        crash_line = next(i for i, line in enumerate(lines) if "crash detected in m4" in line)
        assert crash_line < next(i for i, line in enumerate(lines) if HEADER.match(line))
        # `status` at the same 100 columns: the same table, names whole
        env = tagged_env(tag, tmp_path)
        status = PtyRun("status", "--socket", str(sock), cols=100, rows=30, env=env)
        try:
            assert status.finish() == 0, status.text()
        finally:
            status.close()
        assert len(core_rows(status)) == 2 and status.scrolled() == 0, status.text()
        names_are_whole(status.lines())
        # and on a pipe, as wide as COLUMNS says
        piped = subprocess.run(
            [sys.executable, "-m", "amplink.app.cli", "status", "--socket", str(sock)],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(env, COLUMNS="100"),
            check=True,
        ).stdout.splitlines()
        assert max(len(line) for line in piped) <= 100, piped
        names_are_whole(piped)
    except BaseException:
        run.close()
        raise
    ctrl_c_ends_it(run)
    assert "ok  stop the board" in run.text()
    assert not sock.exists() and not (tmp_path / "m4").exists()


def test_every_line_of_the_demo_fits_100_columns(tmp_path, tag):
    """The demo on a pty that says 100 columns, its screen emulated 300 wide: a line the
    demo wrote wider than 100 would show so.  Long lines (a step's result, the log lines
    of the crash step) are wrapped between words, the rest indented under the first."""
    run = PtyRun("demo", cols=100, rows=40, env=tagged_env(tag, tmp_path), screen_cols=300)
    try:
        assert run.finish(120) == 0, run.text()
    finally:
        run.close()
    lines = run.all_lines()
    assert any("every core stopped" in line for line in lines), lines
    assert [line for line in lines if len(line) > 100] == []
    crash = next(i for i, line in enumerate(lines) if "ok  crash m4 on purpose" in line)
    step = [lines[crash]]
    for line in lines[crash + 1 :]:  # its continuation: indented under its label
        if not line.startswith(" " * 10) or line[10] == " ":
            break
        step.append(line)
    assert len(step) > 1  # (a long result: this test checks how it wraps)
    said = " ".join(line.strip() for line in step)
    assert re.search(
        r"crash #1 \(watchdog: crash requested through debugfs\) handled, "
        r"running again as pid \d+, echo works",
        said,
    ), step
    logged = next(i for i, line in enumerate(lines) if "crash detected in m4" in line)
    assert lines[logged + 1].startswith("    ") and not lines[logged + 1].startswith("     ")
    whole = lines[logged] + " " + lines[logged + 1].strip()
    assert "type watchdog (crash requested through debugfs); handling crash #1" in whole


def test_ctrl_c_on_demo_stops_the_board_without_a_traceback(tmp_path, tag):
    run = PtyRun("demo", cols=100, rows=40, env=tagged_env(tag, tmp_path))
    try:
        run.wait_for(lambda r: "ok  boot r5f" in r.text(), 60)
    except BaseException:
        run.close()
        raise
    out = ctrl_c_ends_it(run)
    assert "crash detected" not in out and "stop the board" in out


def ctrl_c_ends_it(run: PtyRun) -> str:
    """Type Ctrl-C: the command ends with 130, no traceback, and its cores never got
    the terminal's SIGINT.  Its whole output."""
    try:
        run.ctrl_c()
        code = run.finish()
    finally:
        run.close()
    out = run.raw.decode(errors="replace")
    assert code == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "killed by SIGINT" not in out
    return out


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.3, 0.6, 1.0])
def test_ctrl_c_while_the_command_starts_is_no_traceback(tmp_path, delay):
    """SIGINT while the console script still imports the stack: the command ends as
    interrupted (the shell's 130: killed by SIGINT, or 130 once it took over)."""
    script = Path(sys.executable).parent / "amplink"
    proc = subprocess.Popen(
        [str(script), "board", "check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path)),
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # On a loaded machine the signal may still come before any module of the package
    # runs (in CPython's own start, or the console script's import of the package):
    # CPython reports that itself, and no Python program can change it.  From then on,
    # no traceback: none may show a frame of the package.
    assert "/amplink/" not in err, err
    if "Traceback" in err:
        assert "in <module>\n    from amplink.app.launch import main" in err or (
            "Fatal Python error: init_import_site" in err
        ), err
    in_site = "Fatal Python error: init_import_site" in err  # CPython's start: it ends with 1
    codes = (-signal.SIGINT, 130, 0, *((1,) if in_site else ()))
    assert proc.returncode in codes, (proc.returncode, script, out, err)


CTRL_C_IN_BUILD_PARSER = """
import os, signal, sys
from amplink.app import cli, launch
build_parser = cli.build_parser
def interrupted_build_parser():
    os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C that comes while argparse runs
    return build_parser()
cli.build_parser = interrupted_build_parser
sys.argv = ["amplink", "board", "check"]
sys.exit(launch.main())
"""


def test_ctrl_c_while_the_parser_is_built_ends_quietly_with_130(tmp_path):
    """Once amplink's own code runs, a Ctrl-C is the command's: argparse included."""
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_IN_BUILD_PARSER],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path)),
    )
    assert (proc.returncode, proc.stderr) == (130, ""), proc.stderr


@pytest.mark.parametrize("interactive", [False, True])
def test_a_peer_given_name_cannot_send_escape_sequences_to_the_terminal(interactive):
    """A channel name is the remote's to choose: in a table its control characters are
    shown as \\xNN, on a pipe and on a terminal alike, never written raw."""
    out = io.StringIO()
    name = "evil\x1b[2J\x07\x9bname"
    Terminal(out, interactive=interactive).show(table(["core", "channels"], [["m4", name]]))
    text = out.getvalue()
    assert "\x1b[2J" not in text and "\x07" not in text and "\x9b" not in text
    assert "evil\\x1b[2J\\x07\\x9bname" in text


def test_ctrl_c_on_bench_leaves_no_traceback_and_no_process(tmp_path, tag):
    """Ctrl-C while the bench's Pipe peer and its CPU hogs run: neither gets the
    terminal's SIGINT (no traceback of theirs), the bench ends them and itself with 130."""
    args = ["--rounds", "3000", "--messages", "30000", "--deliveries", "20", "--cycles", "1"]
    args += ["--linux-rounds", "0", "--openamp-runs", "0", "--repeat", "1", "--load", "1"]
    run = PtyRun("bench", *args, cols=100, rows=40, env=tagged_env(tag, tmp_path))
    deadline = time.monotonic() + 60
    while not any(_is_pipe_peer(pid) for pid in _children(run.proc.pid)):
        if time.monotonic() > deadline or not run.pump(0.005):
            run.close()
            pytest.fail(f"no Pipe peer started:\n{run.text()}")
    ctrl_c_ends_it(run)
    assert tagged_processes(tag) == []


def test_ctrl_c_on_bench_prints_what_was_measured_and_leaves_the_terminal_as_it_was(tmp_path, tag):
    """Ctrl-C once the Pipe is measured, while rpmsg is: the bench says it was
    interrupted, prints the rows it has (the Pipe's), ends its hogs and exits 130."""
    args = ["--rounds", "3000", "--messages", "200000", "--deliveries", "20", "--cycles", "1"]
    args += ["--linux-rounds", "0", "--openamp-runs", "0", "--repeat", "1", "--load", "1"]
    run = PtyRun("bench", *args, cols=100, rows=40, env=tagged_env(tag, tmp_path))
    before = termios.tcgetattr(run.master)
    try:
        run.wait_for(lambda r: "measuring round trips and throughput over amplink" in r.text(), 120)
        assert termios.tcgetattr(run.master) == before
    except BaseException:
        run.close()
        raise
    out = ctrl_c_ends_it(run)
    shown = "\n".join(run.all_lines())
    assert "amplink bench: interrupted (SIGINT)" in shown, shown
    (pipe,) = [line for line in shown.splitlines() if line.startswith("multiprocessing.Pipe ")]
    assert len(pipe.split()) == 5 and float(pipe.split()[1]) > 0, pipe  # p50, p99, msgs/s, MB/s
    assert "interrupted: the figures above are what was measured before" in shown
    assert "measuring" not in shown and "Traceback" not in out
    assert tagged_processes(tag) == []  # the bench, its peers and its hogs


def test_an_interrupted_bench_json_is_valid_json_of_what_was_measured(tmp_path):
    """stdout a pipe (stderr a terminal, to see the progress): SIGINT once the Pipe is
    measured gives a JSON report with the Pipe's row and ``"interrupted": true``."""
    master, slave = os.openpty()
    args = ["--json", "--rounds", "3000", "--messages", "200000", "--repeat", "2"]
    args += ["--linux-rounds", "0", "--openamp-runs", "0", "--load", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "amplink.app.cli", "bench", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path), COLUMNS="", LINES=""),
    )
    os.close(slave)
    said = b""
    try:
        while b"throughput over amplink" not in said:
            ready, _, _ = select.select([master], [], [], 120)
            assert ready, said
            said += os.read(master, 65536)
        proc.send_signal(signal.SIGINT)  # to the bench only, as `kill -INT` does
        out, _ = proc.communicate(timeout=60)
        with contextlib.suppress(OSError):
            said += os.read(master, 65536)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 130
    assert b"amplink bench: interrupted (SIGINT)" in said and b"Traceback" not in said
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["results"][0]["name"] == "multiprocessing.Pipe"
    assert "delivery" not in report and "lifecycle" not in report  # never reached


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += map(int, f.read().split())
    except OSError:
        pass
    return found


def _is_pipe_peer(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"amplink.app.bench.pipe_peer" in f.read()
    except OSError:
        return False


BENCH_QUICK = ["--rounds", "300", "--messages", "3000", "--deliveries", "20", "--cycles", "1"]
BENCH_QUICK += ["--linux-rounds", "0", "--openamp-runs", "0", "--repeat", "1"]


def test_bench_says_what_it_measures_on_a_terminal_and_the_line_goes(tmp_path, tag):
    run = PtyRun("bench", *BENCH_QUICK, cols=100, rows=40, env=tagged_env(tag, tmp_path))
    try:
        run.wait_for(lambda r: "measuring round trips and throughput over" in r.text(), 60)
        assert run.finish(180) == 0, run.text()
    finally:
        run.close()
    shown = "\n".join(run.all_lines())
    assert "measuring" not in shown and "p50" in shown, shown  # transient: the report stays


def test_bench_json_on_a_pipe_is_json_alone_while_a_terminal_stderr_shows_progress(tmp_path):
    """stdout a pipe, stderr a terminal: the progress goes to the terminal only."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "amplink.app.cli", "bench", "--json", *BENCH_QUICK],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path), COLUMNS="", LINES=""),
    )
    os.close(slave)
    said = b""
    try:
        while True:  # the terminal until the bench closes it
            ready, _, _ = select.select([master], [], [], 180)
            assert ready, said
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the bench closed it
                break
            if not data:
                break
            said += data
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0
    assert json.loads(out)["baseline"] == "multiprocessing.Pipe"
    assert b"measuring round trips and throughput over multiprocessing.Pipe" in said
    assert b"measuring" not in out
