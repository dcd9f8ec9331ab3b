"""The modules mypyc compiles at install (``setup.py``), and whether this install runs them so.

Preparing predictions is object-heavy Python (a row builds ~55 neutral objects and ~35 result
dicts), so the converters' hot modules ship compiled, as black and mypy do. Their source stays
the one source: without a C compiler, or with ``LABELBRIDGE_COMPILE=0`` at install, the same
modules run interpreted, alike and slower. A checkout whose compiled module is older than its
source runs the old code, so ``status`` names it "stale" (``make`` rebuilds it; the tests and
``labelbridge serve`` refuse / warn).

Standard library only: ``setup.py`` and the Makefile run this file as a script.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULES = (
    "labelbridge.model.ids",
    "labelbridge.model.regions",
    "labelbridge.model.report",
    "labelbridge.model.rounding",
    "labelbridge.labelbox.annotations",
    "labelbridge.labelbox.shapes",
    "labelbridge.labelstudio.mapping",
    "labelbridge.labelstudio.results.check",
    "labelbridge.labelstudio.results.kinds",
    "labelbridge.labelstudio.results.writer",
    "labelbridge.predictions.converting",
)

_BACKEND = Path(__file__).resolve().parent.parent
_SLACK_S = 2.0


def sources() -> list[str]:
    """The source files of ``MODULES``, relative to the project root (``backend/...``)."""
    return [f"backend/{m.replace('.', '/')}.py" for m in MODULES]


def status() -> dict[str, str]:
    """Each module -> "compiled", "interpreted" or "stale" (compiled from an older source)."""
    out = {}
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec and spec.origin else None
        if origin is None or origin.suffix == ".py":
            out[name] = "interpreted"
            continue
        source = origin.parent / (name.rsplit(".", 1)[1] + ".py")
        # an installer writes both within moments; an edit after the build comes later
        stale = source.exists() and source.stat().st_mtime > origin.stat().st_mtime + _SLACK_S
        out[name] = "stale" if stale else "compiled"
    return out


def summary() -> str:
    """One line for logs and ``/status``: "compiled", "interpreted" or what is mixed."""
    states = status()
    kinds = set(states.values())
    if len(kinds) == 1:
        return kinds.pop()
    return ", ".join(f"{m.rsplit('.', 1)[1]} {s}" for m, s in states.items() if s != "compiled")


if __name__ == "__main__":
    if sys.argv[1:] == ["sources"]:
        print(" ".join(sources()))
    else:
        sys.path.insert(0, str(_BACKEND))
        for module, state in status().items():
            print(f"{state:<12}{module}")
