"""How :func:`amplink.uml.boot.boot` reports a guest that crashes or hangs: fast, in one
line, with the console log kept.  The "kernel" here is a shell script that prints what
a broken UML kernel prints and then hangs or exits (a stand-in: the real kernel cannot
be made to panic on demand; ``make test-linux`` boots the real one)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from amplink.uml.boot import boot
from resources import children

PTRACE = "userspace - ptrace set fp regs failed, errno = 14"
PANIC = "Kernel panic - not syncing: Attempted to kill init!"
REFUSAL = (
    "amplink-uml: the host's XSAVE area is 10688 bytes, larger than this kernel's FP "
    "register buffer (2696 bytes): rebuild the kernel on this host with "
    "tools/uml/build-kernel.sh"
)


def fake_kernel(tmp_path: Path, prints: list[str], then: str) -> Path:
    """A "kernel" that prints ``prints`` (on stderr, as UML's own errors go) and runs
    the shell command ``then``."""
    (tmp_path / "prints").write_text("".join(f"{line}\n" for line in prints))
    path = tmp_path / "linux"
    path.write_text(f"#!/bin/sh\ncat '{tmp_path / 'prints'}' >&2\n{then}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run(kernel: Path, timeout: float, log_dir: Path | None = None):
    before = children()
    t0 = time.monotonic()
    result = boot(["true"], socket="/nonexistent", kernel=kernel, timeout=timeout,
                  log_dir=log_dir)  # fmt: skip
    assert children() == before  # the whole process group is gone
    return result, time.monotonic() - t0


def test_a_panic_is_reported_in_one_line_without_waiting_for_the_timeout(tmp_path):
    kernel = fake_kernel(tmp_path, ["Checking...", PTRACE, PANIC], "sleep 600")
    result, took = run(kernel, timeout=120)
    assert not result.timed_out and took < 60
    assert result.crash == PANIC and result.cause == PTRACE
    failure = result.failure()
    assert failure is not None and "\n" not in failure
    assert failure.startswith(f"the guest kernel panicked: {PANIC} after {PTRACE!r}")
    assert result.console_log is not None and f"(console log: {result.console_log})" in failure
    assert PANIC in result.console_log.read_text()
    os.unlink(result.console_log)


def test_a_kernel_that_refuses_the_host_says_why(tmp_path):
    kernel = fake_kernel(tmp_path, [REFUSAL], "exit 1")
    result, _ = run(kernel, timeout=120, log_dir=tmp_path)
    assert result.failure() == (
        f"the guest kernel did not start: {REFUSAL} (console log: {tmp_path / 'console.log'})"
    )


def test_a_silent_hang_ends_at_the_timeout(tmp_path):
    kernel = fake_kernel(tmp_path, ["booting"], "sleep 600")
    result, _ = run(kernel, timeout=1, log_dir=tmp_path)
    assert result.timed_out and result.crash is None
    assert result.failure() == (
        f"the guest did not power off within 1 s (console log: {tmp_path / 'console.log'})"
    )


@pytest.mark.parametrize("prints", [[], ["reboot: System halted"]])
def test_a_guest_that_never_ran_its_command(tmp_path, prints):
    result, _ = run(fake_kernel(tmp_path, prints, "exit 0"), timeout=120)
    assert result.status is None and not result.timed_out
    assert result.failure() is not None and "without running its command" in result.failure()
    assert result.console_log is not None
    os.unlink(result.console_log)
