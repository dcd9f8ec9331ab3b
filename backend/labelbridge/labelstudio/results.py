"""Neutral regions <-> Label Studio result JSON, driven by the project's label config.

Label Studio facts handled here: image geometry is percent of ``original_width/height``
(rectangle x/y is the top-left corner, rotation in degrees clockwise about it); polygons are
open; text span ``end`` is exclusive; every result of one region shares its ``id`` (per-region
controls repeat the region's geometry in ``value``); relations are flat items with
``from_id``/``to_id`` and no ``id``; TextArea's value key is ``text`` (a list of strings).
"""

from __future__ import annotations

from typing import Any, Iterable

from labelbridge.labelstudio import video
from labelbridge.labelstudio.mapping import ClassificationTarget, Mapping, ObjectTarget
from labelbridge.model.ids import clean_region_id
from labelbridge.model.regions import (Answer, Box, Classification, DataRowRef, KeyPoint, Polygon,
                                       Region, Relation, Shape, Span, TaskRegions, VideoTrack)
from labelbridge.model.report import ConversionReport

IMAGE_KINDS = {"bbox", "polygon", "point", "polyline"}
GEOMETRY_TYPES = {"rectanglelabels": "bbox", "rectangle": "bbox", "polygonlabels": "polygon",
                  "polygon": "polygon", "keypointlabels": "point", "keypoint": "point",
                  "labels": "span", "hypertextlabels": "span", "videorectangle": "videobox"}
_LABEL_KEYS = ("rectanglelabels", "polygonlabels", "keypointlabels", "labels", "hypertextlabels")


def _pct(v: float, total: float) -> float:
    return v / total * 100.0


def _px(v: Any, total: float) -> float:
    return float(v) / 100.0 * total


# ===== Labelbox (neutral) -> Label Studio ====================================================

class ResultWriter:
    """Writes the Label Studio ``result`` list of one task."""

    def __init__(self, mapping: Mapping, report: ConversionReport) -> None:
        self.mapping = mapping
        self.report = report

    def write(self, tr: TaskRegions) -> list[dict]:
        row = tr.data_row.id or tr.data_row.global_key or tr.data_row.external_id or "?"
        out: list[dict] = []
        written: set[str] = set()
        for region in tr.regions:
            items = self._region(region, tr, row)
            if items:
                out.extend(items)
                written.add(region.id)
        for c in tr.classifications:
            if not c.frames or video.covers_video(c, tr, self.report, row):
                out.extend(self._classification(c, None, None, row, c.id))
        for rel in tr.relations:
            item = self._relation(rel, written, row)
            if item:
                out.append(item)
        return out

    # -- objects
    def _region(self, region: Region, tr: TaskRegions, row: str) -> list[dict]:
        shape = region.shape
        if shape.kind == "polyline":
            self.report.loss("polyline", "Label Studio has no image polyline tool", region.name,
                             row)
            return []
        target = self.mapping.object_target(shape.kind, region.name)
        if target is None:
            self.report.loss(shape.kind, "no Label Studio control/label for this feature",
                             region.name, row)
            return []
        if target.result_type == "hypertextlabels":
            self.report.loss("span", "HyperText spans need XPath offsets, which Labelbox "
                             "character offsets do not give", region.name, row)
            return []
        if shape.kind == "videobox":
            return video.write_region(region, target, tr, self.mapping, self.report, row,
                                      lambda c: self._classification(c, region, None, row,
                                                                     region.id))
        geometry = self._geometry(shape, tr, region.name, row)
        if geometry is None:
            return []
        base = {"id": region.id, "from_name": target.control, "to_name": target.to_name}
        if target.object_tag == "Image" or shape.kind in IMAGE_KINDS:
            base.update(original_width=tr.width, original_height=tr.height, image_rotation=0)
        value = dict(geometry)
        if target.label is not None:
            value[target.result_type] = [target.label]
        main = {**base, "type": target.result_type, "value": value}
        if region.score is not None:
            main["score"] = region.score
        out = [main]
        self.report.ok(shape.kind)
        for c in region.classifications:
            out.extend(self._classification(c, region, geometry, row, region.id))
        return out

    def _geometry(self, shape: Shape, tr: TaskRegions, name: str, row: str) -> dict | None:
        if isinstance(shape, Span):
            value: dict = {"start": shape.start, "end": shape.end}
            if shape.text is not None:
                value["text"] = shape.text
            return value
        w, h = tr.width, tr.height
        if not w or not h:
            self.report.loss(shape.kind, "image size unknown (no media_attributes width/height)",
                             name, row)
            return None
        if isinstance(shape, Box):
            return {"x": _pct(shape.left, w), "y": _pct(shape.top, h),
                    "width": _pct(shape.width, w), "height": _pct(shape.height, h),
                    "rotation": shape.rotation}
        if isinstance(shape, Polygon):
            return {"points": [[_pct(x, w), _pct(y, h)] for x, y in shape.points],
                    "closed": True}
        if isinstance(shape, KeyPoint):
            return {"x": _pct(shape.x, w), "y": _pct(shape.y, h)}
        raise AssertionError(f"unhandled shape {shape!r}")

    # -- classifications (global or per region, nested to any depth)
    def _classification(self, c: Classification, region: Region | None, geometry: dict | None,
                         row: str, rid: str | None, parent: tuple[str, str] | None = None
                         ) -> list[dict]:
        per_region = region is not None
        target = self.mapping.classification_target(c.name, per_region, parent)
        if target is None:
            where = "per-region " if per_region else ""
            self.report.loss(c.kind, f"no Label Studio {where}control for this "
                             "classification", c.name, row)
            return []
        value = self._classification_value(c, target, row)
        if value is None:
            return []
        if parent is not None and target.parent != parent:
            self.report.loss("nesting", f"nested under {parent[0]}={parent[1]!r} in Labelbox; "
                             f"control {target.control!r} has no such visibleWhen parent, so "
                             "it is shown unconditionally", c.name, row)
        result_id = region.id if per_region else (rid or c.id)
        if result_id is None:
            self.report.loss(c.kind, "classification without an id", c.name, row)
            return []
        item = {"id": result_id, "from_name": target.control, "to_name": target.to_name,
                "type": target.result_type,
                "value": {**(geometry or {}), **value}}
        score = c.score if c.score is not None else next(
            (a.score for a in c.answers if a.score is not None), None)
        if score is not None:
            item["score"] = score
        out = [item]
        self.report.ok(c.kind)
        for answer in c.answers:
            ls_choice = target.ls_answer(answer.name)
            for child in answer.classifications:
                out.extend(self._classification(child, region, geometry, row,
                                                child.id, (target.control, ls_choice or "")))
        return out

    def _classification_value(self, c: Classification, t: ClassificationTarget, row: str
                              ) -> dict | None:
        if t.tag == "Choices":
            if c.kind == "text":
                self.report.loss("text", f"control {t.control!r} is Choices, the feature is "
                                 "free text", c.name, row)
                return None
            choices = []
            for a in c.answers:
                ls = t.ls_answer(a.name)
                if ls is None:
                    self.report.loss(c.kind, f"answer {a.name!r} has no <Choice> in control "
                                     f"{t.control!r}", c.name, row)
                    return None
                choices.append(ls)
            return {"choices": choices}
        if c.kind != "text":
            self.report.loss(c.kind, f"control {t.control!r} is {t.tag}, the feature is "
                             f"{c.kind}", c.name, row)
            return None
        text = c.text or ""
        if t.tag == "TextArea":
            return {"text": [text]}
        try:
            number = float(text)
        except ValueError:
            self.report.loss("text", f"{text!r} is not a number for {t.tag} control "
                             f"{t.control!r}", c.name, row)
            return None
        if t.tag == "Rating":
            if not number.is_integer() or not 0 <= number <= (t.max_rating or 5):
                self.report.loss("text", f"{text!r} is not a rating 0..{t.max_rating}",
                                 c.name, row)
                return None
            return {"rating": int(number)}
        return {"number": int(number) if number.is_integer() else number}

    # -- relations
    def _relation(self, rel: Relation, written: set[str], row: str) -> dict | None:
        if rel.source not in written or rel.target not in written:
            self.report.loss("relationship", "source or target region was not converted",
                             rel.name, row)
            return None
        label = self.mapping.relation_label(rel.name)
        if label is False:
            self.report.loss("relationship", "no <Relation value> for this relationship",
                             rel.name, row)
            return None
        item = {"from_id": rel.source, "to_id": rel.target, "type": "relation",
                "direction": "bi" if rel.bidirectional else "right"}
        if label:
            item["labels"] = [label]
        self.report.ok("relationship")
        return item


def prediction_score(tr: TaskRegions) -> float | None:
    """The task-level score Label Studio shows: mean of the region/classification scores."""
    scores = [r.score for r in tr.regions if r.score is not None]
    scores += [c.score for c in tr.classifications if c.score is not None]
    return round(sum(scores) / len(scores), 6) if scores else None


# ===== Label Studio -> neutral ================================================================

class ResultReader:
    """Reads a Label Studio ``result`` list (an annotation or prediction) into neutral regions."""

    def __init__(self, mapping: Mapping, report: ConversionReport) -> None:
        self.mapping = mapping
        self.report = report

    def read(self, result: list[dict], data_row: DataRowRef,
             size: tuple[int, int] | None = None, task_text: str | None = None) -> TaskRegions:
        row = data_row.id or data_row.global_key or data_row.external_id or "?"
        groups: dict[str, list[dict]] = {}
        relations: list[dict] = []
        for i, item in enumerate(result):
            if not isinstance(item, dict):
                self.report.loss("result", "result item is not an object", None, row)
                continue
            if item.get("type") == "relation":
                relations.append(item)
                continue
            rid = clean_region_id(str(item.get("id") or f"noid{i}"))
            groups.setdefault(rid, []).append(item)
        regions: list[Region] = []
        global_items: list[tuple[str, dict]] = []
        sizes = [s for s in (size,) if s]
        for rid, items in groups.items():
            geometry = [it for it in items if it.get("type") in GEOMETRY_TYPES]
            others = [it for it in items if it.get("type") not in GEOMETRY_TYPES]
            if not geometry:
                global_items.extend((rid, it) for it in items)
                continue
            region = self._region(rid, geometry, others, row, sizes, task_text)
            if region is not None:
                regions.append(region)
        classifications = self._assemble(global_items, row, per_region=False)
        ids = {r.id for r in regions}
        rels = tuple(r for item in relations if (r := self._relation(item, ids, row)))
        w = h = None
        for region_items in groups.values():
            for it in region_items:
                if it.get("original_width") and it.get("original_height"):
                    w, h = int(it["original_width"]), int(it["original_height"])
                    break
        if w is None and size:
            w, h = size
        return TaskRegions(data_row=data_row, regions=tuple(regions),
                           classifications=classifications, relations=rels, width=w, height=h)

    # -- regions
    def _region(self, rid: str, geometry: list[dict], others: list[dict], row: str,
                sizes: list, task_text: str | None) -> Region | None:
        main = next((g for g in geometry if g.get("type") in _LABEL_KEYS), geometry[0])
        rtype = main["type"]
        kind = GEOMETRY_TYPES[rtype]
        value = main.get("value") or {}
        labels = value.get(rtype) or value.get("labels")
        if not labels:  # a label may sit on a companion result of the same region
            labels = next((g["value"].get(g["type"]) for g in geometry
                           if g is not main and (g.get("value") or {}).get(g.get("type"))), None)
        label = labels[0] if labels else None
        target = self.mapping.object_from_ls(main.get("from_name", ""), label, kind)
        if target is None:
            self.report.loss(kind, f"no Labelbox feature for control {main.get('from_name')!r}"
                             + (f" label {label!r}" if label else " (no label)"), label, row)
            return None
        if labels and len(labels) > 1:
            self.report.loss(kind, f"Labelbox objects have one feature; kept {label!r}, dropped "
                             f"{labels[1:]}", label, row)
        shape = self._shape(main, kind, row, target, sizes, task_text)
        if shape is None:
            return None
        nested = self._assemble([(rid, it) for it in others], row, per_region=True)
        if isinstance(shape, VideoTrack):  # Labelbox asks them on every keyframe
            shape, nested = video.with_classifications(shape, nested), ()
        score = main.get("score")
        return Region(id=rid, name=target.labelbox, shape=shape, classifications=nested,
                      score=float(score) if isinstance(score, (int, float)) else None)

    def _shape(self, item: dict, kind: str, row: str, target: ObjectTarget, sizes: list,
               task_text: str | None) -> Shape | None:
        v = item.get("value") or {}
        try:
            if kind == "span":
                start, end = int(v["start"]), int(v["end"])
                text = v.get("text")
                if text is None and task_text is not None:
                    text = task_text[start:end]
                return Span(start, end, text)
            w = item.get("original_width") or (sizes[0][0] if sizes else None)
            h = item.get("original_height") or (sizes[0][1] if sizes else None)
            if not w or not h:
                self.report.loss(kind, "image size unknown (no original_width/height)",
                                 target.labelbox, row)
                return None
            w, h = float(w), float(h)
            if kind == "videobox":
                return video.read_result(item, [(w, h)], self.mapping, self.report,
                                         target.labelbox, row)
            if kind == "bbox":
                return Box(_px(v["x"], w), _px(v["y"], h), _px(v["width"], w),
                           _px(v["height"], h), float(v.get("rotation") or 0.0) % 360.0)
            if kind == "polygon":
                pts = tuple((_px(x, w), _px(y, h)) for x, y in v["points"])
                if len(pts) > 1 and pts[0] == pts[-1]:
                    pts = pts[:-1]
                if len(pts) < 3:
                    self.report.loss(kind, "polygon with fewer than 3 points", target.labelbox,
                                     row)
                    return None
                return Polygon(pts)
            if kind == "point":
                return KeyPoint(_px(v["x"], w), _px(v["y"], h))
        except (KeyError, TypeError, ValueError) as exc:
            self.report.loss(kind, f"malformed value ({exc.__class__.__name__}: {exc})",
                             target.labelbox, row)
            return None
        raise AssertionError(kind)

    # -- classifications
    def _classification(self, item: dict, t: ClassificationTarget, rid: str, row: str
                        ) -> Classification | None:
        v = item.get("value") or {}
        score = item.get("score") if isinstance(item.get("score"), (int, float)) else None
        if t.tag == "Choices":
            answers = []
            for choice in v.get("choices") or []:
                name = t.labelbox_answer(choice)
                if name is None:
                    self.report.loss(t.kind, f"choice {choice!r} of control {t.control!r} has "
                                     "no Labelbox option", t.labelbox, row)
                    continue
                answers.append(Answer(name=name))
            if not answers:
                return None
            if t.kind == "radio" and len(answers) > 1:
                self.report.loss("radio", f"single-choice control {t.control!r} holds "
                                 f"{len(answers)} choices; kept the first", t.labelbox, row)
                answers = answers[:1]
            return Classification(t.labelbox, t.kind, tuple(answers), id=rid, score=score)
        if t.tag == "TextArea":
            text = "\n".join(str(x) for x in (v.get("text") or []))
        elif t.tag == "Number":
            text = None if v.get("number") is None else _number_text(v["number"])
        else:
            text = None if v.get("rating") is None else str(v["rating"])
        if not text:
            return None
        return Classification(t.labelbox, "text", text=text, id=rid, score=score)

    def _assemble(self, items: Iterable[tuple[str, dict]], row: str, per_region: bool
                  ) -> tuple[Classification, ...]:
        """Classification results -> trees, re-nesting children under their parent answer."""
        built: list[tuple[ClassificationTarget, Classification]] = []
        for rid, item in items:
            control = item.get("from_name", "")
            t = self.mapping.classification_from_ls(control)
            if t is None:
                self.report.loss(item.get("type") or "classification",
                                 f"no Labelbox classification for control {control!r}",
                                 control, row)
                continue
            if t.per_region != per_region:
                where = "a region" if t.per_region else "the task"
                self.report.loss(t.kind, f"control {control!r} belongs to {where}", t.labelbox,
                                 row)
                continue
            c = self._classification(item, t, None if per_region else rid, row)
            if c is not None:
                built.append((t, c))
        by_control = {t.control: (t, c) for t, c in built}

        def tree(t: ClassificationTarget, c: Classification, depth: int = 0) -> Classification:
            if depth > 32:
                return c
            answers = []
            for a in c.answers:
                ls_choice = t.ls_answer(a.name)
                kids = [tree(ct, cc, depth + 1) for ct, cc in built
                        if ct.parent == (t.control, ls_choice)]
                answers.append(Answer(a.name, tuple(kids), a.score) if kids else a)
            return Classification(c.name, c.kind, tuple(answers), c.text, c.id, c.score)

        roots = []
        for t, c in built:
            if t.parent and t.parent[0] in by_control:
                parent_t, parent_c = by_control[t.parent[0]]
                chosen = {parent_t.ls_answer(a.name) for a in parent_c.answers}
                if t.parent[1] in chosen:
                    continue  # placed under its parent's answer by tree()
                self.report.loss(t.kind, f"nested under {t.parent[0]}={t.parent[1]!r}, which "
                                 "is not selected; sent at the top level", t.labelbox, row)
            elif t.parent:
                self.report.loss(t.kind, f"its parent control {t.parent[0]!r} has no answer; "
                                 "sent at the top level", t.labelbox, row)
            roots.append(tree(t, c))
        return tuple(roots)

    # -- relations
    def _relation(self, item: dict, ids: set[str], row: str) -> Relation | None:
        src = clean_region_id(str(item.get("from_id", "")))
        tgt = clean_region_id(str(item.get("to_id", "")))
        labels = item.get("labels") or []
        name = self.mapping.relation_from_ls(labels[0] if labels else None)
        if src not in ids or tgt not in ids:
            self.report.loss("relationship", "a related region was not converted", name, row)
            return None
        if name is None:
            self.report.loss("relationship", "unlabelled relation and no Labelbox relationship "
                             "mapped for it", None, row)
            return None
        direction = item.get("direction", "right")
        if direction == "left":
            src, tgt = tgt, src
        return Relation(src, tgt, name, direction == "bi")


def _number_text(value: Any) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else repr(f)
