"""Fixtures shared by the test modules."""

import pytest

from backends import BACKENDS
from emulated import FIRMWARE, NOT_BUILT


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each rpmsg backend in turn: "virtio" and "glink"."""
    return str(request.param)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--linux",
        action="store_true",
        help="run only the tests against a real Linux kernel (User-Mode Linux; make test-linux)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "linux: needs the UML kernel (run with --linux)")
    config.addinivalue_line(
        "markers", "firmware: runs the Cortex-M images of make firmware (make test-firmware)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Linux group runs with --linux and only then; the quick suite leaves it out.
    The firmware group is skipped while the Cortex-M images are not built."""
    if FIRMWARE is None:
        for item in items:
            if item.get_closest_marker("firmware") is not None:
                item.add_marker(NOT_BUILT)
    want = config.getoption("--linux")
    keep = [item for item in items if (item.get_closest_marker("linux") is not None) == want]
    deselected = [item for item in items if item not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep
