"""The package's rooms and the direction of imports between them (see labelbridge/__init__.py).

Every ``import`` in every module is read from the source (also imports inside functions), so
a lazy import against the direction fails here as surely as one at the top.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import labelbridge

PACKAGE = Path(labelbridge.__file__).resolve().parent

# room -> rooms it may import (itself always allowed). ``None``: anything.
ALLOWED: dict[str, set[str] | None] = {
    "model": set(),
    "labelbox": {"model"},
    "labelstudio": {"model"},
    "postgres": set(),
    "predictions": {"model", "labelbox", "labelstudio", "postgres", "settings"},
    "groundtruth": {"model", "labelbox", "labelstudio", "postgres", "settings"},
    "tools": {"model", "labelbox", "labelstudio", "postgres", "settings"},
    "settings": set(),
    "compiled": set(),   # which modules mypyc compiles; setup.py runs it as a script
    "service": None,
    "mlbackend": None,
    "__main__": None,
    "__init__": set(),
}
MAX_LINES = 450
# Being split right now; each entry goes when its module is split.
PENDING_SPLIT: set[str] = set()


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str) -> set[str]:
    """Every labelbridge module the source imports (absolute or relative)."""
    out: set[str] = set()
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "labelbridge")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "labelbridge":
                continue
            if target == "labelbridge":  # from labelbridge import room
                out.update(f"labelbridge.{a.name}" for a in node.names)
            else:
                out.add(target)
    return out


def violations(module: str, imports: set[str]) -> list[str]:
    room = room_of(module)
    allowed = ALLOWED.get(room, set())
    if allowed is None:
        return []
    bad = []
    for target in sorted(imports):
        other = room_of(target)
        if other != room and other not in allowed:
            bad.append(f"{module} imports {target}: {room} may import only "
                       f"{sorted(allowed) or 'the standard library and itself'}")
    return bad


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_room_is_declared():
    rooms = {room_of(module_name(p)) for p in modules()}
    assert rooms <= set(ALLOWED), f"undeclared rooms: {rooms - set(ALLOWED)}"


def test_imports_point_one_way():
    problems = []
    for path in modules():
        name = module_name(path)
        problems += violations(name, imported_modules(path.read_text(encoding="utf-8"), name))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, source, bad", [
    ("labelbridge.labelbox.export", "from labelbridge.service.server import create_app", True),
    ("labelbridge.labelbox.export", "def f():\n    import labelbridge.labelstudio.api\n", True),
    ("labelbridge.model.regions", "from labelbridge.labelbox import export", True),
    ("labelbridge.model.regions", "from ..labelstudio import mapping", True),
    ("labelbridge.labelstudio.results", "from labelbridge import settings", True),
    ("labelbridge.predictions.predictor", "from labelbridge.groundtruth import outbox", True),
    ("labelbridge.predictions.predictor", "from labelbridge.labelbox.export import x", False),
    ("labelbridge.service.cli", "from labelbridge.tools import doctor", False),
    ("labelbridge.labelbox.ndjson", "from .export import x\nfrom ..model import ids", False),
])
def test_the_check_catches_an_import_against_the_direction(module, source, bad):
    assert bool(violations(module, imported_modules(source, module))) is bad


def test_the_neutral_model_imports_no_third_party_library():
    stdlib = sys.stdlib_module_names
    for path in (PACKAGE / "model").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            for n in names:
                top = n.split(".")[0]
                assert top in stdlib or top == "labelbridge", f"{path.name} imports {n}"


def test_modules_stay_small():
    big = [f"{p.relative_to(PACKAGE)}: {n} lines" for p in modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
           and str(p.relative_to(PACKAGE)) not in PENDING_SPLIT]
    assert not big, "split these modules:\n" + "\n".join(big)
