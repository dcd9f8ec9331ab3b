"""``fixed(v, digits)``: exactly ``round(v, digits)`` for a float, at under half its cost.

``round(float, n)`` is correctly rounded through a decimal string (~0.3 µs a call), and a
prediction rounds a hundred or more coordinates. Scaling by ``10**n`` and rounding to an integer
gives the same integer whenever the scaled value is not within its rounding error of a tie, and
``k / 10**n`` (both exact doubles, one correctly rounded division) is then the double nearest the
decimal ``round`` parses back. Near ties, for huge values and for zero (whose sign ``round``
keeps) the exact ``round`` decides (``tests/unit/test_rounding.py`` compares both).
"""

from __future__ import annotations

from typing import Final

_SCALES: Final = tuple(float(10 ** n) for n in range(16))  # exact doubles
# |v * 10**n| below this: its rounding error is < 2**-16, far from the margin
_SAFE: Final = 2.0 ** 36


def fixed(v: float, digits: int) -> float:
    """``round(v, digits)`` (``0 <= digits < 16``), the same double, sign of zero included."""
    scale = _SCALES[digits]
    y = v * scale
    if -_SAFE < y < _SAFE:  # false for nan and the infinities as well
        # the nearest whole number as a float, in native arithmetic once compiled (``round(y)``
        # builds an int object); near a tie, where the two rules part, ``round`` decides below
        k = float(int(y + 0.5)) if y >= 0.0 else -float(int(0.5 - y))
        if k != 0.0 and -0.4999 < y - k < 0.4999:
            return k / scale
    return round(v, digits)
