"""Small builders shared by tests: Labelbox export rows, label configs, webhook bodies, the
captured /predict's export."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CAPTURES = FIXTURES / "ls-captures"
DEMO_EXPORT = ROOT / "configs" / "demo" / "labelbox-export.ndjson"

RUN = "crun0000000000000000000001"[:25]
MODEL = "cmodel000000000000000000001"[:25]
DATA_ROW = "cdatarow00000000000000001"
CAPTURED_RUN = "crun000000000000000000001"   # the model run of ``captured_task_export``


def capture(name: str) -> dict:
    """A request Label Studio 1.23.2 really sent (see fixtures/ls-captures/README.md)."""
    data = json.loads((CAPTURES / name).read_text())
    return data.get("json", data.get("body"))


def export_row(objects=(), classifications=(), relationships=(), *, width=640, height=480,
               data_row_id=DATA_ROW, global_key="img-1.jpg", row_data="http://x/img-1.jpg",
               runs=None) -> dict:
    annotations = {"objects": list(objects), "classifications": list(classifications),
                   "relationships": list(relationships)}
    runs = runs or {RUN: {"name": "r", "predictions": [{"id": "p", "annotations": annotations}],
                          "labels": []}}
    media = {"width": width, "height": height} if width else {}
    return {"data_row": {"id": data_row_id, "global_key": global_key, "external_id": "ext-1",
                         "row_data": row_data},
            "media_attributes": media,
            "experiments": {MODEL: {"name": "m", "runs": runs}}}


def bbox(fid, name, left, top, width, height, **extra) -> dict:
    return {"feature_id": fid, "name": name, "annotation_kind": "ImageBoundingBox",
            "bounding_box": {"left": left, "top": top, "width": width, "height": height},
            "classifications": extra.pop("classifications", []), **extra}


def radio(fid, name, answer, nested=()) -> dict:
    return {"feature_id": fid, "name": name,
            "radio_answer": {"name": answer, "classifications": list(nested)}}


def checklist(fid, name, answers, nested=None) -> dict:
    nested = nested or {}
    return {"feature_id": fid, "name": name,
            "checklist_answers": [{"name": a, "classifications": list(nested.get(a, []))}
                                  for a in answers]}


def text(fid, name, content) -> dict:
    return {"feature_id": fid, "name": name, "text_answer": {"content": content}}


IMAGE_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Car"/><Label value="Person"/><Label value="Bicycle"/>
  </RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="road"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image"><Label value="nose"/></KeyPointLabels>
  <Choices name="occluded" toName="image" perRegion="true"><Choice value="yes"/><Choice value="no"/></Choices>
  <Choices name="attributes" toName="image" perRegion="true" choice="multiple"
           visibleWhen="choice-selected" whenTagName="occluded" whenChoiceValue="yes">
    <Choice value="parked"/><Choice value="blurred"/>
  </Choices>
  <Choices name="cause" toName="image" perRegion="true"
           visibleWhen="choice-selected" whenTagName="attributes" whenChoiceValue="blurred">
    <Choice value="motion"/><Choice value="focus"/>
  </Choices>
  <TextArea name="note" toName="image" perRegion="true"/>
  <Choices name="weather" toName="image"><Choice value="sunny"/><Choice value="rainy"/></Choices>
  <Choices name="rain_intensity" toName="image"
           visibleWhen="choice-selected" whenTagName="weather" whenChoiceValue="rainy">
    <Choice value="light"/><Choice value="heavy"/>
  </Choices>
  <Choices name="wet" toName="image"
           visibleWhen="choice-selected" whenTagName="rain_intensity" whenChoiceValue="heavy">
    <Choice value="puddles"/><Choice value="flooded"/>
  </Choices>
  <Number name="count" toName="image"/>
  <Rating name="quality" toName="image" maxRating="5"/>
  <Relations><Relation value="drives"/><Relation value="next_to"/></Relations>
</View>"""

TEXT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Labels name="label" toName="text"><Label value="PER"/><Label value="ORG"/><Label value="LOC"/></Labels>
  <Choices name="sentiment" toName="text"><Choice value="positive"/><Choice value="negative"/></Choices>
  <TextArea name="summary" toName="text"/>
</View>"""


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.1):
    """The first truthy value of ``predicate()``, polled until ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s")


def annotation_body(ann_id: int, task_id: int, global_key: str, *, x: float = 10,
                    updated_at: str = "2026-11-22T12:26:19.411536Z",
                    action: str = "ANNOTATION_CREATED", prefix: str = "r") -> dict:
    """The ANNOTATION_CREATED body Label Studio 1.23.2 sent (boxes Car and Person, the
    per-region choice ``attr``, a relation, the choice ``weather``), as another annotation: its
    own ids, task, data row (``global_key``) and region ids ``<prefix><ann_id>a|b|w``."""
    body = copy.deepcopy(capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json"))
    body["action"] = action
    ann = body["annotation"]
    ann.update(id=ann_id, task=task_id, updated_at=updated_at)
    rename = {"lbBox000001": f"{prefix}{ann_id}a", "lbBox000002": f"{prefix}{ann_id}b",
              "lbCls000001": f"{prefix}{ann_id}w"}
    for item in ann["result"]:
        for key in ("id", "from_id", "to_id"):
            if key in item:
                item[key] = rename[item[key]]
    ann["result"][0]["value"]["x"] = x
    body["task"].update(id=task_id, data={"image": f"http://img/{global_key}",
                                          "global_key": global_key})
    return body


def run_rows(run_id: str, n: int, *, tag: str = "a", left: float = 10.0, model_id: str = MODEL,
             start: int = 0) -> list[dict]:
    """Export rows of a model run: image i (data row ``cdr<i>``, global key ``mr-<i>.jpg``) has
    one predicted Car box at ``left``; feature ids differ per ``tag`` (one tag per run)."""
    rows = []
    for i in range(start, start + n):
        box = bbox(f"cf{tag}{i:022d}", "Car", left, 20.0, 100.0, 50.0, confidence=0.8)
        row = export_row([box], data_row_id=f"cdr{i:022d}", global_key=f"mr-{i}.jpg",
                         row_data=f"http://127.0.0.1:9/mr-{i}.jpg",
                         runs={run_id: {"name": run_id, "predictions": [
                             {"annotations": {"objects": [box]}}]}})
        row["experiments"] = {model_id: row["experiments"][MODEL]}
        rows.append(row)
    return rows


def captured_task_export(path: Path) -> None:
    """Labelbox rows for the first two tasks of the captured /predict (matched by URL)."""
    rows = []
    for n, (label, conf) in enumerate([("cat", 0.9), ("dog", 0.7)], 1):
        box = {"feature_id": f"cfeat{n:020d}", "name": label, "confidence": conf,
               "annotation_kind": "ImageBoundingBox",
               "bounding_box": {"left": 64, "top": 48, "width": 128, "height": 96},
               "classifications": [radio(f"cq{n}", "quality", "good")]}
        rows.append(export_row([box], [radio(f"cscene{n:019d}", "scene", "indoor")],
                               data_row_id=f"cdatarow{n:017d}", global_key=f"img{n}.jpg",
                               row_data=f"http://127.0.0.1:9999/img{n}.jpg",
                               runs={CAPTURED_RUN: {"predictions": [{"annotations": {
                                   "objects": [box],
                                   "classifications": [radio(f"cscene{n:019d}", "scene",
                                                             "indoor")]}}]}}))
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def json_places(node, path=()):
    """The path of every place (a key of an object, an index of an array) inside a JSON value."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,)
            yield from json_places(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path + (i,)
            yield from json_places(v, path + (i,))


def put_junk(root, count: int, place, junk) -> None:
    """Damage ``root`` in ``count`` places: ``place()`` gives a path (from ``json_places``),
    ``junk()`` the value put there (``...``: the key is deleted). A path an earlier damage
    removed or replaced is skipped."""
    for _ in range(count):
        path = place()
        parent = root
        try:
            for step in path[:-1]:
                parent = parent[step]
            value = junk()
            if value is ...:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue


def damage_export_row(row: dict, count: int, pick, junk) -> None:
    """``put_junk`` in ``count`` places of an export row's annotations and media attributes:
    ``pick(places)`` chooses one of the paths there."""
    places = list(json_places({"experiments": row["experiments"],
                               "media_attributes": row["media_attributes"]}))
    put_junk(row, count, lambda: pick(places), junk)


def create_bridge_tables(url: str) -> None:
    """What a first start does to a new PostgreSQL database: every component's tables."""
    from labelbridge.groundtruth.outbox import Outbox
    Outbox(url).close()


def raw_rows(outbox, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a statement read beside the outbox, on a connection of the test's own (SQLite
    ``?`` placeholders; PostgreSQL gets them as ``%s``)."""
    if outbox.path is not None:
        import sqlite3
        raw = sqlite3.connect(outbox.path)
        try:
            return raw.execute(sql, params).fetchall()
        finally:
            raw.close()
    import psycopg
    conn = _raw_connections.get(outbox.url)
    if conn is None or conn.closed:
        conn = _raw_connections[outbox.url] = psycopg.connect(outbox.url, autocommit=True)
    try:
        return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), params or None)]
    except psycopg.OperationalError:   # its database was dropped and made again
        _raw_connections.pop(outbox.url).close()
        raise


_raw_connections: dict = {}   # url -> a connection raw_rows keeps (tests read a lot)


def rejected_bodies(settings) -> list[dict]:
    """The rejected webhook bodies the outbox of ``settings`` keeps (up to 1,000, newest first)."""
    from labelbridge.groundtruth.outbox import Outbox
    ob = Outbox(settings.outbox_db)
    try:
        return ob.rejected(1000)
    finally:
        ob.close()
