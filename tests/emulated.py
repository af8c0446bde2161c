"""Helpers for the tests that run the Cortex-M images on emulated cores.

The images are the ones ``make firmware`` builds from the current sources
(``tools/firmware/build.sh --where``); without them, or without the toolchain, the
tests are skipped with the command that builds them."""

import subprocess
from pathlib import Path
from typing import Any

import pytest

from amplink.emu.soc import CortexMSoc
from amplink.host import PLATFORMS, Rproc
from amplink.remoteproc.emulated import EmulatedPlatformDriver

ROOT = Path(__file__).resolve().parent.parent
ECHO = "rpmsg-openamp-demo-channel"


def _built() -> Path | None:
    try:
        out = subprocess.run(
            ["bash", str(ROOT / "tools" / "firmware" / "build.sh"), "--where"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 else None


FIRMWARE = _built()
# A test that runs the images: ``make test-firmware`` selects these (``-m firmware``), and
# conftest skips them when the images are not built.
needs_firmware = pytest.mark.firmware
NOT_BUILT = pytest.mark.skip(
    reason="the Cortex-M images are not built from the current sources: run `make firmware` "
    "(or `make test-firmware`, which builds them and runs these tests)",
)


def image(name: str) -> str:
    """The path of a built image (``rpmsg-lite-echo.elf``...)."""
    assert FIRMWARE is not None
    return str(FIRMWARE / name)


def emulated(name: str, image_name: str, soc: CortexMSoc | None = None, **kwargs: Any) -> Rproc:
    """A remote processor running the built image ``image_name``: on the emulated
    i.MX8M Plus-like M7 of :data:`amplink.host.PLATFORMS`, or on a core of ``soc``."""
    platforms = PLATFORMS if soc is None else (EmulatedPlatformDriver(soc),)
    return Rproc(name, image(image_name), platforms=platforms, **kwargs)


def echo(rp: Rproc, payloads: list[bytes], timeout: float = 10.0) -> None:
    """Send each payload to the core's echo service and check what comes back."""
    chan = rp.wait_channel(ECHO, timeout)
    with chan.create_ept() as ept:
        for p in payloads:
            ept.send(p)
            reply = ept.recv(timeout)
            assert reply.data == p and reply.src == chan.dst
