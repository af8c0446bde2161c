"""`amplink up` and the commands that reach it through its control socket.

`up` runs as a real process, as a user runs it; the client commands run in this
process through `cli.main` (and a few as processes, for exit codes and streams).
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amplink.app import cli, up
from amplink.control import server as srv
from amplink.control.protocol import request
from amplink.control.server import ControlServer
from amplink.errors import AmplinkError
from emulated import needs_firmware
from waiting import wait_for

READY_TIMEOUT = 60.0
WHY = "(watchdog: crash requested through debugfs)"  # what `amplink crash` says by default


def read_line_within(stream, timeout: float) -> str:
    """One line from a child's pipe, or fail after ``timeout`` s (never hangs)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout}s"
    return stream.readline()


class Up:
    """An `amplink up` process on a private socket."""

    def __init__(self, socket_path, *args: str) -> None:
        self.socket = str(socket_path)
        self.state = Path(socket_path).parent / "state"  # core dumps go there, not to ~
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amplink.app.cli", "up", "--socket", self.socket, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, XDG_STATE_HOME=str(self.state)),
        )
        self.lines: list[str] = []
        while True:
            line = read_line_within(self.proc.stdout, READY_TIMEOUT)
            assert line, f"up exited: {self.proc.stderr.read()}"
            self.lines.append(line)
            if line.startswith(up.READY):
                return

    def cli(self, *args: str) -> int:
        return cli.main([args[0], "--socket", self.socket, *args[1:]])

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)  # to the process only, as `timeout -s INT` does
        out, _err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out


@pytest.fixture
def board_up(tmp_path):
    u = Up(tmp_path / "ctl.sock")
    yield u
    if u.proc.poll() is None:
        u.proc.kill()
        u.proc.wait()


def status(u: Up) -> dict:
    return {c["name"]: c for c in request(Path(u.socket), "status")["cores"]}


def test_up_serves_the_board_and_stops_cleanly_on_ctrl_c(board_up, capsys):
    u = board_up
    assert any("ok  boot m4" in line for line in u.lines)
    # send waits for the channel; rpmsg-raw is the demo firmware's last announcement
    assert u.cli("send", "m4", "rpmsg-openamp-demo-channel", "hello") == 0
    assert capsys.readouterr().out == "hello\n"
    assert u.cli("send", "r5f", "rpmsg-raw", "--hex", "616263") == 0
    assert capsys.readouterr().out == "ABC\n"
    assert u.cli("send", "m4", "rpmsg-raw", "x", "--no-reply") == 0
    assert capsys.readouterr().out == "sent 1 byte\n"

    assert u.cli("status", "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert st["board"] == "amplink-default" and st["socket"] == u.socket
    cores = {c["name"]: c for c in st["cores"]}
    assert cores["m4"]["state"] == cores["r5f"]["state"] == "running"
    assert cores["m4"]["channels"] == ["rpmsg-openamp-demo-channel", "rpmsg-raw", "rpmsg-tty"]
    assert cores["m4"]["messages_out"] >= 2 and cores["m4"]["messages_in"] >= 4
    pids = [cores["m4"]["pid"], cores["r5f"]["pid"]]

    assert u.cli("status") == 0
    table = capsys.readouterr().out
    assert "board amplink-default" in table and "r5f" in table and "crashes" in table

    code, out = u.stop()
    assert code == 130  # ended by SIGINT, as a shell reports it
    assert "ok  stop the board" in out
    assert not os.path.exists(u.socket)
    assert list((u.state / "amplink" / "coredumps" / "amplink-default").iterdir()) == []
    for pid in pids:  # the cores are gone with it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_ctrl_c_after_the_stop_was_handled_still_ends_with_130(board_up):
    """A second Ctrl-C just as `up` has stopped the board does not kill it by SIGINT
    (nor raise anywhere in its exit): it ends with 130, quietly."""
    u = board_up
    u.proc.send_signal(signal.SIGINT)
    while "ok  stop the board" not in (line := read_line_within(u.proc.stdout, 60)):
        assert line, f"up exited: {u.proc.stderr.read()}"
    while u.proc.poll() is None:  # Ctrl-C after Ctrl-C until it has ended
        u.proc.send_signal(signal.SIGINT)
        select.select([], [], [], 0.002)
    err = u.proc.stderr.read()
    assert u.proc.returncode == 130, (u.proc.returncode, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not os.path.exists(u.socket)


def test_lifecycle_commands(board_up, capsys):
    u = board_up
    assert u.cli("stop", "r5f") == 0
    assert "r5f, state offline" in capsys.readouterr().out
    assert status(u)["r5f"]["state"] == "offline"
    assert u.cli("stop", "r5f") == 1
    assert "r5f is offline: nothing to stop" in capsys.readouterr().err

    assert u.cli("firmware", "r5f", "/etc/passwd") == 1  # refused now, not at the start
    assert "/etc/passwd is not an ELF image" in capsys.readouterr().err
    assert u.cli("firmware", "r5f", "amplink.firmware.echo") == 0
    assert u.cli("start", "r5f") == 0
    capsys.readouterr()
    assert u.cli("firmware", "r5f", "amplink.firmware.demo") == 1
    assert "change firmware while offline" in capsys.readouterr().err
    st = status(u)["r5f"]
    assert st["firmware"] == "amplink.firmware.echo" and st["state"] == "running"

    assert u.cli("crash", "m4") == 0
    assert capsys.readouterr().out == (  # why, and why no dump, and how to get one
        f"m4: crash #1 {WHY} handled, now running; no dump written: core dumps are disabled "
        f"for m4 (`amplink coredump m4 enabled --socket {u.socket}` turns them on)\n"
    )
    assert u.cli("recovery", "m4", "disabled") == 0
    assert u.cli("crash", "m4", "--kind", "fatal") == 0
    assert "crash #2 (fatal error: crash requested through debugfs) handled, now crashed" in (
        capsys.readouterr().out
    )
    assert status(u)["m4"]["last_crash"] == "crash requested through debugfs"
    assert u.cli("recovery", "m4", "recover") == 0
    assert status(u)["m4"]["state"] == "running"
    capsys.readouterr()
    assert u.cli("coredump", "m4") == 0  # off: none will come until it is turned on
    assert f"  none in {u.state}" in (out := capsys.readouterr().out)
    assert f": dumps are off (`amplink coredump m4 enabled --socket {u.socket}` turns" in out
    assert u.cli("coredump", "m4", "enabled") == 0
    assert status(u)["m4"]["coredump"] == "enabled"
    capsys.readouterr()
    assert u.cli("coredump", "r5f") == 0  # the default board's r5f dumps; where: this session's
    (session,) = (u.state / "amplink" / "coredumps" / "amplink-default").iterdir()
    assert capsys.readouterr().out == (
        f"r5f: coredump enabled, 0 taken since amplink up started\n  none in {session} yet\n"
    )
    assert u.cli("crash", "r5f") == 0
    assert capsys.readouterr().out == (
        f"r5f: crash #1 {WHY} handled (dump: {session}/r5f-crash1.core), now running\n"
    )
    assert u.cli("coredump", "r5f") == 0
    out = capsys.readouterr().out
    assert out.endswith(f"1 taken since amplink up started\n  {session}/r5f-crash1.core\n")

    assert u.cli("send", "m4", "nosuch", "hi") == 1  # a running core's channels are named
    assert "m4 has no 'nosuch' channel: its firmware (amplink.firmware.demo) announced no " \
        "nosuch (its channels: rpmsg-openamp-demo-channel, rpmsg-raw, rpmsg-tty)" in \
        capsys.readouterr().err  # fmt: skip
    assert u.cli("stop", "nosuch") == 1
    assert "has no core 'nosuch' (cores: m4, r5f, or remoteproc0..1)" in capsys.readouterr().err

    code, out = u.stop()  # on a pipe, up reported the changes it saw, one line each
    assert code == 130
    assert re.search(r"^m4: .*crash #[12]: crash requested through debugfs", out, re.M), out
    assert [p.name for p in session.iterdir()] == ["r5f-crash1.core"]  # the dump stays


def test_crash_says_why_no_dump_was_written(board_up, capsys):
    u = board_up
    (session,) = (u.state / "amplink" / "coredumps" / "amplink-default").iterdir()
    session.rmdir()
    session.write_text("")  # the session's dump folder is gone: a file stands there
    assert u.cli("crash", "r5f") == 0
    assert capsys.readouterr().out == (
        f"r5f: crash #1 {WHY} handled (no dump written: cannot write "
        f"{session}/r5f-crash1.core: "
        "Not a directory), now running\n"
    )
    session.unlink()


def test_an_inline_coredump_is_read_by_the_coredump_command_and_never_holds_up_a_stop(
    board_up, capsys
):
    u = board_up
    (session,) = (u.state / "amplink" / "coredumps" / "amplink-default").iterdir()
    assert u.cli("coredump", "m4", "inline") == 0
    capsys.readouterr()
    assert u.cli("crash", "m4") == 0
    assert capsys.readouterr().out == (
        f"m4: crash #1 {WHY}, now crashed: its inline core dump waits to be read before "
        f"recovery goes on; `amplink coredump m4 --socket {u.socket}` reads and saves it\n"
    )
    assert status(u)["m4"]["state"] == "crashed"
    assert u.cli("coredump", "m4") == 0
    assert capsys.readouterr().out == (
        "m4: coredump inline, 1 taken since amplink up started\n"
        "  the inline dump of crash #1 was waiting: read now, recovery goes on\n"
        f"  {session}/m4-crash1.core\n"
    )
    assert (session / "m4-crash1.core").read_bytes()[:4] == b"\x7fELF"
    wait_for(lambda: status(u)["m4"]["state"] == "running", "m4 recovered")

    assert u.cli("crash", "m4") == 0  # this one nobody reads: the stop drops it at once
    assert f"crash #2 {WHY}, now crashed: its inline core dump waits" in capsys.readouterr().out
    u.proc.send_signal(signal.SIGINT)
    out, err = u.proc.communicate(timeout=60)  # not the 300 s recovery would wait
    assert u.proc.returncode == 130 and "ok  stop the board" in out
    assert "m4: inline coredump of crash #2 was not read before the core was stopped" in err
    assert sorted(p.name for p in session.iterdir()) == ["m4-crash1.core"]


def test_tty_trace_and_listen(board_up, capsys):
    u = board_up
    assert u.cli("tty", "m4") == 0
    path = capsys.readouterr().out.strip()  # a stable name next to the socket
    assert path == str(Path(u.socket).parent / "m4" / "ttyRPMSG0")
    assert os.readlink(path).startswith("/dev/pts/") and os.path.exists(path)
    assert os.path.realpath(Path(u.socket).parent / "remoteproc0") == os.path.dirname(path)
    assert u.cli("crash", "remoteproc0") == 0  # a new boot: a new pty, the same name
    capsys.readouterr()
    assert u.cli("tty", "m4") == 0
    assert capsys.readouterr().out.strip() == path
    assert os.readlink(path).startswith("/dev/pts/") and os.path.exists(path)
    assert u.cli("trace", "r5f") == 0  # the demo firmware's r5f logged nothing
    assert "r5f: trace0 is empty" in capsys.readouterr().err
    assert u.cli("trace", "r5f", "--index", "3") == 1  # says which there are
    assert "r5f: trace3 not available: its firmware has trace0\n" in capsys.readouterr().err

    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amplink.app.cli",
            "listen",
            "m4",
            "rpmsg-tty",
            "--count",
            "1",
            "--json",
            "--socket",
            u.socket,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "listening on m4 rpmsg-tty" in read_line_within(listener.stderr, READY_TIMEOUT)
    assert u.cli("send", "m4", "rpmsg-tty", "uptime\r") == 0  # the console runs a command
    out, _ = listener.communicate(timeout=30)
    assert listener.returncode == 0
    (event,) = [json.loads(line) for line in out.splitlines()]
    assert event["event"] == "message"
    assert re.fullmatch(r"uptime\r\nm4 up \d+\.\d s\r\nm4> ", event["text"])
    assert bytes.fromhex(event["data_hex"]).decode() == event["text"]
    assert re.fullmatch(r"uptime\r?\nm4 up \d+\.\d s\r?\nm4> \n", capsys.readouterr().out)
    assert u.cli("trace", "m4") == 0
    assert "console:" in capsys.readouterr().out  # the firmware logged the command


def seqpacket(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(30)
    s.connect(path)
    return s


def test_endpoint_files_are_sockets_with_stable_names(board_up):
    """rpmsg-raw's endpoint file is a SEQPACKET socket at CORE/rpmsgN: one packet per
    message both ways, one client at a time, too long a message refused, a message
    nobody read kept for the next client, the name gone while the channel is and the
    same name back with it."""
    u = board_up
    path = str(Path(u.socket).parent / "m4" / "rpmsg0")
    assert wait_for(lambda: status(u)["m4"]["endpoints"]) == [path]
    with seqpacket(path) as a:
        a.send(b"hello")
        assert a.recv(1000) == b"HELLO"  # the demo's rpmsg-raw upper-cases
        with seqpacket(path) as b:
            assert b.recv(1000) == b""  # one opener at a time: closed at once
        a.send(b"one")
        a.send(b"two")
        assert [a.recv(1000), a.recv(1000)] == [b"ONE", b"TWO"]  # boundaries kept
        a.send(b"x" * 497)  # beyond virtio's 496-byte MTU: the connection ends
        assert a.recv(1000) == b""
    with seqpacket(path) as c:
        # A client that writes and never reads: shut for reading first, or a loaded
        # machine may let the answer reach its socket before close() (it was handed
        # over then, and goes with the socket, as one read and dropped would).
        c.shutdown(socket.SHUT_RD)
        c.send(b"nobody reads this")
    with seqpacket(path) as d:
        assert d.recv(1000) == b"NOBODY READS THIS"  # it waited for the next client
        assert u.cli("crash", "m4") == 0  # recovery: the channel goes and comes back
        assert d.recv(1000) == b""  # the end of the stream, as EPIPE after the queue
    with seqpacket(wait_for(lambda: status(u)["m4"]["endpoints"])[0]) as e:
        e.send(b"again")
        assert e.recv(1000) == b"AGAIN"
    assert u.cli("stop", "m4") == 0
    assert status(u)["m4"]["endpoints"] == []
    with pytest.raises(FileNotFoundError):
        seqpacket(path)
    assert u.cli("start", "m4") == 0
    assert wait_for(lambda: status(u)["m4"]["endpoints"]) == [path]


def test_a_glink_core_is_reached_through_its_devices(tmp_path, capsys):
    """Over GLINK a channel has one endpoint on each side: the host's drivers hold the
    console and rpmsg-raw channels, so send says to use their devices, which work."""
    board = Path(__file__).parent.parent / "examples" / "four-cores.toml"
    u = Up(tmp_path / "ctl.sock", str(board))
    try:
        path = str(Path(u.socket).parent / "dsp" / "rpmsg0")
        assert u.cli("send", "dsp", "rpmsg-raw", "hi") == 1
        err = capsys.readouterr().err
        assert "dsp's rpmsg-raw is a GLINK channel, which has one endpoint on each side, " \
            "and a host driver holds it: use its endpoint file" in err  # fmt: skip
        assert wait_for(lambda: status(u)["dsp"]["endpoints"]) == [path]
        with seqpacket(path) as s:
            s.send(b"x" * 3000)  # more than the core's 1 KiB intents: it grants a larger one
            assert s.recv(70_000) == b"X" * 3000
        assert u.cli("send", "dsp", "rpmsg-openamp-demo-channel", "echo") == 0
        assert capsys.readouterr().out == "echo\n"
    finally:
        assert u.stop()[0] == 130


def test_listen_ends_when_the_core_goes_away(board_up, capsys):
    u = board_up
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amplink.app.cli",
            "listen",
            "r5f",
            "rpmsg-raw",
            "--socket",
            u.socket,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "listening on r5f" in read_line_within(listener.stderr, READY_TIMEOUT)
    assert u.cli("stop", "r5f") == 0
    _out, err = listener.communicate(timeout=30)
    assert listener.returncode == 1
    assert "the channel went away" in err and "stopped" in err


def test_without_up_and_with_a_second_up(tmp_path, board_up):
    proc = subprocess.run(
        [sys.executable, "-m", "amplink.app.cli", "status", "--socket", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == cli.EXIT_NOT_RUNNING
    assert "no amplink up is running" in proc.stderr
    second = subprocess.run(
        [sys.executable, "-m", "amplink.app.cli", "up", "--socket", board_up.socket],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert f"another amplink up (pid {board_up.proc.pid}) is running in" in second.stderr
    assert "ok  boot" not in second.stdout  # refused before booting anything
    assert os.path.exists(board_up.socket)  # the first one still serves
    assert board_up.cli("status") == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_leaves_nothing_in_its_folder(tmp_path, sig):
    u = Up(tmp_path / "ctl.sock")
    assert {"ctl.sock", "up.lock", "m4", "remoteproc0"} <= {p.name for p in tmp_path.iterdir()}
    u.proc.send_signal(sig)
    u.proc.communicate(timeout=60)
    assert u.proc.returncode == 128 + sig
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # XDG_STATE_HOME, made by Up


def test_a_second_up_that_opened_the_lock_as_the_first_let_go_takes_it_on_the_new_file(
    tmp_path, monkeypatch
):
    """The classic race of a lock file removed at exit: B opens the file, A removes it
    and lets go, B locks the removed file.  B must notice (the path no longer names its
    file) and lock the file the path names, so that a third one is refused."""
    first = ControlServer(tmp_path / "ctl.sock")
    real_flock = srv.fcntl.flock
    raced = []

    def first_exits_between_open_and_flock(fd: int, op: int) -> None:
        if not raced:
            raced.append(fd)
            first.close()
        real_flock(fd, op)

    monkeypatch.setattr(srv.fcntl, "flock", first_exits_between_open_and_flock)
    second = ControlServer(tmp_path / "ctl.sock")
    try:
        assert raced  # the second had opened the first's file before it was removed
        lock = tmp_path / srv.LOCK_NAME
        held = os.fstat(second._lock_fd)
        assert (lock.stat().st_dev, lock.stat().st_ino) == (held.st_dev, held.st_ino)
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(AmplinkError, match="another amplink up"):
            ControlServer(tmp_path / "ctl.sock")
    finally:
        second.close()
    assert list(tmp_path.iterdir()) == []


def test_a_stale_socket_file_is_replaced(tmp_path):
    stale = tmp_path / "ctl.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # the file stays, nobody listens: as after a crash of amplink up
    u = Up(stale)
    try:
        assert u.cli("status") == 0
    finally:
        assert u.stop()[0] == 130


def test_the_socket_must_be_a_socket_in_a_private_folder(tmp_path):
    regular = tmp_path / "notes.txt"
    regular.write_text("keep me")
    with pytest.raises(AmplinkError, match="is not a socket"):
        ControlServer(regular)
    assert regular.read_text() == "keep me"
    public = tmp_path / "public"
    public.mkdir(mode=0o755)
    public.chmod(0o755)
    with pytest.raises(AmplinkError, match=r"readable or writable by others \(mode 755\)"):
        ControlServer(public / "ctl.sock")


@needs_firmware
def test_the_lifecycle_commands_work_on_emulated_cores(tmp_path, capsys):
    board = Path(__file__).resolve().parent.parent / "examples" / "cortex-m.toml"
    u = Up(tmp_path / "ctl.sock", str(board))
    try:
        st = status(u)
        assert [st[n]["state"] for n in ("lite", "openamp", "python")] == ["running"] * 3
        for core in ("lite", "openamp"):
            assert u.cli("send", core, "rpmsg-openamp-demo-channel", f"to {core}") == 0
            assert capsys.readouterr().out == f"to {core}\n"
        assert u.cli("crash", "lite") == 0
        assert capsys.readouterr().out.startswith(f"lite: crash #1 {WHY} handled, now running")
        assert u.cli("stop", "openamp") == 0
        assert "openamp, state offline" in capsys.readouterr().out
        assert u.cli("start", "openamp") == 0
        capsys.readouterr()
        assert u.cli("send", "openamp", "rpmsg-openamp-demo-channel", "again") == 0
        assert capsys.readouterr().out == "again\n"
        pids = [c["pid"] for c in status(u).values()]
        code, out = u.stop()
        assert code == 130 and "ok  stop the board" in out
        for pid in pids:  # the emulated cores are gone with it
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if u.proc.poll() is None:
            u.proc.kill()
            u.proc.wait()


def crash_loop_board(tmp_path: Path, limit: int) -> str:
    """A board whose one core runs firmware that raises as soon as it runs."""
    board = tmp_path / "loop.toml"
    fw = Path(__file__).parent / "firmware" / "raises_at_start.py"
    board.write_text(
        f'[board]\nname = "loop"\n[[mailbox]]\nname = "mu0"\n'
        f'[[core]]\nname = "c0"\nfirmware = "{fw}"\nmailbox = "mu0"\ncrash_loop_limit = {limit}\n'
    )
    return str(board)


def test_up_gives_up_on_firmware_that_crashes_at_start_and_says_so_once(tmp_path, capsys):
    u = Up(tmp_path / "ctl.sock", crash_loop_board(tmp_path, 3))
    try:
        wait_for(lambda: status(u)["c0"]["crashes"] == 3, "the third crash")
        wait_for(lambda: status(u)["c0"]["state"] == "offline", "recovery to give up")
        assert u.cli("stop", "c0") == 1
        assert "c0 is offline: nothing to stop (recovery gave up after 3 crashes" in (
            capsys.readouterr().err
        )
        started = time.monotonic()  # an offline core cannot crash: said at once
        assert u.cli("crash", "c0") == 1
        assert time.monotonic() - started < 10  # not the 30 s a crash is waited for
        assert "c0 is offline: nothing to crash" in capsys.readouterr().err
        assert u.cli("status") == 0  # says why it is offline
        said = " ".join(capsys.readouterr().out.split())
        assert "c0 is offline: recovery gave up after 3 crashes in a row" in said, said
        assert "(the last: the core process exited (exit code 1)" in said, said
        u.proc.send_signal(signal.SIGINT)
        out, err = u.proc.communicate(timeout=60)
    finally:
        if u.proc.poll() is None:
            u.proc.kill()
            u.proc.wait()
    assert u.proc.returncode == 130
    assert crash_report_counts(out, err) == (1, 1, 2)
    # the hint reaches this `up`, not the default socket's
    given = f"--socket {u.socket}"
    assert f"amplink start c0 {given} (amplink firmware c0 FILE {given} first" in out, out
    # dumps are off: each crash's log says that no dump was taken, and how to get one, once
    assert (out + err).count("handling crash #") == 3
    assert (out + err).count("; no core dump: coredump is disabled") == 3
    hint = f"dumps are disabled for it; amplink coredump c0 enabled {given} turns them on"
    assert out.count(hint) == 1, out
    assert "c0 crashed (the core process exited (exit code 1): RuntimeError: boom at start)" in out


def crash_report_counts(out: str, err: str) -> tuple[int, int, int]:
    """In up's output: the firmware's tracebacks, the gave-up lines, and the crashes
    said to be the same failure as an earlier one."""
    text = out + err
    return (
        text.count("Traceback"),
        text.count("recovery gave up"),
        text.count("(the same failure as crash #1)"),
    )


def test_up_stop_wins_against_a_core_rebooted_after_every_crash(tmp_path, capsys):
    """crash_loop_limit = 0: Linux's recovery, at once and for ever.  `amplink stop`
    stops it for good; status and firmware then agree that it is offline."""
    u = Up(tmp_path / "ctl.sock", crash_loop_board(tmp_path, 0))
    try:
        wait_for(lambda: status(u)["c0"]["crashes"] >= 3, "three crashes")
        assert u.cli("stop", "c0") == 0
        assert capsys.readouterr().out == "c0, state offline\n"
        after = status(u)["c0"]
        assert (after["state"], after["pid"]) == ("offline", None)
        assert u.cli("firmware", "c0", "amplink.firmware.echo") == 0  # only offline
        assert status(u)["c0"]["crashes"] == after["crashes"]  # nothing rebooted it
        assert u.cli("start", "c0") == 0
        assert status(u)["c0"]["state"] == "running"
        code, _out = u.stop()
    finally:
        if u.proc.poll() is None:
            u.proc.kill()
            u.proc.wait()
    assert code == 130
