"""Fixtures shared by the test modules."""

import signal

import pytest

from backends import BACKENDS
from emulated import FIRMWARE, NOT_BUILT


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each rpmsg backend in turn: "virtio" and "glink"."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _terminal_size_of_no_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the width the code picks for a pipe, not the one a user exported
    (``COLUMNS=100 make test``); a test that wants a width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--linux",
        action="store_true",
        help="run only the tests against a real Linux kernel (User-Mode Linux; make test-linux)",
    )
    parser.addoption(
        "--openamp",
        action="store_true",
        help="run only the tests against OpenAMP's C demo applications (make test-openamp)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background of a shell without job control (`cmd &`,
    # nohup, some CI runners) starts with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: the Ctrl-C tests would fail, or test nothing (their
    # children inherit the ignored signal).  A Python program's own start is the case
    # they are about.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "linux: needs the UML kernel (run with --linux)")
    config.addinivalue_line("markers", "openamp: needs OpenAMP's demos (run with --openamp)")
    config.addinivalue_line(
        "markers", "firmware: runs the Cortex-M images of make firmware (make test-firmware)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Linux and OpenAMP groups run with --linux and --openamp and only then; the
    quick suite leaves them out.  The firmware group is skipped while the Cortex-M images
    are not built."""
    if FIRMWARE is None:
        for item in items:
            if item.get_closest_marker("firmware") is not None:
                item.add_marker(NOT_BUILT)
    groups = [g for g in ("linux", "openamp") if config.getoption(f"--{g}")]

    def group(item: pytest.Item) -> str | None:
        return next((g for g in ("linux", "openamp") if item.get_closest_marker(g)), None)

    keep = [item for item in items if group(item) in groups or (not groups and group(item) is None)]
    deselected = [item for item in items if item not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep
