"""The real Linux kernel as amplink's peer: User-Mode Linux runs the unmodified
``virtio_rpmsg_bus``, ``rpmsg_ns``, ``rpmsg_char``, ``rpmsg_ctrl`` and ``rpmsg_tty``
against firmware that ``amplink serve-linux`` serves over vhost-user.

Run with ``make test-linux`` (``pytest --linux``), which builds the kernel first when
the cache is empty.  Each test boots a guest (a few seconds) and bounds it with a
timeout; a guest whose kernel crashes fails its test at once, in one line naming the
console log, and a kernel that cannot even run its first command (it panics at boot,
or refuses this host's CPU) ends the whole run with that line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from amplink.app.bench import linux as bench_linux
from amplink.uml.boot import GuestRun, boot, serving

pytestmark = [pytest.mark.linux, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD = ROOT / "tools/uml/build-kernel.sh"
GUEST_TIMEOUT = 120.0
RAW_CLIENT = [sys.executable, str(ROOT / "examples/raw_client.py"), "--linux"]
GUEST_PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:hypothesispytest",
]


@pytest.fixture(scope="session")
def kernel() -> Path:
    """``AMPLINK_UML_KERNEL``, else the kernel of this checkout's recipe (the build
    script prints it at once when it is cached, and builds it otherwise): never an
    older kernel that happens to be in the cache."""
    env = os.environ.get("AMPLINK_UML_KERNEL")
    if env:
        return Path(env)
    built = subprocess.run(["bash", str(BUILD)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(built.stdout.strip())


class Served:
    """``amplink serve-linux`` running in a subprocess, its log collected."""

    def __init__(self, stack: ExitStack, firmware: str, socket: str, log: Path) -> None:
        self.socket = socket
        self.log_path = log
        log_file = stack.enter_context(open(log, "w"))  # noqa: SIM115 (the stack closes it)
        self.proc = stack.enter_context(serving(firmware, socket, log_file))

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[Served] = []
    with ExitStack() as stack:

        def start(firmware: str) -> Served:
            s = Served(stack, firmware, str(tmp_path / "rpmsg.sock"), tmp_path / "serve.log")
            started.append(s)
            return s

        yield start
    for s in started:
        assert s.proc.returncode == 128 + signal.SIGTERM, s.log()  # stopped by serving()
        assert not os.path.exists(s.socket), "serve-linux left its socket behind"


def kernel_problems(run: GuestRun) -> list[str]:
    """BUG/Oops/scheduling-while-atomic lines, and any kernel warning."""
    problems = run.kernel_problems()
    if warnings := run.kernel_log.count("WARNING:"):
        problems.append(f"{warnings} kernel warnings")
    return problems


def run_guest(
    kernel: Path, served: Served, argv: list[str], log_dir: Path, timeout: float = GUEST_TIMEOUT
) -> GuestRun:
    run = boot(
        argv, socket=served.socket, kernel=kernel, timeout=timeout, cwd=str(ROOT), log_dir=log_dir
    )
    if (failure := run.failure()) is not None:
        if run.crash is not None and not run.kernel_log:  # it never ran its init
            pytest.exit(failure, returncode=1)
        pytest.fail(f"{failure}\n--- serve-linux ---\n{served.log()}", pytrace=False)
    assert run.status == 0, run.describe() + "\n--- serve-linux ---\n" + served.log()
    assert not kernel_problems(run), run.kernel_log
    assert "ERROR" not in served.log(), served.log()
    return run


def test_conformance_inside_the_guest(kernel: Path, serve, tmp_path: Path) -> None:
    served = serve(str(HERE / "fw_conformance.py"))
    run = run_guest(
        kernel,
        served,
        [*GUEST_PYTEST, "-q", str(HERE / "guest/guest_checks.py")],
        tmp_path,
    )
    assert re.search(r"\b10 passed\b", run.output), run.output
    assert "creating channel rpmsg-raw addr 0x400" in run.kernel_log
    assert "the guest's rpmsg driver is up" in served.log()


def test_the_same_application_runs_on_the_kernel_backend(
    kernel: Path, serve, tmp_path: Path
) -> None:
    served = serve("amplink.firmware.demo")
    run = run_guest(kernel, served, RAW_CLIENT, tmp_path)
    assert run.output.splitlines()[-1] == "HELLO, RPMSG | SAME CODE ON BOTH STACKS"


def test_a_server_serves_guest_after_guest(kernel: Path, serve, tmp_path: Path) -> None:
    served = serve("amplink.firmware.demo")
    for guest in range(2):
        log_dir = tmp_path / f"guest{guest}"
        log_dir.mkdir()
        run = run_guest(kernel, served, RAW_CLIENT, log_dir)
        assert "SAME CODE" in run.output
    assert served.log().count("the guest's rpmsg driver is up") == 2


def test_bench_reports_guest_round_trips(kernel: Path) -> None:
    results = bench_linux.bench_linux(300, kernel)
    assert results is not None
    assert [(r["name"], r["size"]) for r in results] == [
        ("guest pipe (baseline)", 64),
        ("guest pipe (baseline)", 496),
        ("guest /dev/rpmsgN, device sleeps", 64),
        ("guest /dev/rpmsgN, device sleeps", 496),
        ("guest /dev/rpmsgN, device spins", 64),
        ("guest /dev/rpmsgN, device spins", 496),
    ]
    assert all(0 < r["p50_us"] <= r["p99_us"] and r["total_s"] > 0 for r in results)
    table = "\n".join(bench_linux.format_linux(results, 300))
    assert "device spins" in table and "300 round trips per size" in table
