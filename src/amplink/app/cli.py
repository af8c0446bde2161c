"""The ``amplink`` command.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage,
3 no ``amplink up`` answers on the control socket, 128 + the signal's number when a
signal ended it (130 for Ctrl-C, 143 for SIGTERM; see :mod:`amplink.app.signals`).

Subcommands are registered by functions that take the subparsers object
(:data:`REGISTRARS`); another module adds its own with :func:`add_command`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from amplink import __version__
from amplink.app import demo, signals, up
from amplink.app import openamp as cli_openamp
from amplink.app.bench import main as bench
from amplink.app.terminal import Terminal
from amplink.board import BoardSpec, CoreStatus, load_board
from amplink.board.system import MEMORY_FIT_RULES, check_firmware
from amplink.control.protocol import NotRunning, default_socket, request, stream
from amplink.errors import AmplinkError
from amplink.remoteproc.crash import crash_type, crash_words
from amplink.remoteproc.describe import describe_image, table_invalid
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.fwpack import pack_python
from amplink.remoteproc.fwref import resolve
from amplink.remoteproc.layout import default_rsc_table
from amplink.remoteproc.loader import read_firmware
from amplink.tracing import TRACER
from amplink.wording import counted

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
REPLY_SLACK = 30.0  # seconds a request may take beyond what it waits for by itself
Subcommands = Any  # argparse's _SubParsersAction, which has no public name


class UsageError(AmplinkError):
    """Arguments that parse but make no sense (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EINVAL, message)


# -- argument types ----------------------------------------------------------------
MAX_WAIT = 1e6  # s (11.6 days): a wait longer than any run (the OS refuses ~1e10)
MAX_BENCH_COUNT = 10_000_000  # round trips, messages, interrupts: minutes, and memory
MAX_REPEAT = 100
MAX_CYCLES = 10_000


def number(
    low: float, *, integer: bool = False, above: bool = False, high: float | None = None
) -> Callable[[str], Any]:
    """An argparse type: a number at least ``low`` (greater, with ``above``), and at
    most ``high`` if given."""

    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if integer else 'a number'}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if value < low or (above and value == low):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range (must be {'>' if above else '>='} {low:g})"
            )
        if high is not None and value > high:
            limit = f"{int(high):,}" if high == int(high) else f"{high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be <= {limit})")
        return value

    parse.__name__ = "integer" if integer else "number"
    return parse


def writable_file(text: str) -> str:
    """An argparse type: a file that can be created (its folder exists), named in the
    error otherwise, so that the command fails before it does any work."""
    path = Path(text).expanduser()
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} is not writable")
    return str(path)


# -- the commands ------------------------------------------------------------------
def _board(args: argparse.Namespace) -> BoardSpec:
    return load_board(args.board)


def _traced(args: argparse.Namespace, run: Callable[[], int]) -> int:
    """``run()``, recording a trace into ``args.trace`` if it names a file."""
    if args.trace is None:
        return run()
    TRACER.start()
    try:
        code = run()
        count = TRACER.export(args.trace)
    finally:
        TRACER.stop()
    print(f"trace: {count} events in {args.trace} (open it in https://ui.perfetto.dev)")
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    spec = _board(args)

    def run() -> int:
        demo.run(spec)
        return 0

    return _traced(args, run)


def _cmd_up(args: argparse.Namespace) -> int:
    spec = _board(args)
    dumps = session_coredump_dir(spec)
    try:
        os.makedirs(dumps, exist_ok=True)
    except OSError as exc:
        raise AmplinkError(
            exc.errno or errno.EIO, f"cannot make the core dump folder {dumps}: {exc.strerror}"
        ) from None

    def run() -> int:
        signum = up.run(spec, _socket(args), coredump_dir=dumps)
        return 128 + signum if signum else 0

    try:
        return _traced(args, run)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(dumps)  # only if no core crashed: dumps stay


def session_coredump_dir(spec: BoardSpec) -> str:
    """Where this ``amplink up`` writes core dumps: a folder of its own (named for its
    start time and pid, so that no later session overwrites a dump) in the board's
    ``coredump_dir``, else in ``$XDG_STATE_HOME/amplink/coredumps/<board>``
    (``~/.local/state/...``)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    base = spec.coredump_dir or os.path.join(state, "amplink", "coredumps", spec.name)
    return os.path.join(base, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")


def _cmd_board_check(args: argparse.Namespace) -> int:
    spec = _board(args)
    problems = []
    for c in spec.cores:  # every firmware as a boot would check it, without booting
        try:
            check_firmware(c)
        except AmplinkError as exc:
            key = "memory_size" if getattr(exc, "rule", "") in MEMORY_FIT_RULES else "firmware"
            problems.append(f"{spec.source}: core {c.name!r}.{key}: {exc.strerror}")
    if problems:
        raise AmplinkError(errno.EINVAL, "\n".join(problems))
    print(f"{spec.source}: board {spec.name}, {counted(len(spec.cores), 'core')}, valid")
    for c in spec.cores:
        print(f"  {c.describe()}")
    return 0


def _socket(args: argparse.Namespace) -> Path:
    return Path(args.socket) if args.socket else default_socket()


def _ask(args: argparse.Namespace, cmd: str, waits: float = 0.0, **kw: Any) -> Any:
    """Send one request; ``waits``: how long the request itself may wait (s)."""
    return request(_socket(args), cmd, timeout=waits + REPLY_SLACK, **kw)


def _cmd_status(args: argparse.Namespace) -> int:
    result = _ask(args, "status")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    folder = os.path.dirname(result["socket"])
    terminal = Terminal()  # as wide as the terminal, or $COLUMNS on a pipe
    terminal.wrapped(f"board {result['board']} ({result['source']}): devices in {folder}")
    rows = [
        CoreStatus(**{**c, "channels": tuple(c["channels"]), "endpoints": tuple(c["endpoints"])})
        for c in result["cores"]
    ]
    terminal.show(up.status_table(rows, folder=folder))
    for line in up.offline_reasons(rows):
        terminal.wrapped(line)
    return 0


def _cmd_sysfs(args: argparse.Namespace) -> int:
    """start, stop, recovery and firmware: one sysfs write each."""
    extra: dict[str, str] = {}
    if args.command == "recovery":
        extra["value"] = args.value
    elif args.command == "firmware":  # a file is named from the caller's directory
        ref = resolve(args.file)
        if ref.kind == "file":  # read here, before up is asked (which checks it again)
            read_firmware(args.core, ref.name, None)
        extra["file"] = ref.name
    result = _ask(args, args.command, 0.0, core=args.core, **extra)
    print(", ".join(f"{k} {v}" if k != "core" else str(v) for k, v in result.items()))
    return 0


def _cmd_coredump(args: argparse.Namespace) -> int:
    if args.mode is not None:
        r = _ask(args, "coredump", core=args.core, mode=args.mode)
        print(f"{r['core']}, coredump {r['coredump']}")
        return 0
    r = _ask(args, "coredump", core=args.core)
    print(f"{r['core']}: coredump {r['coredump']}, {r['dumps']} taken since amplink up started")
    if r["read"]:
        print(f"  the inline dump of crash #{r['read']} was waiting: read now, recovery goes on")
    if not r["folder"]:
        print("  dumps are kept in memory only (the board gives no coredump_dir)")
    elif r["files"]:
        for f in r["files"]:
            print(f"  {f}")
    elif r["coredump"] == "disabled":
        given = f" --socket {shlex.quote(args.socket)}" if args.socket else ""
        say(
            f"  none in {r['folder']}: dumps are off (`amplink coredump {r['core']} enabled"
            f"{given}` turns them on)"
        )
    else:
        print(f"  none in {r['folder']} yet")
    return 0


def _cmd_crash(args: argparse.Namespace) -> int:
    r = _ask(args, "crash", 30.0, core=args.core, kind=crash_type(args.kind))
    given = f" --socket {shlex.quote(args.socket)}" if args.socket else ""  # as reached
    crash = f"{r['core']}: crash #{r['crashes']}" + (f" ({r['why']})" if r.get("why") else "")
    if r["coredump_waiting"]:
        say(
            f"{crash}, now {r['state']}: its inline core dump waits to be read before "
            f"recovery goes on; `amplink coredump {r['core']}{given}` reads and saves it"
        )
    elif r.get("coredump"):
        say(f"{crash} handled (dump: {r['coredump']}), now {r['state']}")
    elif r.get("coredump_error"):
        say(f"{crash} handled (no dump written: {r['coredump_error']}), now {r['state']}")
    elif r.get("coredump_mode") == "disabled":
        say(
            f"{crash} handled, now {r['state']}; no dump written: core dumps are disabled for "
            f"{r['core']} (`amplink coredump {r['core']} enabled{given}` turns them on)"
        )
    else:
        say(f"{crash} handled, now {r['state']}")
    return 0


def _payload(args: argparse.Namespace) -> bytes:
    if not args.hex:  # the argument's bytes as the shell passed them, UTF-8 or not
        return os.fsencode(args.data)
    try:
        return bytes.fromhex(args.data)
    except ValueError:
        raise UsageError(f"--hex: {args.data!r} is not hexadecimal bytes") from None


def _show_message(event: dict[str, Any]) -> str:
    text = event.get("text")
    if text is not None and "".join(text.split()).isprintable():  # text, line breaks allowed
        return str(text)
    return f"hex {event['data_hex']}"


def _cmd_send(args: argparse.Namespace) -> int:
    wait = 0.0 if args.no_reply else args.timeout
    data = _payload(args)
    r = _ask(
        args, "send", wait, core=args.core, service=args.service, data_hex=data.hex(), wait=wait
    )
    if args.json:
        print(json.dumps(r))
    elif "reply" in r:
        print(_show_message(r["reply"]))
    else:
        print(f"sent {counted(r['sent'], 'byte')}")
    return 0


def _cmd_listen(args: argparse.Namespace) -> int:
    events = stream(_socket(args), "listen", core=args.core, service=args.service)
    head = next(events)
    print(
        f"listening on {args.core} {args.service} (host address {head['result']['addr']})",
        file=sys.stderr,
        flush=True,
    )
    for seen, event in enumerate(events, 1):
        if event.get("event") == "closed":
            raise AmplinkError(errno.EPIPE, f"the channel went away: {event['reason']}")
        print(json.dumps(event) if args.json else _show_message(event), flush=True)
        if args.count and seen >= args.count:
            break
    return 0


def _cmd_tty(args: argparse.Namespace) -> int:
    r = _ask(args, "tty", 10.0, core=args.core)
    print(r["link"] or r["path"])
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    text = _ask(args, "trace", core=args.core, index=args.index)["text"]
    if not text:
        print(f"{args.core}: trace{args.index} is empty (the firmware logged nothing)",
              file=sys.stderr)  # fmt: skip
    print(text, end="")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        with Terminal(sys.stderr).status() as progress:  # on a terminal only; stdout is
            report = _bench(args, progress)  # the report's alone
    except bench.Interrupted as stop:
        with signals.shielded("printing what was measured"):
            name = stop.signal.args[0] if stop.signal.args else "SIGINT"
            print(f"amplink bench: interrupted ({name})", file=sys.stderr, flush=True)
            _print_report(args, stop.report)
        raise stop.signal from None
    _print_report(args, report)
    return 0


def _print_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(report, indent=2), flush=True)
    else:
        print(bench.format_report(report), flush=True)


def _bench(args: argparse.Namespace, progress: bench.Progress) -> dict[str, Any]:
    return bench.run(
        rounds=args.rounds,
        messages=args.messages,
        pin=not args.no_pin,
        deliveries=args.deliveries,
        cycles=args.cycles,
        linux_rounds=args.linux_rounds,
        openamp_runs=args.openamp_runs,
        load=args.load,
        repeat=args.repeat,
        progress=progress,
    )


def _cmd_serve_linux(args: argparse.Namespace) -> int:
    from amplink.remote.vhost import serve_linux  # noqa: PLC0415 (only here)

    def listening(path: str) -> None:
        print(
            f"serving {args.firmware} on {path}: boot a Linux guest with "
            f"virtio_uml.device={path}:7 (Ctrl-C stops)",
            flush=True,
        )

    return serve_linux(
        resolve(args.firmware).program(),
        args.socket,
        once=args.once,
        spin=args.spin,
        setup_timeout=args.setup_timeout,
        on_listening=listening,
    )


def _cmd_fw_inspect(args: argparse.Namespace) -> int:
    image = FirmwareImage.from_file(args.file)
    print(describe_image(image))
    return EXIT_FAILED if table_invalid(image) else 0


def _cmd_fw_pack(args: argparse.Namespace) -> int:
    source, path = resolve(args.program).program()  # checks it compiles and has main()
    if os.path.exists(args.output) and os.path.samefile(path, args.output):
        raise UsageError(f"-o {args.output} is the program itself: name another file")
    image = pack_python(source, default_rsc_table(num=args.vring_num))
    FirmwareImage.parse(image, args.output).require_table()  # what we wrote reads back
    try:
        with open(args.output, "wb") as f:
            f.write(image)
    except OSError as exc:
        raise AmplinkError(
            exc.errno or errno.EIO, f"cannot write {args.output}: {exc.strerror}"
        ) from None
    print(f"{args.output}: {len(image)} bytes, runs {path}")
    return 0


# -- the parser --------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output (-vv: debug)",
    )
    return c


def _socket_option() -> argparse.ArgumentParser:
    s = argparse.ArgumentParser(add_help=False)
    s.add_argument(
        "--socket",
        default=None,
        help="the control socket of amplink up (default: $AMPLINK_SOCKET, else "
        f"{default_socket()})",
    )
    return s


class _Parser(argparse.ArgumentParser):
    """A parser that, when its command is missing, names an option it does not know
    (``amplink --bogus``) rather than only the missing command, and lists the commands
    either way."""

    _argv: tuple[str, ...] = ()  # what the last parse was given

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: Any = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._argv = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        commands = self._commands()
        if commands and message == "the following arguments are required: COMMAND":
            unknown = [a for a in self._argv if a.startswith("-") and not self._knows(a)]
            choose = f"(one of {', '.join(commands)})"
            message = (
                f"unrecognized arguments: {' '.join(unknown)}; a COMMAND is required {choose}"
                if unknown
                else f"{message} {choose}"
            )
        super().error(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        if message and (file is None or file is sys.stderr):  # usage and error: wrapped
            tell(message.rstrip("\n"))  # on a terminal
            return
        super()._print_message(message, file)

    def _commands(self) -> list[str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return list(action.choices)
        return []

    def _knows(self, arg: str) -> bool:
        return arg.split("=", 1)[0] in self._option_string_actions


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """States each option's default, unless it has none (``None``, ``False``) or its
    help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def add_command(
    sub: Subcommands,
    name: str,
    func: Callable[[argparse.Namespace], int],
    text: str,
    description: str | None = None,
    *,
    socket: bool = False,
) -> argparse.ArgumentParser:
    """Register subcommand ``name`` (``text``: its one-line help, also its description
    unless ``description`` is given); it takes -v, and --socket with ``socket``."""
    parents = [_common(), *([_socket_option()] if socket else [])]
    c: argparse.ArgumentParser = sub.add_parser(
        name,
        help=text,
        description=description or text,
        parents=parents,
        formatter_class=_HelpFormatter,
    )
    c.set_defaults(func=func)
    return c


BOARD_HELP = "a board file (TOML); the built-in default board if omitted"


def _demo_commands(sub: Subcommands) -> None:
    d = add_command(
        sub,
        "demo",
        _cmd_demo,
        "the main job: boot a board, talk to every core, stop one, crash one",
        "Boot every core of BOARD (the built-in default board if omitted), echo messages "
        "of every size on every core, use a core's tty console and rpmsg-raw channel, stop "
        "one core gracefully and crash another to show recovery, print a summary and stop "
        "everything.",
    )
    _board_and_trace(d, "at the end")


def _up_commands(sub: Subcommands) -> None:
    u = add_command(
        sub,
        "up",
        _cmd_up,
        "boot a board and keep it running, with a live status view and a control socket",
        "Boot BOARD and keep it running in the foreground until Ctrl-C; other amplink "
        "commands (status, start, stop, crash, send, listen, ...) reach it through its "
        "control socket. Consoles and endpoint files get stable names next to the socket "
        "(CORE/ttyRPMSGn, CORE/rpmsgN); "
        "core dumps go to a folder of this session's in the board's coredump_dir, else in "
        "~/.local/state/amplink/coredumps/BOARD.",
        socket=True,
    )
    _board_and_trace(u, "when it stops")


def _board_and_trace(p: argparse.ArgumentParser, when: str) -> None:
    p.add_argument("board", nargs="?", help=BOARD_HELP)
    p.add_argument(
        "--trace",
        metavar="FILE.json",
        type=writable_file,
        help=f"record every layer's events and write them there {when}, as a timeline "
        "for https://ui.perfetto.dev",
    )


def _board_commands(sub: Subcommands) -> None:
    bd = add_command(sub, "board", _cmd_board_check, "board files: check one")
    bd_sub = bd.add_subparsers(dest="board_command", required=True, metavar="COMMAND")
    bc = add_command(
        bd_sub,
        "check",
        _cmd_board_check,
        "read and check a board file and every firmware it names, and summarize it",
    )
    bc.add_argument("board", nargs="?", help=BOARD_HELP)


def _control_commands(sub: Subcommands) -> None:
    """The commands that talk to a running ``amplink up``."""

    def command(name: str, text: str, func: Any, *, core: bool = True) -> argparse.ArgumentParser:
        c = add_command(sub, name, func, text, socket=True)
        if core:
            c.add_argument("core", help="the core's name as in the board file, or remoteprocN")
        return c

    s = command(
        "status", "the running board's cores: state, channels, counters", _cmd_status, core=False
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")
    command("start", "boot a core (sysfs state = start)", _cmd_sysfs)
    command("stop", "stop a core, gracefully if it can (sysfs state = stop)", _cmd_sysfs)
    c = command("crash", "make a core crash (debugfs crash); waits until handled", _cmd_crash)
    c.add_argument(
        "--kind", choices=sorted(crash_words()), default="watchdog", help="the crash type reported"
    )
    r = command("recovery", "set or use crash recovery (sysfs recovery)", _cmd_sysfs)
    r.add_argument("value", choices=("enabled", "disabled", "recover"))
    m = command(
        "coredump",
        "show a core's dump mode and where its dumps went, or set the mode (sysfs coredump)",
        _cmd_coredump,
    )
    m.add_argument("mode", nargs="?", choices=("disabled", "enabled", "inline"))
    f = command("firmware", "set a stopped core's firmware (sysfs firmware)", _cmd_sysfs)
    f.add_argument("file", help="an ELF image or .py program (a path), or a module name (a.b.c)")
    se = command("send", "send one message on a core's channel; print the reply", _cmd_send)
    se.add_argument("service", help="the channel's name, e.g. rpmsg-openamp-demo-channel")
    se.add_argument("data", help="the message (text, or hex with --hex)")
    se.add_argument("--hex", action="store_true", help="DATA is hexadecimal bytes")
    se.add_argument("--no-reply", action="store_true", help="do not wait for a reply")
    se.add_argument(
        "--timeout",
        type=number(0, above=True, high=MAX_WAIT),
        default=5.0,
        help="seconds to wait for the reply",
    )
    se.add_argument("--json", action="store_true", help="print the result as JSON")
    li = command("listen", "print every message a core sends on a channel", _cmd_listen)
    li.add_argument("service", help="the channel's name")
    li.add_argument(
        "--count", type=number(0, integer=True), default=0, help="exit after this many (0: never)"
    )
    li.add_argument("--json", action="store_true", help="one JSON object per message")
    command(
        "tty",
        "print the stable name of a core's rpmsg-tty console (open it with screen or minicom)",
        _cmd_tty,
    )
    t = command("trace", "print a core's firmware trace buffer (debugfs trace0)", _cmd_trace)
    t.add_argument(
        "--index", type=number(0, integer=True, high=255), default=0, help="which trace buffer"
    )


def _bench_commands(sub: Subcommands) -> None:
    b = add_command(
        sub, "bench", _cmd_bench, "measure latency and throughput against a Pipe baseline"
    )
    count = number(1, integer=True, high=MAX_BENCH_COUNT)
    b.add_argument("--rounds", type=count, default=10_000, help="round trips")
    b.add_argument("--messages", type=count, default=50_000, help="messages for throughput")
    b.add_argument(
        "--deliveries", type=count, default=2000, help="interrupts per delivery measurement"
    )
    b.add_argument(
        "--cycles",
        type=number(1, integer=True, high=MAX_CYCLES),
        default=20,
        help="boot/stop cycles for lifecycle",
    )
    b.add_argument(
        "--linux-rounds",
        type=number(0, integer=True, high=MAX_BENCH_COUNT),
        default=2000,
        help="round trips per size against a UML Linux guest when its kernel is built (0 skips)",
    )
    b.add_argument(
        "--openamp-runs",
        type=number(0, integer=True, high=MAX_CYCLES),
        default=20,
        help="whole runs of OpenAMP's echo demos per pair when they are built (0 skips)",
    )
    b.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    b.add_argument(
        "--load",
        type=number(0, integer=True, high=bench.MAX_LOAD),
        default=0,
        metavar="N",
        help="run N CPU-bound processes during the measurements",
    )
    b.add_argument(
        "--repeat",
        type=number(1, integer=True, high=MAX_REPEAT),
        default=3,
        metavar="R",
        help="take every figure R times; medians and ratio ranges",
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")


def _serve_linux_commands(sub: Subcommands) -> None:
    sl = add_command(
        sub,
        "serve-linux",
        _cmd_serve_linux,
        "run a firmware as the virtio-rpmsg device of a Linux guest (vhost-user)",
        "Serve FIRMWARE as a virtio-rpmsg device over vhost-user on SOCKET, so that a real "
        "Linux kernel (User-Mode Linux with virtio_uml.device=SOCKET:7, or QEMU) runs its "
        "rpmsg stack against it: the firmware's channels appear in the guest as /dev/rpmsgN "
        "and /dev/ttyRPMSGN. Guests may come and go; Ctrl-C stops.",
    )
    sl.add_argument("firmware", help="an ELF image or .py program (a path), or a module name")
    sl.add_argument("--socket", required=True, help="the vhost-user socket to listen on")
    sl.add_argument("--once", action="store_true", help="exit when the first guest leaves")
    sl.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="busy-poll the guest's rings between messages (with a UML guest on few CPUs "
        "it takes the CPU the guest needs: amplink bench shows both)",
    )
    sl.add_argument(
        "--setup-timeout",
        type=number(0, above=True, high=MAX_WAIT),
        default=120.0,
        help="seconds a guest may take from connecting until its rpmsg driver is up",
    )


def _fw_commands(sub: Subcommands) -> None:
    fw = add_command(
        sub, "fw", _cmd_fw_inspect, "firmware images: inspect any ELF, pack a Python program"
    )
    fw_sub = fw.add_subparsers(dest="fw_command", required=True, metavar="COMMAND")
    i = add_command(
        fw_sub,
        "inspect",
        _cmd_fw_inspect,
        "print an ELF's header, segments, sections and resource table (exit 1 if the "
        "table is there but invalid)",
    )
    i.add_argument("file", help="an ELF file")
    k = add_command(fw_sub, "pack", _cmd_fw_pack, "pack a Python firmware program into an ELF")
    k.add_argument("program", help="a .py file (a path) or a module name defining main(core)")
    k.add_argument("-o", "--output", required=True, type=writable_file, help="the ELF to write")
    k.add_argument(
        "--vring-num",
        type=_vring_num,
        default=256,
        help="buffers per vring in the table (a power of two)",
    )


def _vring_num(text: str) -> int:
    n = int(number(1, integer=True)(text))
    if n & (n - 1) or n > 32768:
        raise argparse.ArgumentTypeError(f"{n} is not a power of two up to 32768")
    return n


REGISTRARS: list[Callable[[Subcommands], None]] = [
    _demo_commands,
    _up_commands,
    _board_commands,
    _control_commands,
    _bench_commands,
    _serve_linux_commands,
    cli_openamp.register,
    _fw_commands,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``amplink`` command."""
    p = _Parser(
        prog="amplink",
        description="The Linux AMP IPC stack (remoteproc, rpmsg, virtio) over real shared "
        "memory between processes.",
        parents=[_common()],
        epilog="Exit codes: 0 success, 1 failed (stderr says why), 2 bad usage, 3 no "
        "amplink up answers, 130 Ctrl-C, 143 SIGTERM.",
    )
    p.add_argument("--version", action="version", version=f"amplink {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one ``amplink`` command; returns its exit code (see the module docstring).
    SIGINT and SIGTERM end it with 128 + the signal's number from the first line on,
    argument parsing included."""
    try:
        with signals.interruptible():
            return _run(argv)
    except signals.Interrupted as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        return 128 + 2


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, with its usage line (exit 2)
        _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    verbose = getattr(args, "verbose", 0)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    subs = ("fw_command", "board_command", "openamp_command")
    name = " ".join(filter(None, [args.command, *(getattr(args, s, None) for s in subs)]))
    try:
        return int(args.func(args))
    except UsageError as exc:
        tell(f"amplink {name}: error: {exc.strerror}")
        return EXIT_USAGE
    except NotRunning as exc:
        tell(f"amplink {name}: {exc.strerror}")
        return EXIT_NOT_RUNNING
    except OSError as exc:
        tell(f"amplink {name}: error: {exc.strerror or exc}")
        return EXIT_FAILED


def tell(text: str, out: TextIO | None = None) -> None:
    """Print ``text`` on ``out`` (stderr): on a terminal each line wrapped between words
    to its width (never folded mid-word by the terminal), on a pipe as it is."""
    out = out if out is not None else sys.stderr
    if not out.isatty():
        print(text, file=out, flush=True)
        return
    term = Terminal(out)
    for line in text.splitlines():
        term.wrapped(line)


def say(text: str) -> None:
    """Print ``text`` on stdout as :func:`tell` does."""
    tell(text, sys.stdout)


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The parser of the (sub)command ``args`` names."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return _command_parser(action.choices[name], args)
    return parser


if __name__ == "__main__":
    sys.exit(main())
