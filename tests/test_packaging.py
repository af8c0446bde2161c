"""How the package is built: nothing in it makes the build warn."""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_compiled_fast_paths_are_declared_where_setuptools_does_not_warn():
    """setuptools (>= 74) warns "[tool.setuptools.ext-modules] ... is still
    *experimental*" at each of the three steps of an editable install, so `make`
    printed it three times: the extensions are declared in setup.py instead."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "ext-modules" not in project["tool"]["setuptools"]
    setup = ast.parse((ROOT / "setup.py").read_text())
    declared = {
        node.args[0].value
        for node in ast.walk(setup)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "compiled"
        and isinstance(node.args[0], ast.Constant)
    }
    sources = {
        ".".join(p.relative_to(ROOT / "src").with_suffix("").parts)
        for p in (ROOT / "src" / "amplink").rglob("_*.c")
    }
    assert declared == sources  # every C file is built, and only those
