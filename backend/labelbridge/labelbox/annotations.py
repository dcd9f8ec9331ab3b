"""The annotations of one exported row (see ``export.compact_row``) -> neutral regions.

Every field is read defensively: what cannot be read becomes a loss in the report naming the
field path (``objects[3].bounding_box.height``), the feature and its id, and the reason; the row
itself is added once by ``task_regions``. Nothing here raises on a damaged row, and a damaged
object never costs another object or row.
"""

from __future__ import annotations

from typing import Any, Final

from labelbridge.labelbox import video
from labelbridge.labelbox.errors import ExportError
from labelbridge.labelbox.shapes import (READERS, UNSUPPORTED, UNSUPPORTED_KEYS, RowContext,
                                        number)
from labelbridge.model.ids import is_valid_region_id, region_id_for_feature
from labelbridge.model.regions import (Answer, Classification, DataRowRef, Region, Relation,
                                       TaskRegions)
from labelbridge.model.report import ConversionReport, Reporter

_URL_PREFIXES: Final = ("http://", "https://", "gs://", "s3://", "data:", "file://")


def _name(item: dict) -> str | None:
    name = item.get("name")
    if type(name) is str and name:
        return name
    for key in ("value", "title"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _str(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _score(item: dict) -> float | None:
    c = item.get("confidence")
    if c is None:
        return None
    try:
        return number(c, "confidence")
    except ExportError:
        return None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _fmt(path: tuple) -> str:
    """("objects", 3, "bounding_box") -> "objects[3].bounding_box" (only when reporting)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _id(fid: Any, row: str, *fallback: object) -> str:
    if type(fid) is str and (fid.isalnum() and fid.isascii() or is_valid_region_id(fid)):
        return fid
    return region_id_for_feature(_str(fid), row, *fallback)


# An answer with nothing nested and no confidence is the same (frozen) object in every row
# of a model run that gives it: one is built per option, not ~a dozen a row.
_LEAF_ANSWERS: Final[dict[tuple[str, str | None], Answer]] = {}
_LEAF_ANSWERS_MAX: Final = 4096


def _leaf_answer(name: str, schema_id: str | None) -> Answer:
    answer = _LEAF_ANSWERS.get((name, schema_id))
    if answer is None:
        if len(_LEAF_ANSWERS) >= _LEAF_ANSWERS_MAX:
            _LEAF_ANSWERS.clear()
        answer = _LEAF_ANSWERS[(name, schema_id)] = Answer(name, (), None, schema_id)
    return answer


class _RowReader:
    def __init__(self, row: str, report: Reporter, ctx: RowContext) -> None:
        self.row = row
        self.report = report
        self.ctx = ctx

    def _lose(self, kind: str, exc: ExportError, feature: str | None, fid: Any) -> None:
        self.report.loss(kind, exc.reason, feature, field=exc.field, region=_str(fid),
                         detail=exc.detail)

    # -- classifications (the plain case of every field is tested inline: a row holds dozens)
    def classification(self, item: Any, path: tuple, id_path: tuple) -> Classification | None:
        if type(item) is not dict:
            self.report.loss("classification", "not an object", field=_fmt(path))
            return None
        name = item.get("name")
        if type(name) is not str or not name:
            name = _name(item)
        fid = item.get("feature_id")
        if not name:
            self.report.loss("classification", "classification without a name",
                             field=_fmt(path), region=_str(fid))
            return None
        cid = fid if type(fid) is str and fid.isalnum() and fid.isascii() \
            else _id(fid, self.row, *id_path)
        score = None if item.get("confidence") is None else _score(item)
        sid = item.get("feature_schema_id")
        if type(sid) is not str or not sid:
            sid = None
        if "radio_answer" in item:
            ans = self.answer(item["radio_answer"], path + ("radio_answer",), id_path, name, fid)
            return Classification(name, "radio", (ans,) if ans else (), None, cid, score, sid)
        if "checklist_answers" in item:
            raw = item["checklist_answers"]
            if type(raw) is not list:
                self.report.loss("checklist", "not an array", name, region=_str(fid),
                                 field=_fmt(path + ("checklist_answers",)))
                return None
            answers = []
            for i, r in enumerate(raw):
                a = self.answer(r, path + ("checklist_answers", i), id_path + (i,), name, fid)
                if a is not None:
                    answers.append(a)
            return Classification(name, "checklist", tuple(answers), None, cid, score, sid)
        if "text_answer" in item:
            answer = item["text_answer"]
            content = answer.get("content") if type(answer) is dict else None
            if type(content) not in (str, int, float):
                self.report.loss("text", "no text content", name, region=_str(fid),
                                 field=_fmt(path + ("text_answer", "content")))
                return None
            return Classification(name, "text", (), str(content), cid, score, sid)
        self.report.loss("classification", "unsupported classification shape", name,
                         field=_fmt(path), region=_str(fid), detail="keys " + ", ".join(
                             sorted(str(k) for k in item if k not in ('name', 'value'))))
        return None

    def answer(self, item: Any, path: tuple, id_path: tuple, question: str, qid: Any
               ) -> Answer | None:
        if type(item) is dict:
            name = item.get("name")
            if type(name) is not str or not name:
                name = _name(item)
        else:
            name = None
        if name is None:
            self.report.loss("answer", "an answer without a name", question, field=_fmt(path),
                             region=_str(qid))
            return None
        nested = item.get("classifications")
        sid = item.get("feature_schema_id")
        sid = sid if type(sid) is str and sid else None
        if not nested and item.get("confidence") is None:
            return _leaf_answer(name, sid)
        return Answer(name, self.classifications(nested, path + ("classifications",),
                                                 id_path + (name,)) if nested else (),
                      None if item.get("confidence") is None else _score(item), sid)

    def classifications(self, items: Any, path: tuple, id_path: tuple
                        ) -> tuple[Classification, ...]:
        if not items:
            return ()
        if type(items) is not list:
            self.report.loss("classification", "not an array", field=_fmt(path))
            return ()
        out = []
        for i, item in enumerate(items):
            c = self.classification(item, path + (i,), id_path + (i,))
            if c is not None:
                out.append(c)
        return tuple(out)

    # -- objects
    def region(self, obj: Any, index: int) -> Region | None:
        if type(obj) is not dict:
            self.report.loss("object", "not an object", field=f"objects[{index}]")
            return None
        name, fid = _name(obj), obj.get("feature_id")
        kind = obj.get("annotation_kind")
        kind = kind if type(kind) is str else ""
        if kind.startswith("Video"):
            unsupported: tuple[str, str] | None = ("video", "video is not supported yet")
        else:
            unsupported = UNSUPPORTED.get(kind)
            if unsupported is None and not obj.keys().isdisjoint(UNSUPPORTED_KEYS):
                unsupported = UNSUPPORTED[next(k for k in UNSUPPORTED_KEYS if k in obj)]
        if unsupported:
            self.report.loss(unsupported[0], unsupported[1], name, region=_str(fid))
            return None
        key = None
        for k in READERS:
            if k in obj:
                key = k
                break
        if key is None:
            self.report.loss(kind or "object", "unknown object kind (no geometry key)", name,
                             region=_str(fid), detail="keys " + ", ".join(
                                 sorted(str(k) for k in obj)))
            return None
        shape_kind, read = READERS[key]
        if name is None:
            self.report.loss(shape_kind, "object without a name", None, region=_str(fid),
                             detail=f"objects[{index}]")
            return None
        try:
            shape = read(obj[key], f"objects[{index}].{key}", self.ctx)
        except ExportError as exc:
            self._lose(shape_kind, exc, name, fid)
            return None
        rid = fid if type(fid) is str and fid.isalnum() and fid.isascii() \
            else _id(fid, self.row, "object", index)
        nested = self.classifications(obj.get("classifications"),
                                      ("objects", index, "classifications"), (rid,))
        score = obj.get("confidence")
        if not (type(score) is float and score - score == 0.0):  # not the plain finite float
            score = _score(obj)
        return Region(rid, name, shape, nested, score, _str(obj.get("feature_schema_id")))

    # -- relationships
    def relation(self, item: Any, ids: set[str], index: int) -> Relation | None:
        """Export-v2 (``source``/``target`` feature ids, ``unidirectional`` or ``type``) and
        the older shape (``data.source``/``data.target``, or ``startFeatureId``/
        ``endFeatureId``, and ``relationshipType``)."""
        path = f"relationships[{index}]"
        if not isinstance(item, dict):
            self.report.loss("relationship", "not an object", field=path)
            return None
        name = _name(item)
        data = d if isinstance(d := item.get("data"), dict) else {}
        fid = item.get("feature_id") or item.get("featureId")
        ends = []
        for key, old in (("source", "startFeatureId"), ("target", "endFeatureId")):
            raw, where = item.get(key), f"{path}.{key}"
            if raw is None:
                raw, where = data.get(key, data.get(old)), f"{path}.data.{key}"
            if isinstance(raw, dict):
                raw = raw.get("feature_id") or raw.get("featureId") or raw.get("id")
            if not _str(raw):
                self.report.loss("relationship", "no feature id of the related object", name,
                                 field=where, region=_str(fid))
                return None
            if raw not in ids:
                self.report.loss("relationship", "the related object was not converted or is "
                                 "not in this label", name, field=where, region=_str(fid),
                                 detail=str(raw))
                return None
            ends.append(raw)
        kind = str(item.get("type") or item.get("relationship_type")
                   or item.get("relationshipType") or "").lower()
        bidirectional = kind == "bidirectional" or item.get("unidirectional") is False
        return Relation(ends[0], ends[1], name, bidirectional,
                        region_id_for_feature(_str(fid), self.row, "rel", index))


# The largest side a media size may have: far beyond any image or video, and an int32, which
# Label Studio's and Labelbox's readers of original_width/height hold.
MAX_MEDIA_PIXELS: Final = 2 ** 31 - 1


def _media_size(media: Any, report: Reporter) -> tuple[int | None, int | None]:
    if not isinstance(media, dict):
        return None, None
    size: list[int | None] = []
    for key in ("width", "height"):
        value = media.get(key)
        if value is None:
            size.append(None)
            continue
        try:
            v = number(value, f"media_attributes.{key}")
            if v <= 0 or not v.is_integer() or v > MAX_MEDIA_PIXELS:
                raise ExportError(f"not a whole number of pixels from 1 to {MAX_MEDIA_PIXELS:,}",
                                  f"media_attributes.{key}")
            size.append(int(v))
        except ExportError as exc:
            report.loss("media", exc.reason, field=exc.field)
            size.append(None)
    return size[0], size[1]


def _document_text(row_data: Any) -> str | None:
    """The text of a text data row, when the export carries it rather than a URL to it."""
    if not isinstance(row_data, str) or row_data.startswith(_URL_PREFIXES):
        return None
    return row_data


def task_regions(compact: dict, report: ConversionReport | Reporter | None = None
                 ) -> TaskRegions:
    """Neutral regions of a compact row (see ``export.compact_row``); never raises on a damaged
    row: every part that cannot be read is a loss in ``report``."""
    report = report if report is not None else ConversionReport()
    dr = d if isinstance(d := compact.get("data_row"), dict) else {}
    ref = DataRowRef(**{k: (v if isinstance(v := dr.get(k), str) else None)
                        for k in ("id", "global_key", "external_id", "row_data")})
    row = ref.id or ref.global_key or ref.external_id or "?"
    scoped = report.scope(data_row=row)
    media = compact.get("media")
    ctx = RowContext(text=_document_text(ref.row_data)
                     if isinstance(media, dict) and str(media.get("mime_type", "")).startswith(
                         "text/") else None)
    reader = _RowReader(row, scoped, ctx)
    ann = compact.get("annotations")
    if not isinstance(ann, dict):
        scoped.loss("row", "the label's annotations are not an object", field="annotations")
        ann = {}
    regions: list[Region] = []
    frame_classifications: list[Classification] = []
    is_video = video.is_video(ann)
    if is_video:  # tracks and frame-ranged answers (labelbox/video.py)
        regions, frame_classifications = video.VideoReader(
            row, lambda items, id_path: reader.classifications(items, ("frames",), id_path),
            scoped).read(ann)  # type: ignore[arg-type]
    regions += [r for i, obj in enumerate(_list(ann.get("objects")))
                if (r := reader.region(obj, i)) is not None]
    ids = {r.id for r in regions}
    relations = tuple(rel for i, item in enumerate(_list(ann.get("relationships")))
                      if (rel := reader.relation(item, ids, i)) is not None)
    width, height = _media_size(media, scoped)
    return TaskRegions(
        data_row=ref, regions=tuple(regions),
        classifications=reader.classifications(ann.get("classifications"),
                                               ("classifications",), ("global",))
        + tuple(frame_classifications),
        relations=relations, width=width, height=height,
        video=video.video_info(media) if is_video and isinstance(media, dict) else None)
