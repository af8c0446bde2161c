"""Firmware references: what a board's ``firmware =``, ``Rproc(firmware=...)``,
``amplink firmware`` or ``amplink fw pack`` name, resolved in one place by one rule.

**The rule.** A reference is a *module name* when it is a dotted Python name
(``sensor_fw``, ``mycompany.fw.echo``) whose last part is not a file suffix
(:data:`FILE_SUFFIXES`: ``.py``, ``.elf``...).  Anything else, in particular anything
with a ``/``, is a *file path*, relative to a base folder (a board file's folder) or to
the current directory.  A file ending in ``.py`` is a Python firmware program; any
other file must be an ELF image.  So ``fw.elf`` is always the file ``./fw.elf``, and a
native executable in the current folder is named ``./fw``.  A bare ``*.elf`` name that
is not in that folder is looked up on the firmware search path
(:mod:`amplink.remoteproc.firmware_path`, as ``request_firmware`` looks in
``/lib/firmware``).

Every error is a :class:`~amplink.remoteproc.elf.FirmwareError` that names what was
looked for and where (``ENOENT`` for a missing file or module, ``ENOEXEC`` for a
program without ``main``).
"""

from __future__ import annotations

import ast
import errno
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from amplink.remoteproc import firmware_path
from amplink.remoteproc.elf import ELF_MAGIC, FirmwareError, FirmwareImage
from amplink.remoteproc.fwpack import image_program, pack_python
from amplink.remoteproc.layout import default_rsc_table
from amplink.wire import rsc_table as rt

EXPECTED = (
    "a firmware is an ELF image with a .resource_table section (amplink fw pack makes "
    "one from a program), a .py program defining main(core), or a module name (a.b.c)"
)
FILE_SUFFIXES = ("py", "elf", "out", "axf", "bin", "img", "mbn", "so")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


@dataclass(frozen=True)
class FirmwareRef:
    """A resolved reference: ``kind`` is ``"module"`` (``name`` is the module name)
    or ``"file"`` (``name`` is the absolute path)."""

    spec: str  # as it was written
    kind: str
    name: str

    @property
    def is_program(self) -> bool:
        """A Python firmware program (a module or a ``.py`` file), not an image."""
        return self.kind == "module" or self.name.endswith(".py")

    def __str__(self) -> str:
        return self.name

    def source_path(self) -> str:
        """The file that holds the firmware (a module's ``.py`` source); ``ENOENT``
        naming what was looked for and where (``EISDIR`` for a directory)."""
        if self.kind == "file":
            if os.path.isdir(self.name):
                raise FirmwareError(
                    "missing",
                    f"firmware file {self.name} is a directory: give the firmware file in it",
                    errno.EISDIR,
                )
            if not os.path.isfile(self.name):
                where = "" if self.spec == self.name else f" (given as {self.spec!r})"
                if _bare_elf(self.spec):
                    where += f", nor on {firmware_path.describe()}"
                raise FirmwareError(
                    "missing", f"firmware file {self.name} not found{where}", errno.ENOENT
                )
            return self.name
        try:
            found = importlib.util.find_spec(self.name)
        except (ImportError, ValueError):
            found = None
        if found is None or found.origin is None or not found.origin.endswith(".py"):
            hint = "to name a file, write its path (./fw.py, ./fw.elf)"
            if os.path.exists(self.spec):  # the rule stands; say how to name that file
                hint = f"the file {self.spec} in the current folder is named ./{self.spec}"
            raise FirmwareError(
                "missing",
                f"firmware module {self.name!r} not found on the module path of "
                f"{sys.executable} (or it has no Python source); {hint}",
                errno.ENOENT,
            )
        return found.origin

    def check(self) -> None:
        """``ENOENT`` if the firmware is not there, ``EISDIR`` if it is a directory
        (cheap: nothing is parsed)."""
        self.source_path()

    def program(self) -> tuple[str, str]:
        """``(source, filename)`` of the Python program: a module, a ``.py`` file, or
        the program packed in an ELF image (``ENOEXEC`` if it has none)."""
        path = self.source_path()
        if not self.is_program:
            return image_program(self.image()), path
        try:
            with open(path, encoding="utf-8") as f:
                source = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise FirmwareError("missing", f"cannot read firmware {path}: {why}") from None
        check_program(source, path)
        return source, path

    def image(self, table: rt.ResourceTable | None = None) -> FirmwareImage:
        """The ELF image: the file itself, or the program packed with ``table``."""
        if self.is_program:
            source, path = self.program()
            return FirmwareImage.parse(pack_python(source, table or default_rsc_table()), path)
        path = self.source_path()
        with open(path, "rb") as f:
            magic = f.read(len(ELF_MAGIC))
        if magic != ELF_MAGIC:
            raise FirmwareError(
                "magic",
                f"{path} is not an ELF image (it starts with {magic!r}, not b'\\x7fELF') "
                f"nor a Python program (.py); {EXPECTED}",
                errno.ENOEXEC,
            )
        return FirmwareImage.from_file(path)


def resolve(spec: str, base: str | Path | None = None) -> FirmwareRef:
    """Resolve ``spec`` by the module's rule; a relative path is taken from ``base``
    (default: the current directory).  ``EINVAL`` for an empty reference."""
    spec = spec.strip()
    if not spec:
        raise FirmwareError("missing", "an empty firmware reference", errno.EINVAL)
    last = spec.rsplit(".", 1)[-1] if "." in spec else ""
    if _MODULE.match(spec) and last not in FILE_SUFFIXES:
        return FirmwareRef(spec, "module", spec)
    path = os.path.expanduser(spec)
    if not os.path.isabs(path):
        path = os.path.join(base if base is not None else os.getcwd(), path)
    if _bare_elf(spec) and not os.path.exists(path):
        path = firmware_path.lookup(spec) or path
    return FirmwareRef(spec, "file", os.path.abspath(path))


def _bare_elf(spec: str) -> bool:
    """A file name without a folder ending in ``.elf``: the search path may hold it."""
    return "/" not in spec and spec.endswith(".elf")


def check_program(source: str, filename: str) -> None:
    """Check a Python firmware program without running it: it compiles and defines
    ``main`` at top level (``ENOEXEC`` naming the file otherwise)."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise FirmwareError(
            "entry", f"{filename}:{exc.lineno}: not valid Python: {exc.msg}", errno.ENOEXEC
        ) from None
    if "main" not in _top_level_names(tree):
        exits = _exit_at_import(tree)
        raise FirmwareError(
            "entry",
            f"{filename} defines no main(core) function, which a firmware program must"
            + (
                f" (line {exits} ends the program while it is imported: a firmware program "
                "is imported, then its main(core) runs)"
                if exits
                else ""
            ),
            errno.ENOEXEC,
        )


def _exit_at_import(tree: ast.Module) -> int | None:
    """The line of a top-level ``sys.exit()`` (``exit()``, ``quit()``, ``raise
    SystemExit``), if the program has one."""
    for node in tree.body:
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id == "SystemExit":
                return node.lineno
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("exit", "quit", "_exit"):
                return node.lineno
    return None


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names
