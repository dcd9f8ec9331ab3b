"""Process helpers for the tests: they live in the package (``make demo`` uses them too)."""

from labelbridge.tools.localls.procs import (  # noqa: F401  (re-exported)
    ProcessStartError, free_port, port_in_use, start_process, stop_process, tail)
