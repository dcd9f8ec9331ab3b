"""``fixed`` is ``round`` for floats: the same double for every input, sign of zero and ties
included (its fast path must never change a converted coordinate)."""

import math
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from labelbridge.model.rounding import fixed

digits = st.integers(min_value=0, max_value=15)


def same(a: float, b: float) -> bool:
    """Bit for bit (so -0.0 differs from 0.0, and nan equals nan)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


@settings(max_examples=3000)
@given(st.floats(allow_nan=True, allow_infinity=True), digits)
@example(0.0, 4)
@example(-0.0, 4)
@example(-0.00004, 4)      # rounds to -0.0
@example(0.00005, 4)       # a decimal tie, not a binary one
@example(2.675, 2)         # the classic: 2.67, the double is just below the tie
@example(0.125, 2)         # an exact binary tie: half to even
@example(319.99999999999994, 4)
@example(2.0 ** 40 + 0.5, 4)
def test_fixed_is_round(v, n):
    assert same(fixed(v, n), round(v, n)), (v, n)


@settings(max_examples=2000)
@given(st.integers(min_value=-10**12, max_value=10**12), st.integers(min_value=0, max_value=8),
       st.sampled_from([0.0, 0.5, 0.4999999, 0.5000001, 0.25, 1e-9, -1e-9]))
def test_fixed_is_round_near_ties(k, n, frac):
    """Values on and right beside the ties of the scaled grid, where a shortcut would slip."""
    v = (k + frac) / 10.0 ** n
    assert same(fixed(v, n), round(v, n)), (v, n)


def test_fixed_keeps_non_finite():
    assert math.isnan(fixed(math.nan, 4))
    assert fixed(math.inf, 4) == math.inf and fixed(-math.inf, 8) == -math.inf
