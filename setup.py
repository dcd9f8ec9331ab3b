"""Build hook: pyproject.toml holds the metadata; this adds the converters' hot modules compiled
with mypyc (the list and why: ``backend/labelbridge/compiled.py``).

``LABELBRIDGE_COMPILE=0`` builds without them; so does a machine without a C compiler (a warning
says so): the same modules then run interpreted, alike and slower.
"""

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Compiling is a speed-up, not a requirement: a failed C build leaves the pure modules.
    All or none: a compiled module cannot import without the group library the others share."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - distutils raises several unrelated types
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            print(f"labelbridge: mypyc modules not built ({exc}); the converters run "
                  "interpreted", file=sys.stderr)


def compiled_modules() -> list:
    if os.environ.get("LABELBRIDGE_COMPILE", "1") == "0":
        return []
    from mypyc.build import mypycify

    sources = runpy.run_path("backend/labelbridge/compiled.py")["sources"]()
    # --no-site-packages: the installed libraries are not analysed (their values are Any here)
    return mypycify(["--ignore-missing-imports", "--disable-error-code=import-untyped",
                     "--no-site-packages", "--follow-imports=silent", *sources],
                    opt_level="2", group_name="labelbridge")


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": OptionalBuildExt})
