"""The ``amplink`` command.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage,
3 no ``amplink up`` answers on the control socket, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from amplink.app import demo, up
from amplink.app.bench import main as bench
from amplink.board import BoardSpec, CoreStatus, load_board
from amplink.control.protocol import NotRunning, default_socket, request, stream
from amplink.errors import AmplinkError
from amplink.remoteproc.crash import crash_type, crash_words
from amplink.remoteproc.describe import describe_image
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.fwpack import firmware_program, pack_python, program_source
from amplink.remoteproc.layout import default_rsc_table
from amplink.tracing import TRACER

EXIT_NOT_RUNNING = 3


def _board(args: argparse.Namespace) -> BoardSpec:
    return load_board(args.board)


def _cmd_demo(args: argparse.Namespace) -> int:
    spec = _board(args)
    if args.trace is None:
        demo.run(spec)
        return 0
    TRACER.start()
    try:
        demo.run(spec)
        count = TRACER.export(args.trace)
    finally:
        TRACER.stop()
    print(f"trace: {count} events in {args.trace} (open it in https://ui.perfetto.dev)")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    up.run(_board(args), _socket(args))
    return 0


def _cmd_board_check(args: argparse.Namespace) -> int:
    spec = _board(args)
    print(f"{spec.source}: board {spec.name}, {len(spec.cores)} cores, valid")
    for c in spec.cores:
        print(f"  {c.describe()}")
    return 0


def _socket(args: argparse.Namespace) -> Path:
    return Path(args.socket) if args.socket else default_socket()


def _ask(args: argparse.Namespace, cmd: str, **kw: Any) -> Any:
    return request(_socket(args), cmd, **kw)


def _cmd_status(args: argparse.Namespace) -> int:
    result = _ask(args, "status")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"board {result['board']} ({result['source']}), control socket {result['socket']}")
    rows = [CoreStatus(**{**c, "channels": tuple(c["channels"])}) for c in result["cores"]]
    print(up.status_table(rows))
    return 0


def _cmd_sysfs(args: argparse.Namespace) -> int:
    """start, stop, recovery, coredump and firmware: one sysfs write each."""
    extra: dict[str, str] = {}
    if args.command == "recovery":
        extra["value"] = args.value
    elif args.command == "coredump":
        extra["mode"] = args.mode
    elif args.command == "firmware":  # a file is named from the caller's directory
        extra["file"] = os.path.abspath(args.file) if os.path.exists(args.file) else args.file
    result = _ask(args, args.command, core=args.core, **extra)
    print(", ".join(f"{k} {v}" if k != "core" else str(v) for k, v in result.items()))
    return 0


def _cmd_crash(args: argparse.Namespace) -> int:
    r = _ask(args, "crash", core=args.core, kind=crash_type(args.kind))
    print(f"{r['core']}: crash #{r['crashes']} handled, now {r['state']}")
    return 0


def _payload(args: argparse.Namespace) -> bytes:
    if not args.hex:
        return str(args.data).encode()
    try:
        return bytes.fromhex(args.data)
    except ValueError:
        raise AmplinkError(errno.EINVAL, f"--hex: {args.data!r} is not hexadecimal") from None


def _show_message(event: dict[str, Any]) -> str:
    text = event.get("text")
    if text is not None and "".join(text.split()).isprintable():  # text, line breaks allowed
        return str(text)
    return f"hex {event['data_hex']}"


def _cmd_send(args: argparse.Namespace) -> int:
    wait = 0.0 if args.no_reply else args.timeout
    r = _ask(
        args, "send", core=args.core, service=args.service, data_hex=_payload(args).hex(), wait=wait
    )
    if args.json:
        print(json.dumps(r))
    elif "reply" in r:
        print(_show_message(r["reply"]))
    else:
        print(f"sent {r['sent']} bytes")
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
    print(_ask(args, "tty", core=args.core)["path"])
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    print(_ask(args, "trace", core=args.core, index=args.index)["text"], end="")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    report = bench.run(
        rounds=args.rounds,
        messages=args.messages,
        pin=not args.no_pin,
        deliveries=args.deliveries,
        cycles=args.cycles,
        linux_rounds=args.linux_rounds,
        load=args.load,
        repeat=args.repeat,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(bench.format_report(report))
    return 0


def _cmd_serve_linux(args: argparse.Namespace) -> int:
    from amplink.remote.vhost import serve_linux  # noqa: PLC0415 (only here)

    def listening(path: str) -> None:
        print(
            f"serving {args.firmware} on {path}: boot a Linux guest with "
            f"virtio_uml.device={path}:7 (Ctrl-C stops)",
            flush=True,
        )

    return serve_linux(
        firmware_program(args.firmware),
        args.socket,
        once=args.once,
        spin=args.spin,
        setup_timeout=args.setup_timeout,
        on_listening=listening,
    )


def _cmd_fw_inspect(args: argparse.Namespace) -> int:
    print(describe_image(FirmwareImage.from_file(args.file)))
    return 0


def _cmd_fw_pack(args: argparse.Namespace) -> int:
    source, path = program_source(args.program)
    compile(source, path, "exec")  # a syntax error is reported now, not at boot
    image = pack_python(source, default_rsc_table(num=args.vring_num))
    FirmwareImage.parse(image, args.output).require_table()  # what we wrote reads back
    with open(args.output, "wb") as f:
        f.write(image)
    print(f"{args.output}: {len(image)} bytes, runs {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``amplink`` command."""
    p = argparse.ArgumentParser(
        prog="amplink",
        description="The Linux AMP IPC stack (remoteproc, rpmsg, virtio) over real shared "
        "memory between processes.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", required=True)
    board_help = "a board file (TOML); the built-in default board if omitted"
    d = sub.add_parser(
        "demo",
        help="the main job: boot a board, talk to every core, stop one, crash one",
        description="Boot every core of BOARD (the built-in default board if omitted), "
        "echo messages of every size on every core, use a core's tty console and rpmsg-raw "
        "channel, stop one core gracefully and crash another to show recovery, print a "
        "summary and stop everything.",
    )
    d.add_argument("board", nargs="?", help=board_help)
    d.add_argument(
        "--trace",
        metavar="FILE.json",
        help="record every layer's events and write a Chrome/Perfetto timeline",
    )
    d.set_defaults(func=_cmd_demo)
    u = sub.add_parser(
        "up",
        help="boot a board and keep it running, with a live status view and a control socket",
        description="Boot BOARD and keep it running in the foreground until Ctrl-C; other "
        "amplink commands (status, start, stop, crash, send, listen, ...) reach it through "
        "its control socket.",
    )
    u.add_argument("board", nargs="?", help=board_help)
    u.add_argument("--socket", help=f"the control socket (default {default_socket()})")
    u.set_defaults(func=_cmd_up)
    bd = sub.add_parser("board", help="board files: check one")
    bd_sub = bd.add_subparsers(dest="board_command", required=True)
    bc = bd_sub.add_parser("check", help="read and check a board file, and summarize it")
    bc.add_argument("board", nargs="?", help=board_help)
    bc.set_defaults(func=_cmd_board_check)
    _control_commands(sub)
    b = sub.add_parser("bench", help="measure latency and throughput against a Pipe baseline")
    b.add_argument("--rounds", type=int, default=10_000, help="round trips (default 10000)")
    b.add_argument(
        "--messages",
        type=int,
        default=50_000,
        help="messages for the throughput run (default 50000)",
    )
    b.add_argument(
        "--deliveries",
        type=int,
        default=2000,
        help="interrupts per callback-delivery measurement (default 2000)",
    )
    b.add_argument(
        "--cycles", type=int, default=20, help="boot/stop cycles for the lifecycle figures"
    )
    b.add_argument(
        "--linux-rounds",
        type=int,
        default=2000,
        help="round trips per size against a UML Linux guest, when its kernel is built "
        "(default 2000; 0 skips)",
    )
    b.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    b.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="run N CPU-bound processes during the measurements (default 0)",
    )
    b.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="R",
        help="take every figure R times; medians and ratio ranges (default 3)",
    )
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_cmd_bench)
    sl = sub.add_parser(
        "serve-linux",
        help="run a firmware as the virtio-rpmsg device of a Linux guest (vhost-user)",
        description="Serve FIRMWARE as a virtio-rpmsg device over vhost-user on SOCKET, so "
        "that a real Linux kernel (User-Mode Linux with virtio_uml.device=SOCKET:7, or QEMU) "
        "runs its rpmsg stack against it: the firmware's channels appear in the guest as "
        "/dev/rpmsgN and /dev/ttyRPMSGN. Guests may come and go; Ctrl-C stops.",
    )
    sl.add_argument("firmware", help="an ELF image (amplink fw pack), a .py file or a module")
    sl.add_argument("--socket", required=True, help="the vhost-user socket to listen on")
    sl.add_argument("--once", action="store_true", help="exit when the first guest leaves")
    sl.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="busy-poll the guest's rings between messages (default: no; with a UML guest "
        "on few CPUs it takes the CPU the guest needs: amplink bench shows both)",
    )
    sl.add_argument(
        "--setup-timeout",
        type=float,
        default=120.0,
        help="seconds a guest may take from connecting until its rpmsg driver is up (default 120)",
    )
    sl.set_defaults(func=_cmd_serve_linux)
    fw = sub.add_parser("fw", help="firmware images: inspect any ELF, pack a Python program")
    fw_sub = fw.add_subparsers(dest="fw_command", required=True)
    i = fw_sub.add_parser("inspect", help="ELF header, segments, sections and resource table")
    i.add_argument("file", help="an ELF file")
    i.set_defaults(func=_cmd_fw_inspect)
    k = fw_sub.add_parser("pack", help="pack a Python firmware program into an ELF image")
    k.add_argument("program", help="a .py file (or module name) defining main(core)")
    k.add_argument("-o", "--output", required=True, help="the ELF file to write")
    k.add_argument(
        "--vring-num", type=int, default=256, help="buffers per vring in the table (default 256)"
    )
    k.set_defaults(func=_cmd_fw_pack)
    return p


def _control_commands(sub: Any) -> None:
    """The commands that talk to a running ``amplink up``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--socket", help=f"the control socket of amplink up (default {default_socket()})"
    )

    def command(name: str, text: str, func: Any, *, core: bool = True) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = sub.add_parser(
            name, help=text, description=text, parents=[common]
        )
        if core:
            c.add_argument("core", help="the core's name, as in the board file")
        c.set_defaults(func=func)
        return c

    s = command(
        "status", "the running board's cores: state, channels, counters", _cmd_status, core=False
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")
    command("start", "boot a core (sysfs state = start)", _cmd_sysfs)
    command("stop", "stop a core, gracefully if it can (sysfs state = stop)", _cmd_sysfs)
    c = command("crash", "make a core crash (debugfs crash); waits until handled", _cmd_crash)
    c.add_argument(
        "--kind",
        choices=sorted(crash_words()),
        default="watchdog",
        help="the crash type reported (default watchdog)",
    )
    r = command("recovery", "set or use crash recovery (sysfs recovery)", _cmd_sysfs)
    r.add_argument("value", choices=("enabled", "disabled", "recover"))
    m = command("coredump", "set the core-dump mode (sysfs coredump)", _cmd_sysfs)
    m.add_argument("mode", choices=("disabled", "enabled", "inline"))
    f = command("firmware", "set a stopped core's firmware (sysfs firmware)", _cmd_sysfs)
    f.add_argument("file", help="an ELF file, a .py firmware program or a module name")
    se = command("send", "send one message on a core's channel; print the reply", _cmd_send)
    se.add_argument("service", help="the channel's name, e.g. rpmsg-openamp-demo-channel")
    se.add_argument("data", help="the message (text, or hex with --hex)")
    se.add_argument("--hex", action="store_true", help="DATA is hexadecimal bytes")
    se.add_argument("--no-reply", action="store_true", help="do not wait for a reply")
    se.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the reply")
    se.add_argument("--json", action="store_true", help="print the result as JSON")
    li = command("listen", "print every message a core sends on a channel", _cmd_listen)
    li.add_argument("service", help="the channel's name")
    li.add_argument("--count", type=int, default=0, help="exit after this many messages")
    li.add_argument("--json", action="store_true", help="one JSON object per message")
    command("tty", "print the path of a core's rpmsg-tty pty (open it with screen)", _cmd_tty)
    t = command("trace", "print a core's firmware trace buffer (debugfs trace0)", _cmd_trace)
    t.add_argument("--index", type=int, default=0, help="which trace buffer (default 0)")


def main(argv: list[str] | None = None) -> int:
    """Run one ``amplink`` command; returns its exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except NotRunning as exc:
        print(f"amplink {args.command}: {exc.strerror}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except SyntaxError as exc:
        print(f"amplink {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"amplink {args.command}: error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"amplink {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
