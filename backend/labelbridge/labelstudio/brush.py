"""Label Studio brush RLE <-> the neutral ``Mask`` (pixel run lengths), in numpy.

The format (``@thi.ng/rle-pack``, written by the editor's ``exportRLE`` and label-studio-sdk's
``encode_rle``) packs the flattened RGBA buffer of the whole image at natural size
(``width * height * 4`` bytes): a header of 32 bits value count, 5 bits word size - 1 and
4 x 4 bits run-size classes, then tokens ``[repeat bit][class: 2 bits][count - 1][value(s)]``,
a repeat token carrying one value, a literal token ``count`` values.

``encode`` writes exactly the bytes label-studio-sdk's ``mask2rle(mask * 255)`` writes (word
size 8, classes [3, 4, 8, 16], foreground 255 in every channel so the editor paints it
opaque), from the runs alone: no pixel buffer is built. ``decode`` reads any stream the
format allows (the editor's literal tokens too) and keeps a pixel whose alpha byte is at least
``ALPHA_THRESHOLD`` (the editor anti-aliases brush edges with alpha 1..254); it works on the
tokens and never builds the RGBA buffer either. Both are property-tested against the SDK.
"""

from __future__ import annotations

import numpy as np

from labelbridge.model.regions import Mask

FOREGROUND = 255
ALPHA_THRESHOLD = 128  # alpha >= this is foreground: half coverage, as a rasterizer decides
_WORD = 8
_CLASSES = (3, 4, 8, 16)
_HEADER_BITS = 32 + 5 + 4 * 4
_LONGEST = 1 << 16  # run length of the largest class
_U64 = np.uint64


class BrushError(ValueError):
    """The RLE cannot be read; the message says why."""


# ----- encoding ------------------------------------------------------------------------------

def _tokens(values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token bits, bit widths) for maximal runs, as the SDK's ``encode_rle`` chooses them: a
    run of 1 is a literal of one value; longer runs repeat with the smallest class that holds
    them, and runs beyond 65536 are cut into 65536s plus the rest."""
    klass = np.select([lengths <= 8, lengths <= 16, lengths <= 256], [0, 1, 2], 3)
    pieces = np.where(klass == 3, (lengths - 1) // _LONGEST + 1, 1)
    if pieces.max(initial=1) > 1:
        last = np.zeros(int(pieces.sum()), dtype=bool)
        last[np.cumsum(pieces) - 1] = True
        rest = np.repeat(lengths - (pieces - 1) * _LONGEST, pieces)
        lengths = np.where(last, rest, _LONGEST)
        values, klass = np.repeat(values, pieces), np.repeat(klass, pieces)
    lengths, values, klass = lengths.astype(_U64), values.astype(_U64), klass.astype(_U64)
    count_bits = np.array(_CLASSES, dtype=_U64)[klass]
    repeat = (lengths > 1).astype(_U64)
    tokens = ((repeat << _U64(2) | klass) << count_bits | (lengths - _U64(1))) << _U64(_WORD)
    tokens |= values
    return tokens, count_bits + _U64(3 + _WORD)


def _pack(tokens: np.ndarray, widths: np.ndarray) -> bytes:
    """Concatenate tokens (most significant bit first) into bytes, then at least one zero bit
    more up to a whole byte, as the SDK pads."""
    ends = np.cumsum(widths)
    total = int(ends[-1])
    starts = ends - widths
    word = (starts >> _U64(6)).astype(np.int64)
    end_in_word = (starts & _U64(63)) + widths
    fits = end_in_word <= 64
    head = np.where(fits, tokens << (_U64(64) - np.minimum(end_in_word, _U64(64))),
                    tokens >> (np.maximum(end_in_word, _U64(64)) - _U64(64)))
    words = np.zeros(total // 64 + 2, dtype=_U64)
    first = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
    words[word[first]] = np.bitwise_or.reduceat(head, first)
    spill = ~fits
    if spill.any():
        words[word[spill] + 1] |= tokens[spill] << (_U64(128) - end_in_word[spill])
    return words.astype(">u8").tobytes()[:total // 8 + 1]


def encode_runs(values: np.ndarray, lengths: np.ndarray, count: int) -> bytes:
    """RLE of maximal runs ``(values, lengths)`` of bytes that add up to ``count`` values."""
    header = (((count << 5) | (_WORD - 1)) << 16) | 0x237F  # classes 3,4,8,16 stored minus 1
    tokens, widths = _tokens(values, lengths)
    return _pack(np.r_[np.array([header], dtype=_U64), tokens],
                 np.r_[np.array([_HEADER_BITS], dtype=_U64), widths])


def encode(mask: Mask) -> bytes:
    """The brush RLE of a mask: foreground opaque white (255 in R, G, B and A)."""
    runs = np.frombuffer(mask.runs, dtype="<u4").astype(np.int64)
    values = np.zeros(len(runs), dtype=np.uint8)
    values[1::2] = FOREGROUND
    keep = runs > 0
    return encode_runs(values[keep], runs[keep] * 4, mask.width * mask.height * 4)


# ----- decoding ------------------------------------------------------------------------------

class _Bits:
    """Random access to the bits of a byte string: ``read(pos, n)`` for numpy arrays of bit
    positions, ``n`` up to 25 bits (one unaligned 4-byte big-endian load per position)."""

    def __init__(self, data: bytes) -> None:
        self.size = len(data) * 8
        buf = np.frombuffer(data + bytes(8), dtype=np.uint8)
        self._u32 = np.ndarray((len(data) + 4,), dtype=">u4", buffer=buf, strides=(1,))

    def read(self, pos: np.ndarray, n: np.ndarray | int) -> np.ndarray:
        window = self._u32[pos >> 3].astype(np.uint32) << (pos & 7).astype(np.uint32)
        return (window >> (32 - np.asarray(n, dtype=np.uint32))).astype(np.int64)


def _token_starts(bits: _Bits, count: int, word: int, classes: np.ndarray) -> np.ndarray:
    """Bit positions of the tokens that make up ``count`` values. A token's width depends on
    its own header, so it is computed for every bit position of a block at once; the chain is
    then followed in a plain loop, one addition per token."""
    starts: list[int] = []
    append = starts.append
    pos, done, block = _HEADER_BITS, 0, 1 << 20
    while done < count and pos < bits.size:
        cand = np.arange(pos, min(pos + block, bits.size), dtype=np.int64)
        width = _widths(bits, cand, word, classes)[0].tolist()
        first, base, end = len(starts), pos, pos + len(width)
        while pos < end:
            append(pos)
            pos += width[pos - base]
        new = np.array(starts[first:], dtype=np.int64)
        widths, n = _widths(bits, new, word, classes)
        total = done + np.cumsum(n)
        outside = np.flatnonzero(new + widths > bits.size)  # what follows is padding
        cut = min(int(np.searchsorted(total, count)) + 1, len(new),
                  int(outside[0]) if len(outside) else len(new))
        del starts[first + cut:]
        done = int(total[cut - 1]) if cut else done
        if len(outside) and cut <= outside[0]:
            break
    if done < count:
        raise BrushError(f"rle: the data ends after {done} of {count} values")
    return np.array(starts, dtype=np.int64)


def _widths(bits: _Bits, pos: np.ndarray, word: int, classes: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """(width in bits, values) of tokens starting at ``pos``."""
    head = bits.read(pos, 3)
    size = classes[head & 3]
    n = bits.read(pos + 3, size) + 1
    return 3 + size + word * np.where(head >> 2, 1, n), n


def decode_runs(rle: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, lengths, value count) of the byte runs in an RLE; the lengths may add up to
    more than the count in a malformed last token, as the SDK tolerates."""
    if len(rle) * 8 < _HEADER_BITS:
        raise BrushError(f"rle: {len(rle)} bytes is shorter than the header")
    bits = _Bits(rle)
    count = int(bits.read(np.array([0]), 16)[0]) << 16 | int(bits.read(np.array([16]), 16)[0])
    word = int(bits.read(np.array([32]), 5)[0]) + 1
    classes = bits.read(np.array([37, 41, 45, 49]), 4) + 1
    if word > 16:
        raise BrushError(f"rle: word size {word} is larger than 16 bits")
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    starts = _token_starts(bits, count, word, classes)
    head = bits.read(starts, 3)
    size = classes[head & 3]
    n = bits.read(starts + 3, size) + 1
    repeat = (head >> 2).astype(bool)
    per_token = np.where(repeat, 1, n)  # runs each token gives: 1, or one per literal value
    first_value = starts + 3 + size
    offset = np.arange(int(per_token.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(per_token) - per_token, per_token)
    values = bits.read(np.repeat(first_value, per_token) + offset * word, word)
    lengths = np.where(np.repeat(repeat, per_token), np.repeat(n, per_token), 1)
    return values, lengths, count


def decode(rle: bytes, width: int, height: int) -> Mask:
    """The mask of a brush RLE for an image of ``width`` x ``height`` pixels."""
    values, lengths, count = decode_runs(rle)
    if count != width * height * 4:
        raise BrushError(f"rle: holds {count} values, a {width}x{height} RGBA image has "
                         f"{width * height * 4}")
    ends = np.minimum(np.cumsum(lengths), count)
    starts = np.r_[0, ends[:-1]]
    # pixel i is the run holding its alpha byte 4i+3: a run of bytes [s, e) covers pixels
    # [s // 4, e // 4)
    pixels = ends // 4 - starts // 4
    keep = pixels > 0
    fg, pixels = values[keep] >= ALPHA_THRESHOLD, pixels[keep]
    return mask_from_flags(fg, pixels, width, height)


def mask_from_flags(fg: np.ndarray, lengths: np.ndarray, width: int, height: int) -> Mask:
    """A ``Mask`` from consecutive runs flagged foreground or not (neighbours may agree)."""
    if len(fg) == 0:
        return Mask(width, height, np.array([width * height], dtype="<u4").tobytes())
    change = np.flatnonzero(np.r_[True, fg[1:] != fg[:-1]])
    runs = np.add.reduceat(lengths, change)
    if fg[0]:
        runs = np.r_[0, runs]
    return Mask(width, height, runs.astype("<u4").tobytes())
