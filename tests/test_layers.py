"""The import graph against the layer table of docs/architecture.md.

Every import statement of every module counts: at the top, inside functions, under
``TYPE_CHECKING``.  The table must list each package's imports exactly (only true
arrows, and all of them), every arrow must go down a floor, and the rules the driver
model rests on must hold: remoteproc never imports rpmsg (nor rpmsg remoteproc), and no
package below the bundled firmware names it.
"""

import ast
import re
from pathlib import Path

import amplink

SRC = Path(amplink.__file__).parent
DOC = Path(__file__).parent.parent / "docs" / "architecture.md"
ROW = re.compile(r"^\| (\d+) \| `amplink\.(\w+)` \| .* \| (.*) \|$")


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "amplink" and len(parts) > 1 else None


def _modules() -> dict[str, Path]:
    """Every module of amplink by dotted name (packages by their ``__init__``)."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every amplink module ``path`` imports, wherever the statement is (``from X
    import y`` counts ``X.y`` when that is a module: ``from amplink import rpmsg``
    names a package, ``from amplink import __version__`` does not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & modules
    return {m for m in found if m.split(".")[0] == "amplink"}


def _graph() -> dict[str, set[str]]:
    """Package -> the other packages it imports (the package face ``amplink`` itself,
    which only holds ``__version__``, is no layer)."""
    arrows: dict[str, set[str]] = {}
    modules = _modules()
    for name, path in modules.items():
        src = _package(name)
        if src is None:
            continue
        targets = arrows.setdefault(src, set())  # a package that imports nothing has a row
        for target in _imports(path, set(modules)):
            dst = _package(target)
            if dst is not None and dst != src:
                targets.add(dst)
    return arrows


def _table() -> dict[str, tuple[int, set[str]]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            floor, package, imports = m.groups()
            rows[package] = (int(floor), set(re.findall(r"`(\w+)`", imports)))
    return rows


def test_the_layer_table_lists_every_package_and_exactly_its_imports():
    graph, table = _graph(), _table()
    assert set(table) == set(graph)
    wrong = {p: (sorted(table[p][1]), sorted(graph[p])) for p in graph if table[p][1] != graph[p]}
    assert wrong == {}


def test_every_arrow_goes_down_a_floor():
    table = _table()
    up = [(a, b) for a, (floor, imports) in table.items() for b in imports if table[b][0] >= floor]
    assert up == []


def test_remoteproc_and_rpmsg_never_import_each_other():
    modules = _modules()
    for name, path in modules.items():
        imported = _imports(path, set(modules))
        if name.startswith("amplink.remoteproc"):
            assert not [m for m in imported if m.startswith("amplink.rpmsg")], name
        if name.startswith("amplink.rpmsg"):
            assert not [m for m in imported if m.startswith("amplink.remoteproc")], name


def test_nothing_below_the_bundled_firmware_names_it():
    table = _table()
    floor = table["firmware"][0]
    lower = {p for p, (f, _) in table.items() if f < floor}
    named = [
        name
        for name, path in _modules().items()
        if _package(name) in lower and "amplink.firmware" in path.read_text()
    ]
    assert named == []


def test_one_binding_per_device_id_and_resource_type():
    """Exactly one driver class says it drives VIRTIO_ID_RPMSG, and exactly one
    resource handler says it handles RSC_AMPLINK_GLINK."""
    text = {name: path.read_text() for name, path in _modules().items()}
    ids = [n for n, t in text.items() if re.search(r"id_table.*= \(VIRTIO_ID_RPMSG,\)", t)]
    glink = [n for n, t in text.items() if re.search(r"rsc_type.*= RSC_AMPLINK_GLINK", t)]
    assert ids == ["amplink.rpmsg.virtio_driver"]
    assert glink == ["amplink.bindings"]
