"""The e2e suite's Label Studio: :mod:`labelbridge.tools.localls`, shared with ``make demo``.

Kept as the tests' import name (``from tests.e2e import lsharness``) and as a script
(``python tests/e2e/lsharness.py install | template | serve``) for habit's sake.
"""

import sys

from labelbridge.tools.localls import *  # noqa: F401,F403  (re-exported)
from labelbridge.tools.localls.__main__ import main
from labelbridge.tools.localls.install import _base_python, _pip_env  # noqa: F401  (tests/lsml)

if __name__ == "__main__":
    sys.exit(main())
