"""The control socket of `amplink up`, driven as a careless or hostile local client
would: malformed requests, idle connections, a hundred clients at once, a socket
folder another user made first.  The server runs in this process over a board whose
cores stay offline (the requests about it need no running core)."""

import errno
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from amplink.board import Board, load_board
from amplink.control import protocol, server
from amplink.control.protocol import default_socket, private_folder, request, runtime_dir
from amplink.control.server import ControlServer
from amplink.errors import AmplinkError


@pytest.fixture
def served(tmp_path):
    board = Board(load_board())
    srv = ControlServer(tmp_path / "ctl.sock")
    srv.serve(board)
    yield srv
    srv.close()
    board.stop()


def raw(path: Path, line: bytes) -> dict:
    """Send ``line`` as it is; the server's one-line answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(line)
        return json.loads(s.makefile("rb").readline())


MALFORMED = [
    (b"not json\n", errno.EPROTO, "not a JSON line"),
    (b"[1, 2]\n", errno.EPROTO, "must be a JSON object"),
    (b'{"core": "m4"}\n', errno.EINVAL, "unknown command None"),
    (b'{"cmd": 5}\n', errno.EINVAL, "unknown command 5"),
    (b'{"cmd": "reboot"}\n', errno.EINVAL, "unknown command 'reboot'"),
    (b'{"cmd": "stop"}\n', errno.EINVAL, "stop: argument 'core' is missing"),
    (b'{"cmd": "stop", "core": 4}\n', errno.EINVAL, "'core' must be a string, not 4"),
    (b'{"cmd": "stop", "core": ""}\n', errno.EINVAL, "'core' must not be empty"),
    (b'{"cmd": "stop", "core": "m4", "force": 1}\n', errno.EINVAL, "unknown argument 'force'"),
    (b'{"cmd": "crash", "core": "m4", "kind": "x"}\n', errno.EINVAL, "'kind' must be an integer"),
    (b'{"cmd": "crash", "core": "m4", "kind": 9}\n', errno.EINVAL, "between 0 and 2"),
    (b'{"cmd": "crash", "core": "m4", "wait": 1}\n', errno.EINVAL, "'wait' must be true or false"),
    (b'{"cmd": "trace", "core": "m4", "index": -1}\n', errno.EINVAL, "between 0 and 255"),
    (b'{"cmd": "trace", "core": "m4", "index": 1.5}\n', errno.EINVAL, "must be an integer"),
    (
        b'{"cmd": "send", "core": "m4", "service": "s", "data_hex": "zz"}\n',
        errno.EINVAL,
        "'data_hex' must be hexadecimal",
    ),
    (
        b'{"cmd": "send", "core": "m4", "service": "s", "data_hex": "", "wait": "abc"}\n',
        errno.EINVAL,
        "'wait' must be a number",
    ),
    (
        b'{"cmd": "send", "core": "m4", "service": "s", "data_hex": "", "wait": -1}\n',
        errno.EINVAL,
        "'wait' must be between 0 and 3600",
    ),
    (b'{"cmd": "recovery", "core": "m4", "value": "maybe"}\n', errno.EINVAL, "one of enabled"),
    (b'{"cmd": "listen", "core": "m4"}\n', errno.EINVAL, "argument 'service' is missing"),
    (b'{"cmd": "stop", "core": "x"}\n', errno.ENODEV, "has no core 'x'"),
    (b'{"cmd": "stop", "core": "m4"}\n', errno.EINVAL, "m4 is offline: nothing to stop"),
    (b'{"cmd": "tty", "core": "m4"}\n', errno.ENODEV, "m4 is offline: it has no console"),
    (b'{"cmd": "trace", "core": "m4"}\n', errno.ENODEV, "trace0 not available"),
]


def test_every_malformed_request_gets_a_specific_error(served, caplog):
    for line, code, text in MALFORMED:
        reply = raw(served.path, line)
        assert reply["ok"] is False and reply["errno"] == code, (line, reply)
        assert text in reply["error"], (line, reply)
    too_long = raw(served.path, b'{"cmd": "' + b"x" * (protocol.MAX_LINE + 10) + b'"}\n')
    assert too_long["errno"] == errno.EPROTO and "longer than" in too_long["error"]
    assert "internal error" not in caplog.text and "Traceback" not in caplog.text
    assert request(served.path, "ping") == "pong"  # and it keeps serving


def test_a_missing_firmware_is_named_when_it_is_set(served, tmp_path):
    missing = str(tmp_path / "does_not_exist.elf")
    with pytest.raises(AmplinkError) as info:
        request(served.path, "firmware", core="m4", file=missing)
    assert info.value.errno == errno.ENOENT and f"firmware file {missing} not found" in str(
        info.value
    )
    with pytest.raises(AmplinkError, match=r"firmware module 'no\.such\.fw' not found"):
        request(served.path, "firmware", core="m4", file="no.such.fw")


def test_a_file_that_is_no_firmware_is_refused_when_it_is_set_not_at_start(served, tmp_path):
    with pytest.raises(AmplinkError) as info:
        request(served.path, "firmware", core="m4", file="/etc/passwd")
    assert info.value.errno == errno.ENOEXEC
    said = str(info.value)
    assert "/etc/passwd is not an ELF image (it starts with b'root'" in said
    assert "nor a Python program (.py); a firmware is an ELF image with a .resource_table" in said
    no_main = tmp_path / "fw.py"
    no_main.write_text("x = 1\n")
    with pytest.raises(AmplinkError, match=r"fw\.py defines no main\(core\) function"):
        request(served.path, "firmware", core="m4", file=str(no_main))
    assert request(served.path, "status")["cores"][0]["firmware"] == "amplink.firmware.demo"
    request(served.path, "firmware", core="m4", file="amplink.firmware.echo")  # a good one


def control_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("amplink-control")]


def test_idle_connections_cost_no_thread_and_time_out(served, monkeypatch):
    monkeypatch.setattr(server, "READ_TIMEOUT", 1.0)
    request(served.path, "ping")  # the pool's first worker exists from now on
    threads = control_threads()
    idle = []
    for _ in range(server.MAX_CONNECTIONS + 20):
        idle.append(protocol.connect(served.path, 30))  # waits while the backlog is full
    try:
        time.sleep(0.2)  # let the server accept them all (nothing to wait on: they are idle)
        assert control_threads() == threads  # no thread per connection
        answers = [json.loads(s.makefile("rb").readline() or b"{}") for s in idle]
        refused = [a for a in answers if a.get("errno") == errno.EBUSY]
        timed_out = [a for a in answers if a.get("errno") == errno.ETIMEDOUT]
        assert len(refused) >= 20 and len(refused) + len(timed_out) == len(idle)
        assert "no request line within 1s" in timed_out[0]["error"]
    finally:
        for s in idle:
            s.close()
    assert request(served.path, "ping") == "pong"


def test_a_hundred_clients_at_once_all_get_answers(served):
    results, errors = [], []
    start = threading.Barrier(100)

    def client() -> None:
        start.wait()
        try:
            results.append(request(served.path, "status")["board"])
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == ["amplink-default"] * 100


def test_the_default_socket_is_in_a_folder_no_other_user_can_make(monkeypatch, tmp_path):
    monkeypatch.delenv("AMPLINK_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_socket() == tmp_path / "amplink" / "control.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if not Path(f"/run/user/{os.getuid()}").is_dir():
        assert runtime_dir() == tmp_path / "home" / ".cache" / "amplink" / "run"
    assert not str(runtime_dir()).startswith("/tmp/amplink")


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user owns needs root")
def test_a_folder_another_user_made_is_refused_saying_what_to_do(tmp_path):
    squatted = tmp_path / "amplink"
    squatted.mkdir(mode=0o700)
    os.chown(squatted, 65534, 65534)
    with pytest.raises(AmplinkError) as info:
        private_folder(squatted)
    assert info.value.errno == errno.EPERM
    assert "belongs to uid 65534" in str(info.value) and "--socket" in str(info.value)


def test_a_shared_folder_is_refused_without_advice_to_chmod_it(tmp_path):
    """``up --socket /tmp/x.sock``: /tmp is everyone's (sticky); never say chmod it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(AmplinkError) as info:
        private_folder(shared)
    assert info.value.errno == errno.EPERM
    assert "chmod" not in str(info.value) and "a private folder of yours" in str(info.value)
