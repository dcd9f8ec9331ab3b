"""labelbox/masks.py: Labelbox mask PNGs -> neutral masks -> Label Studio brush RLE -> the
Labelbox mask import, on random shapes and sizes; composite PNGs split by exact colour; inline
and local masks for offline exports; every failure a reason, never an exception."""

import base64
import io

import labelbox.types as lb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter import brush as sdk
from labelbox.data.serialization import NDJsonConverter
from PIL import Image

from labelbridge.labelbox import mask_payload, masks
from labelbridge.labelbox.mask_fetch import MaskFetcher, MaskFetchError
from labelbridge.labelstudio import brush

from tests.maskgen import STYLES, composite, from_mask, masks as mask_shapes, png, single_png, \
    to_mask

UUID = "8d5fd2b4-2f1b-4d0c-9c3a-2d3b0a9e6b11"


def import_line(mask) -> dict:
    ann = lb.ObjectAnnotation(name="seg", value=masks.to_labelbox(mask), extra={"uuid": UUID})
    (line,) = NDJsonConverter.serialize([lb.Label(data={"global_key": "k"}, annotations=[ann])])
    return line


def png_pixels(b64: str) -> np.ndarray:
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert im.mode == "L"  # what the SDK's own reader (NDMask.to_common) accepts: 0 and 1
    return np.asarray(im)


@settings(max_examples=120, deadline=None)
@given(mask_shapes(160), st.sampled_from(STYLES))
def test_labelbox_png_to_brush_rle_and_back_is_identical_pixel_for_pixel(flags, style):
    h, w = flags.shape
    mask = masks.read_png(single_png(flags, style)).instance(None)
    assert mask == to_mask(flags)
    rle = brush.encode(mask)
    assert np.array_equal(sdk.decode_rle(rle).reshape(h, w, 4)[:, :, 3] == 255, flags)
    back = brush.decode(rle, w, h)
    if back.empty:
        return  # the writer reports an empty mask as a loss (test_ndjson); nothing to import
    line = import_line(back)
    assert set(line["mask"]) == {"png"}
    assert np.array_equal(png_pixels(line["mask"]["png"]), flags.astype(np.uint8))


@st.composite
def label_images(draw):
    """(labels, colours): a label image of k instances (rectangles, discs, speckle that later
    ones paint over), each instance in a colour of its own."""
    w, h = draw(st.integers(1, 120)), draw(st.integers(1, 120))
    k = draw(st.integers(1, 6))
    labels = np.zeros((h, w), dtype=np.int64)
    yy, xx = np.mgrid[:h, :w]
    for i in range(1, k + 1):
        x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        x1, y1 = draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))
        kind = draw(st.sampled_from(["rect", "disc", "speckle"]))
        if kind == "rect":
            labels[y0:y1, x0:x1] = i
        elif kind == "disc":
            labels[(xx - x0) ** 2 + (yy - y0) ** 2 <= max(x1 - x0, y1 - y0) ** 2] = i
        else:
            rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
            labels[rng.random((h, w)) < 0.2] = i
    colors = draw(st.lists(st.tuples(*[st.integers(0, 255)] * 3).filter(lambda c: c != (0, 0, 0)),
                           min_size=k, max_size=k, unique=True))
    return labels, colors


@settings(max_examples=120, deadline=None)
@given(label_images(), st.booleans())
def test_composite_png_splits_into_exactly_its_instances(image, alpha):
    labels, colors = image
    runs = masks.read_png(composite(labels, colors, alpha))
    present = {c for i, c in enumerate(colors, 1) if (labels == i).any()}
    assert runs.colors() == present
    for i, color in enumerate(colors, 1):
        assert np.array_equal(from_mask(runs.instance(color)), labels == i)


def test_composite__near_colours_do_not_match():
    labels = np.array([[1, 2, 0], [2, 1, 0]])
    runs = masks.read_png(composite(labels, [(10, 20, 30), (10, 20, 31)]))
    assert from_mask(runs.instance((10, 20, 30))).tolist() == [[True, False, False],
                                                              [False, True, False]]
    assert runs.instance((10, 20, 29)).empty


def test_gray_png_and_palette_png():
    gray = np.array([[0, 7, 7], [200, 0, 7]], dtype=np.uint8)
    runs = masks.read_png(png(gray))
    assert from_mask(runs.instance(None)).tolist() == [[False, True, True], [True, False, True]]
    assert from_mask(runs.instance((7, 7, 7))).tolist() == [[False, True, True],
                                                           [False, False, True]]
    assert runs.instance((7, 7, 8)).empty
    pal = Image.fromarray(gray).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    assert masks.read_png(buf.getvalue()).instance((200, 200, 200)) == to_mask(gray == 200)


def test_transparent_pixels_are_background_whatever_their_colour():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[...] = (9, 9, 9, 0)
    rgba[0, 0] = (9, 9, 9, 128)   # semi-transparent still counts: its RGB is exact
    runs = masks.read_png(png(rgba))
    assert from_mask(runs.instance((9, 9, 9))).tolist() == [[True, False], [False, False]]


@pytest.mark.parametrize("data, reason", [
    (b"GIF89a....", "not a PNG image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "PNG cannot be decoded"),
])
def test_read_png__bad_bytes(data, reason):
    with pytest.raises(masks.MaskError, match=reason):
        masks.read_png(data)


def test_to_labelbox__serializes_the_documented_png_form():
    flags = np.zeros((4, 4), dtype=bool)
    flags[1:3, 1:3] = True
    line = import_line(to_mask(flags))
    assert line["uuid"] == UUID and line["name"] == "seg" and line["classifications"] == []
    assert png_pixels(line["mask"]["png"]).tolist() == flags.astype(int).tolist()


def test_payload_round_trip_and_errors():
    mask = to_mask(np.eye(5, dtype=bool))
    assert mask_payload.from_payload(mask_payload.to_payload(mask)) == mask
    assert mask_payload.from_payload({"error": "mask could not be read: x"}) == \
        "mask could not be read: x"
    assert "not fetched" in mask_payload.from_payload({"url": "https://x"})
    assert "malformed" in mask_payload.from_payload({"width": 5, "height": 5, "runs": "!!"})


# ----- export objects -------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


FLAGS = np.zeros((6, 8), dtype=bool)
FLAGS[1:4, 2:7] = True
LABELS = np.zeros((6, 8), dtype=np.int64)
LABELS[:2, :3], LABELS[4:, 5:] = 1, 2
COLORS = [(123, 103, 152), (10, 200, 30)]


def resolved(obj: dict, size=(8, 6), base_dir=None, source=None):
    (source or masks.MaskSource()).resolve(obj, size, base_dir)
    assert "composite_mask" not in obj
    return mask_payload.from_payload(obj["mask"])


def test_resolve__inline_png_single_and_composite():
    obj = {"mask": {"png": b64(single_png(FLAGS, "white"))}}
    assert resolved(obj) == to_mask(FLAGS)
    assert resolved(obj) == to_mask(FLAGS)  # resolving again leaves it as it is
    comp = b64(composite(LABELS, COLORS))
    got = resolved({"composite_mask": {"png": comp, "color_rgb": [10, 200, 30]}})
    assert got == to_mask(LABELS == 2)


def test_resolve__local_files_file_url_relative_path_and_data_url(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "m.png").write_bytes(single_png(FLAGS, "binary"))
    want = to_mask(FLAGS)
    assert resolved({"mask": {"url": "masks/m.png"}}, base_dir=tmp_path) == want
    assert resolved({"mask": {"url": (tmp_path / "masks" / "m.png").as_uri()}}) == want
    data_url = "data:image/png;base64," + b64(single_png(FLAGS, "rgb"))
    assert resolved({"mask": {"url": data_url}}) == want


def test_resolve__a_composite_is_read_once_for_all_its_instances(tmp_path):
    path = tmp_path / "c.png"
    path.write_bytes(composite(LABELS, COLORS))
    reads = []

    class Counting(MaskFetcher):
        def fetch(self, url, base_dir=None):
            reads.append(url)
            return super().fetch(url, base_dir)
    source = masks.MaskSource(Counting())
    for i, color in enumerate(COLORS, 1):
        got = resolved({"composite_mask": {"url": "c.png", "color_rgb": list(color)}},
                       base_dir=tmp_path, source=source)
        assert got == to_mask(LABELS == i)
    assert reads == ["c.png"]


def test_resolve__cache_is_bounded_in_bytes_and_keeps_the_newest(tmp_path):
    source = masks.MaskSource(cache_bytes=1)
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(single_png(FLAGS, "white"))
        resolved({"mask": {"url": f"{i}.png"}}, base_dir=tmp_path, source=source)
    assert list(source._cache) == [str(tmp_path / "2.png")]


@pytest.mark.parametrize("obj, reason", [
    ({"mask": {"png": "not base64!"}}, "inline png is not valid base64"),
    ({"mask": {"png": b64(b"plain text")}}, "not a PNG image"),
    ({"mask": {"url": "missing.png"}}, "missing.png: No such file"),
    ({"mask": {"url": "ftp://host/m.png"}}, "unsupported URL scheme 'ftp'"),
    ({"mask": {"url": "data:image/png,raw"}}, "must be base64"),
    ({"mask": "https://x"}, "mask is not an object"),
    ({"mask": {}}, "neither a url nor an inline png"),
    ({"composite_mask": {"png": "x"}}, "composite_mask has no color_rgb"),
    ({"composite_mask": {"png": "x", "color_rgb": [1, 2]}}, "three integers 0..255"),
    ({"mask": {"png": b64(png(np.zeros((3, 3), np.uint8)))}}, "mask PNG is 3x3, the image is 8x6"),
])
def test_resolve__failures_become_the_reason(tmp_path, obj, reason):
    got = resolved(obj, base_dir=tmp_path)
    assert isinstance(got, str) and got.startswith("mask could not be read: ")
    assert reason in got


def test_resolve__unknown_size_takes_the_png_size():
    got = resolved({"mask": {"png": b64(single_png(FLAGS, "white"))}}, size=None)
    assert (got.width, got.height) == (8, 6)


def test_fetcher__data_url_needs_valid_base64():
    with pytest.raises(MaskFetchError, match="not valid base64"):
        MaskFetcher().fetch("data:image/png;base64,@@@")


def test_source_pickles_without_its_cache(tmp_path):
    import pickle
    (tmp_path / "m.png").write_bytes(single_png(FLAGS, "white"))
    source = masks.MaskSource(MaskFetcher({"Authorization": "Bearer k"}, {"h"}), cache_bytes=5)
    resolved({"mask": {"url": "m.png"}}, base_dir=tmp_path, source=source)
    copy = pickle.loads(pickle.dumps(source))
    assert copy.cache_bytes == 5 and not copy._cache
    assert copy.fetcher.headers == {"Authorization": "Bearer k"}
