"""Fixtures shared by the test modules."""

import pytest

from backends import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each rpmsg backend in turn: "virtio" and "glink"."""
    return str(request.param)
