"""Masks on the wire, against the Labelbox stand-in: mask PNGs fetched with the API key
(401 without it), retried on 429/5xx/timeouts/dropped connections, a composite fetched once for
all its instances; and mask import lines through the real SDK's LabelImport, accepted in the
documented shapes and rejected when malformed."""

from __future__ import annotations

import base64
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import labelbox as lb
import labelbox.types as lbt
import numpy as np
import pytest
from labelbox.data.serialization import NDJsonConverter

from labelbridge.labelbox import mask_payload, masks
from labelbridge.labelbox.mask_fetch import MaskFetcher, MaskFetchError

from tests.lbstandin import Feature, LabelboxStandIn
from tests.maskgen import composite, png, single_png, to_mask

PID = "cprojmasks000000000000001"
DR = "cdrmasks00000000000000001"
W, H = 40, 30
FLAGS = np.zeros((H, W), dtype=bool)
FLAGS[5:20, 8:30] = True
LABELS = np.zeros((H, W), dtype=np.int64)
LABELS[:10, :10], LABELS[15:, 20:], LABELS[20:, :5] = 1, 2, 3
COLORS = [(123, 103, 152), (10, 200, 30), (255, 0, 0)]


@pytest.fixture
def s():
    stand = LabelboxStandIn(api_key="test-key")
    stand.add_project(PID, name="seg", ontology=[
        Feature("Cat", "mask", nested=[Feature("pose", "radio", options=["sitting", "lying"])]),
        Feature("car", "bbox")])
    stand.add_data_rows(PID, [{"id": DR, "global_key": "img-1.jpg", "row_data": "http://x/1.jpg",
                               "media_attributes": {"width": W, "height": H}}])
    stand.start()
    yield stand
    stand.stop()


def fetcher(s, key="test-key", **kw) -> MaskFetcher:
    kw.setdefault("backoff", 0.01)
    return MaskFetcher.for_labelbox(key, [s.endpoint], **kw)


# ----- fetching --------------------------------------------------------------------------------

def test_mask_urls_need_the_api_key(s):
    url = s.add_mask(single_png(FLAGS, "white"), project_id=PID, feature_id="cfeat0000000000000000001")
    assert "/annotations/cfeat0000000000000000001/index/1/mask" in url
    with pytest.raises(MaskFetchError, match="HTTP 401 .*need the Labelbox API key"):
        MaskFetcher().fetch(url)
    with pytest.raises(MaskFetchError, match="HTTP 401 .*API key was refused"):
        fetcher(s, key="wrong").fetch(url)
    assert s.calls["maskFile"] == 0 and s.calls["__unauthorized__"] == 2
    assert fetcher(s).fetch(url) == single_png(FLAGS, "white")
    assert s.calls["maskFile"] == 1


def test_the_key_goes_to_labelbox_hosts_only(s):
    seen = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = single_png(FLAGS, "white")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    other = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        f = MaskFetcher.for_labelbox("test-key", ["http://labelbox-proxy.invalid/graphql"])
        f.fetch(f"http://127.0.0.1:{other.server_address[1]}/m.png")
        assert seen == [None]
        assert f._sends_key("api.labelbox.com") and f._sends_key("labelbox-proxy.invalid")
        assert not f._sends_key("labelbox.com.evil.example")
    finally:
        other.shutdown()


@pytest.mark.parametrize("kind", ["429", "500", "503", "drop"])
def test_transient_failures_are_retried(s, kind):
    url = s.add_mask(single_png(FLAGS, "white"))
    s.fail_next(2, kind, ["maskFile"])
    assert fetcher(s).fetch(url) == single_png(FLAGS, "white")
    assert [f["kind"] for f in s.fault_log] == [kind, kind]


def test_a_slow_answer_times_out_and_is_retried(s):
    url = s.add_mask(single_png(FLAGS, "white"))
    s.fail_next(1, "hang", ["maskFile"], seconds=3)
    assert fetcher(s, timeout=0.5).fetch(url) == single_png(FLAGS, "white")


def test_retries_give_up_with_the_reason(s):
    url = s.add_mask(single_png(FLAGS, "white")) + "?token=secret"
    s.fail_next(10, "503", ["maskFile"])
    with pytest.raises(MaskFetchError, match=r"HTTP 503 after 3 attempts") as err:
        fetcher(s, retries=2).fetch(url)
    assert "secret" not in str(err.value)
    assert len(s.fault_log) == 3


def test_not_found_is_not_retried(s):
    with pytest.raises(MaskFetchError, match="HTTP 404"):
        fetcher(s).fetch(s.url + "/api/v1/tasks/t/masks/none/index/1")


def test_a_composite_is_downloaded_once_for_its_instances(s):
    url = s.add_mask(composite(LABELS, COLORS), task_id="ctask0000000000000000001")
    source = masks.MaskSource(fetcher(s))
    for i, color in enumerate(COLORS, 1):
        obj = {"composite_mask": {"url": url, "color_rgb": list(color)}}
        source.resolve(obj, (W, H), None)
        assert mask_payload.from_payload(obj["mask"]) == to_mask(LABELS == i)
    assert s.calls["maskFile"] == 1


def test_a_mask_that_cannot_be_fetched_is_a_reason_not_an_error(s):
    url = s.add_mask(single_png(FLAGS, "white"))
    obj = {"mask": {"url": url}}
    masks.MaskSource(MaskFetcher()).resolve(obj, (W, H), None)
    assert "HTTP 401" in obj["mask"]["error"]


# ----- importing masks ---------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def line(mask: dict, name: str = "Cat", **extra) -> dict:
    return {"uuid": str(uuid.uuid4()), "dataRow": {"globalKey": "img-1.jpg"}, "name": name,
            "mask": mask, **extra}


def run_import(client, lines):
    imp = lb.LabelImport.create_from_objects(client, PID, f"imp-{uuid.uuid4()}", lines)
    imp.wait_till_done(sleep_time_seconds=0.05)
    return imp.statuses


def test_sdk_serialized_mask_with_nested_classification_imports(s):
    ann = lbt.ObjectAnnotation(
        name="Cat", value=masks.to_labelbox(to_mask(FLAGS)), extra={"uuid": str(uuid.uuid4())},
        classifications=[lbt.ClassificationAnnotation(
            name="pose", value=lbt.Radio(answer=lbt.ClassificationAnswer(name="sitting")))])
    label = lbt.Label(data={"global_key": "img-1.jpg"}, annotations=[ann])
    (sent,) = NDJsonConverter.serialize([label])
    statuses = run_import(s.client(), [sent])
    assert [st["status"] for st in statuses] == ["SUCCESS"]
    (lab,) = s.labels(PID)
    assert lab["annotations"][0]["mask"] == sent["mask"]
    assert lab["annotations"][0]["classifications"] == [{"name": "pose",
                                                         "answer": {"name": "sitting"}}]


def test_composite_and_instance_uri_shapes_import(s):
    url = s.add_mask(composite(LABELS, COLORS))
    statuses = run_import(s.client(), [
        line({"imBytes": b64(composite(LABELS, COLORS)), "colorRGB": [10, 200, 30]}),
        line({"instanceURI": url, "colorRGB": [255, 0, 0]}),
    ])
    assert [st["status"] for st in statuses] == ["SUCCESS", "SUCCESS"], statuses


BAD = [
    ("bad base64", {"png": "%%%not-base64"}, "mask.png is not valid base64"),
    ("not a PNG", {"png": b64(b"GIF89a" + bytes(30))}, "mask.png is not a PNG image"),
    ("wrong size", {"png": b64(png(np.ones((H + 1, W), np.uint8)))},
     f"mask.png is {W}x{H + 1}, the data row's image is {W}x{H}"),
    ("not 0/1", {"png": b64(single_png(FLAGS, "white"))}, "0 and 1 only"),
    ("empty", {"png": b64(png(np.zeros((H, W), np.uint8)))}, "no foreground pixel"),
    ("colour", {"png": b64(single_png(FLAGS, "rgb"))}, "grayscale 0/1 PNG"),
    ("colour absent", {"imBytes": b64(composite(LABELS, COLORS)), "colorRGB": [1, 2, 3]},
     "no pixel of colorRGB [1, 2, 3]"),
    ("bad colour", {"imBytes": b64(composite(LABELS, COLORS)), "colorRGB": [1, 2, 300]},
     "colorRGB must be [r, g, b]"),
    ("unknown keys", {"png": b64(png(FLAGS.astype(np.uint8))), "colorRGB": [1, 1, 1]},
     "got keys ['colorRGB', 'png']"),
    ("unreachable URI", {"instanceURI": "http://127.0.0.1:1/m.png", "colorRGB": [1, 1, 1]},
     "could not be downloaded"),
]


@pytest.mark.parametrize("mask, fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_masks_are_rejected(s, mask, fragment):
    good = line({"png": b64(png(FLAGS.astype(np.uint8)))})
    first, second = run_import(s.client(), [line(mask), good])
    assert first["status"] == "FAILURE" and second["status"] == "SUCCESS", (first, second)
    assert [e["name"] for e in first["errors"]] == ["InvalidAnnotation"]
    assert fragment in first["errors"][0]["message"]


def test_a_mask_on_a_bbox_tool_is_rejected(s):
    (st,) = run_import(s.client(), [line({"png": b64(png(FLAGS.astype(np.uint8)))}, name="car")])
    assert "a 'mask' annotation is not allowed" in st["errors"][0]["message"]
