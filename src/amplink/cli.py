"""The ``amplink`` command.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from amplink import bench, demo
from amplink.remoteproc.describe import describe_image
from amplink.remoteproc.elf import FirmwareImage
from amplink.remoteproc.fwpack import pack_python, program_source
from amplink.remoteproc.layout import default_rsc_table
from amplink.tracing import TRACER


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.trace is None:
        demo.run(firmware=args.firmware)
        return 0
    TRACER.start()
    try:
        demo.run(firmware=args.firmware)
        count = TRACER.export(args.trace)
    finally:
        TRACER.stop()
    print(f"trace: {count} events in {args.trace} (open it in https://ui.perfetto.dev)")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    report = bench.run(
        rounds=args.rounds,
        messages=args.messages,
        pin=not args.no_pin,
        deliveries=args.deliveries,
        cycles=args.cycles,
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(bench.format_report(report))
    return 0


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
    p = argparse.ArgumentParser(
        prog="amplink",
        description="The Linux AMP IPC stack (remoteproc, rpmsg, virtio) over real shared "
        "memory between processes.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="boot a remote core running echo firmware and talk to it")
    d.add_argument(
        "--firmware",
        default="amplink.firmware.echo",
        help="firmware module or .py file (default: the bundled echo)",
    )
    d.add_argument(
        "--trace",
        metavar="FILE.json",
        help="record every layer's events and write a Chrome/Perfetto timeline",
    )
    d.set_defaults(func=_cmd_demo)
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
    b.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.set_defaults(func=_cmd_bench)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except SyntaxError as exc:
        print(f"amplink {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        print(f"amplink {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
