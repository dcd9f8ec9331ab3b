"""labelstudio/brush.py against label-studio-sdk's own brush codec, both ways, on random masks:
our RLE is byte for byte the SDK's, the SDK decodes ours, we decode the SDK's, and we read any
stream the format allows (literal tokens, every run class, anti-aliased alpha) as the SDK does."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter import brush as sdk

from labelbridge.labelstudio import brush
from labelbridge.model.regions import Mask

from tests.maskgen import from_mask, masks, run_masks, to_mask


def sdk_rle(flags: np.ndarray) -> bytes:
    return bytes(sdk.mask2rle(flags.astype(np.uint8) * 255))


@settings(max_examples=150, deadline=None)
@given(masks(300))
def test_encode__is_byte_identical_to_the_sdk(flags):
    assert brush.encode(to_mask(flags)) == sdk_rle(flags)


@settings(max_examples=100, deadline=None)
@given(masks(120))
def test_encode__decodes_with_the_sdk_to_the_same_mask_painted_255(flags):
    h, w = flags.shape
    rgba = sdk.decode_rle(brush.encode(to_mask(flags))).reshape(h, w, 4)
    want = np.where(flags, 255, 0)
    for channel in range(4):
        assert np.array_equal(rgba[:, :, channel], want)


@settings(max_examples=150, deadline=None)
@given(masks(300))
def test_decode__reads_the_sdk_rle_back_to_the_mask(flags):
    h, w = flags.shape
    got = brush.decode(sdk_rle(flags), w, h)
    assert got == to_mask(flags)
    assert np.array_equal(from_mask(got), flags)


class TokenWriter:
    """A test-only writer of arbitrary rle-pack tokens (the editor's encoder also writes
    literal tokens of several values)."""

    def __init__(self, count: int, word: int = 8, classes=(3, 4, 8, 16)):
        self.bits = f"{count:032b}{word - 1:05b}" + "".join(f"{c - 1:04b}" for c in classes)
        self.word, self.classes = word, classes

    def token(self, repeat: bool, klass: int, values: list[int], length: int = 1) -> None:
        n = length if repeat else len(values)
        self.bits += ("1" if repeat else "0") + f"{klass:02b}"
        self.bits += f"{n - 1:0{self.classes[klass]}b}"
        self.bits += "".join(f"{v:0{self.word}b}" for v in values)

    def data(self) -> bytes:
        bits = self.bits + "0" * (-len(self.bits) % 8)
        return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))


@st.composite
def token_streams(draw):
    """(rle, width, height) with random repeat and literal tokens of any class and value."""
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    count = w * h * 4
    tokens, done = [], 0
    while done < count:
        klass = draw(st.integers(0, 3))
        limit = min(1 << (3, 4, 8, 16)[klass], count - done)
        if limit < 1:
            continue
        n = draw(st.integers(1, min(limit, 40) if draw(st.booleans()) else limit))
        values = st.one_of(st.sampled_from([0, 255]), st.integers(0, 255))
        if draw(st.booleans()):
            tokens.append((True, klass, [draw(values)], n))
        else:
            tokens.append((False, klass, [draw(values) for _ in range(n)], 1))
        done += n
    writer = TokenWriter(count)
    for t in tokens:
        writer.token(*t)
    return writer.data(), w, h


@settings(max_examples=150, deadline=None)
@given(token_streams())
def test_decode__any_token_stream_as_the_sdk_decodes_it(stream):
    rle, w, h = stream
    want = sdk.decode_rle(rle)
    values, lengths, count = brush.decode_runs(rle)
    assert count == len(want)
    assert np.array_equal(np.repeat(values, lengths)[:count], want)
    alpha = want.reshape(h, w, 4)[:, :, 3]
    assert np.array_equal(from_mask(brush.decode(rle, w, h)), alpha >= brush.ALPHA_THRESHOLD)


def test_decode__anti_aliased_edge_keeps_half_covered_pixels():
    writer = TokenWriter(4 * 4)  # 4 pixels, alpha 0, 127, 128, 255 (R = G = B = A)
    for alpha in (0, 127, 128, 255):
        writer.token(True, 0, [alpha], 4)
    assert from_mask(brush.decode(writer.data(), 4, 1)).tolist() == [[False, False, True, True]]


def test_encode__long_runs_beyond_the_largest_class():
    flags = np.zeros((700, 400), dtype=bool)   # 280000 pixels = 1120000 bytes in one run
    flags[350:, :] = True
    assert brush.encode(to_mask(flags)) == sdk_rle(flags)
    assert brush.decode(sdk_rle(flags), 400, 700) == to_mask(flags)


def test_encode__empty_and_full():
    for flags in (np.zeros((3, 5), bool), np.ones((3, 5), bool)):
        assert brush.encode(to_mask(flags)) == sdk_rle(flags)
        assert brush.decode(sdk_rle(flags), 5, 3) == to_mask(flags)
    assert brush.decode(sdk_rle(np.zeros((3, 5), bool)), 5, 3).empty


@pytest.mark.parametrize("rle, w, h, message", [
    (b"\x00\x00", 1, 1, "shorter than the header"),
    (bytes(sdk.mask2rle(np.zeros((2, 2), np.uint8))), 3, 3, "holds 16 values, a 3x3"),
    (bytes(sdk.mask2rle(np.full((8, 8), 255, np.uint8)))[:8], 8, 8, "ends after 0 of 256 values"),
])
def test_decode__malformed_rle_names_the_reason(rle, w, h, message):
    with pytest.raises(brush.BrushError, match=message):
        brush.decode(rle, w, h)


def test_decode__truncated_stream_is_an_error():
    writer = TokenWriter(16)
    writer.token(False, 3, [255] * 16)
    with pytest.raises(brush.BrushError, match="ends after 0 of 16 values"):
        brush.decode(writer.data()[:-3], 2, 2)
    writer = TokenWriter(64)
    writer.token(True, 0, [255], 8)
    with pytest.raises(brush.BrushError, match="ends after 8 of 64 values"):
        brush.decode(writer.data(), 4, 4)


def test_mask_invariants_are_checked():
    with pytest.raises(ValueError, match="whole 32-bit runs"):
        Mask(2, 2, b"\x01\x00")
    with pytest.raises(ValueError, match="positive sizes"):
        Mask(0, 2, b"\x00\x00\x00\x00")


@settings(max_examples=30, deadline=None)
@given(run_masks(60))
def test_mask_from_flags_merges_neighbours(flags):
    flat = flags.ravel()
    ones = np.ones(flat.size, dtype=np.int64)
    assert brush.mask_from_flags(flat, ones, flags.shape[1], flags.shape[0]) == to_mask(flags)
