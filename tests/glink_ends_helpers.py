"""The GLINK FIFO ends of either implementation (``ENDS``: the pure-Python ones, and the
compiled ones when they were built), which the GLINK tests run each of."""

import pytest

from amplink.rpmsg import glink_ends
from amplink.virtio.rings import PURE_PYTHON_ENV

_compiled = glink_ends.compiled_ends()
ENDS: dict[str, glink_ends.Ends] = {"python": glink_ends.PYTHON_ENDS} | (
    {"compiled": _compiled} if _compiled else {}
)


def use_ends(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make every GlinkLink made in this test use the ends ``request.param`` names, and
    every core process it starts choose the same (by the environment it inherits)."""
    monkeypatch.setattr(glink_ends, "ENDS", ENDS[request.param])
    if request.param == "python":
        monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    else:
        monkeypatch.delenv(PURE_PYTHON_ENV, raising=False)
    return str(request.param)
