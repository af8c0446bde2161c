"""The user guide's examples run as written and print what the guide says.

Every ``python`` or ``toml`` block whose first line is ``# <file>`` is written to a
folder under that name; every such ``python`` block followed directly by a ``text`` block
is run there, and its output must be that text.
"""

import itertools
import re
from pathlib import Path

import pytest

from emulated import needs_firmware
from test_readme import run_script

GUIDE = Path(__file__).parent.parent / "docs" / "guide.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(GUIDE.read_text())


def runnable() -> list[tuple[str, str]]:
    found = blocks()
    return [
        (body.split("\n", 1)[0][2:].split(":")[0], expected)
        for (lang, body), (next_lang, expected) in itertools.pairwise(found)
        if lang == "python" and next_lang == "text" and body.startswith("# ")
    ]


NEEDS_FIRMWARE = {"cortex_m_host.py"}  # runs a Cortex-M image that make firmware builds


def test_the_guide_has_runnable_examples():
    assert [name for name, _ in runnable()] == ["twin_host.py", "upper_host.py", *NEEDS_FIRMWARE]


@pytest.mark.parametrize(
    ("script", "expected"),
    [pytest.param(*r, marks=needs_firmware) if r[0] in NEEDS_FIRMWARE else r for r in runnable()],
)
def test_guide_example_runs(tmp_path, script, expected):
    for lang, body in blocks():
        first = body.split("\n", 1)[0]
        if lang in ("python", "toml") and first.startswith("# "):
            (tmp_path / first[2:].split(":")[0].strip()).write_text(body)
    assert run_script(tmp_path, script) == expected.strip()
