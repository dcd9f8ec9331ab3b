"""The converters' hot modules run compiled in this install (mypyc, ``setup.py``), and the
compiled build converts exactly as the pure-Python source does, damaged rows included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from labelbridge import compiled

ROOT = Path(__file__).resolve().parents[2]


def test_the_hot_modules_run_compiled():
    states = compiled.status()
    assert set(states.values()) == {"compiled"}, (
        f"{states}: build the extensions (make, or pip install -e . with a C compiler)")


def _convert(pythonpath: Path | None, seed: int) -> tuple[bytes, bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "parity_run.py"), str(seed), "400"],
                         env=env, capture_output=True, check=True, timeout=120).stdout
    first, _, rest = out.partition(b"\n")
    return first, rest


def test_compiled_and_pure_source_convert_byte_for_byte_alike(tmp_path):
    shutil.copytree(ROOT / "backend" / "labelbridge", tmp_path / "labelbridge",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for seed in (1, 2):
        built, built_out = _convert(None, seed)
        pure, pure_out = _convert(tmp_path, seed)
        assert (built, pure) == (b"# compiled", b"# interpreted")
        assert built_out.count(b" losses ") > 50   # the damaged rows were damaged
        assert built_out == pure_out
