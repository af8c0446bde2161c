"""PID 1 of a UML guest booted by :mod:`amplink.uml.boot`: set the guest up, run one
command, save what it printed, its exit status and the kernel log, and power off.

The guest's root is the host's ``/``, read-only (hostfs), so the guest runs the host's
Python and amplink.  Writable places are tmpfs mounts (``/dev``, ``/run``; the
command's ``TMPDIR`` and ``HOME`` are ``/run/tmp``) and the run
folder, the host folder the boot helper shares (``AMPLINK_GUEST_DIR``, mounted at the
same path): ``command.json`` in, ``output.txt``, ``status`` and ``kernel.log`` out.

The kernel is built without devtmpfs (UML runs virtio callbacks in hard-IRQ context,
where devtmpfs would sleep), so this init makes device nodes itself from the kernel's
uevents, in process context, like a minimal mdev: ``/dev/rpmsg_ctrl0``, ``/dev/rpmsgN``
and ``/dev/ttyRPMSGN`` appear and disappear as the rpmsg bus creates and removes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import traceback
from pathlib import Path

NETLINK_KOBJECT_UEVENT = 15
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
SCRATCH = "/run/tmp"
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str, data: str | None = None) -> None:
    os.makedirs(target, exist_ok=True)
    arg = data.encode() if data is not None else None
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), 0, arg) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def _make_node(name: str, major: int, minor: int) -> None:
    path = Path("/dev") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))


def _parse_uevent(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.split("\0") if "=" in line)


def _coldplug() -> None:
    """Nodes for the character devices that exist before the listener started."""
    for dev in Path("/sys/dev/char").iterdir():
        with contextlib.suppress(OSError):
            env = _parse_uevent((dev / "uevent").read_text().replace("\n", "\0"))
            if "DEVNAME" in env:
                _make_node(env["DEVNAME"], int(env["MAJOR"]), int(env["MINOR"]))


def _uevents(sock: socket.socket) -> None:
    while True:
        env = _parse_uevent(sock.recv(8192).decode(errors="replace"))
        name = env.get("DEVNAME")
        if not name or "MAJOR" not in env:
            continue
        if env.get("ACTION") == "add":
            _make_node(name, int(env["MAJOR"]), int(env["MINOR"]))
        elif env.get("ACTION") == "remove":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path("/dev") / name)


def _kernel_log() -> str:
    """Every record in the kernel's log buffer (``/dev/kmsg``), as dmesg prints them."""
    lines = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                record = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records: go on with the next
                continue
            prefix, _, message = record.partition(";")
            fields = prefix.split(",")
            usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            lines.append(f"[{usec / 1e6:12.6f}] {message.rstrip()}")
    finally:
        os.close(fd)
    return "\n".join(lines) + "\n"


def main() -> None:
    """Set up, run the command, report, power off (never returns)."""
    run_dir = os.environ["AMPLINK_GUEST_DIR"]
    status = "init-failed"
    try:
        _mount("proc", "/proc", "proc")
        _mount("sysfs", "/sys", "sysfs")
        _mount("tmpfs", "/dev", "tmpfs")
        # Not over /tmp: the host's project or Python may live there, and a tmpfs on
        # top would hide them from the guest.  Scratch space is /run/tmp (TMPDIR).
        _mount("tmpfs", "/run", "tmpfs")
        os.makedirs(SCRATCH)
        _mount("hostfs", run_dir, "hostfs", run_dir)
        for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("kmsg", 1, 11)):
            _make_node(name, major, minor)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        sock.bind((0, 1))
        threading.Thread(target=_uevents, args=(sock,), daemon=True).start()
        _coldplug()
        spec = json.loads(Path(run_dir, "command.json").read_text())
        with open(Path(run_dir, "output.txt"), "wb") as out:
            proc = subprocess.run(
                spec["argv"],
                cwd=spec["cwd"],
                env={**spec["env"], "TMPDIR": SCRATCH, "HOME": SCRATCH, "AMPLINK_IN_GUEST": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        status = str(proc.returncode)
    except BaseException:  # PID 1 must not exit: report (in the output) and power off
        report = f"amplink guest init failed:\n{traceback.format_exc()}"
        print(report, file=sys.stderr, flush=True)
        with contextlib.suppress(Exception), open(Path(run_dir, "output.txt"), "a") as out:
            out.write(report)
    finally:
        with contextlib.suppress(Exception):
            Path(run_dir, "kernel.log").write_text(_kernel_log())
        with contextlib.suppress(Exception):
            Path(run_dir, "status").write_text(status)
        os.sync()
        _libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)


if __name__ == "__main__":
    main()
