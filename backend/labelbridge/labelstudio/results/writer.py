"""Neutral regions (from Labelbox) -> the Label Studio ``result`` list of one task.

Every result of one region shares its ``id``: per-region controls repeat the region's geometry in
``value``; relations are flat items with ``from_id``/``to_id`` and no ``id``; TextArea's value key
is ``text`` (a list of strings). Geometry goes through the kind table (``kinds.BY_SHAPE``).
"""

from __future__ import annotations

from typing import Any

from labelbridge.labelstudio import video
from labelbridge.labelstudio.mapping import ClassificationTarget, Mapping
from labelbridge.labelstudio.results.kinds import BY_SHAPE, ResultError
from labelbridge.model.regions import Classification, Region, Relation, TaskRegions
from labelbridge.model.report import Reporter


# What the writer makes of the same input changed (2: key points carry value.width): part of
# the key prepared predictions are stored under, so none made by an older writer is served.
RESULTS_VERSION = 2


class ResultWriter:
    """Writes the Label Studio ``result`` list of one task."""

    def __init__(self, mapping: Mapping, report: Reporter) -> None:
        self.mapping = mapping
        self.report = report

    def write(self, tr: TaskRegions) -> list[dict]:
        row = tr.data_row.id or tr.data_row.global_key or tr.data_row.external_id or "?"
        report = self.report.scope(data_row=row)
        size = (float(tr.width), float(tr.height)) if tr.width and tr.height else None
        out: list[dict] = []
        written: set[str] = set()
        for region in tr.regions:
            items = self._region(region, tr, size, report)
            if items:
                out.extend(items)
                written.add(region.id)
        for c in tr.classifications:  # a frame-ranged (video) answer only if it spans it all
            if not c.frames or video.covers_video(c, tr, report, row):  # type: ignore[arg-type]
                self._classification(out, c, None, None, report, c.id)
        for rel in tr.relations:
            item = self._relation(rel, written, report)
            if item:
                out.append(item)
        return out

    # -- objects
    def _region(self, region: Region, tr: TaskRegions, size, report: Reporter) -> list[dict]:
        shape = region.shape
        kind = BY_SHAPE.get(shape.kind)
        if kind is None:
            report.loss(shape.kind, f"Label Studio has no tool for a {shape.kind}", region.name,
                        region=region.id)
            return []
        target = self.mapping.object_target(shape.kind, region.name)
        if target is None:
            report.loss(shape.kind, "no Label Studio control/label for this feature",
                        region.name, region=region.id)
            return []
        if target.result_type == "hypertextlabels":
            report.loss("span", "HyperText spans need XPath offsets, which Labelbox character "
                        "offsets do not give", region.name, region=region.id)
            return []
        if kind.write_region is not None:
            return kind.write_region(self, region, target, tr, report)
        try:
            geometry = kind.write(shape, size)
            if kind.style is not None:
                geometry.update(kind.style(target, size))
        except ResultError as exc:
            report.loss(shape.kind, exc.reason, region.name, region=region.id,
                        field="media_attributes" if kind.image else exc.field)
            return []
        if target.label is None:
            value = dict(geometry)
        else:
            value = {**geometry, (kind.label_key if target.result_type == kind.labels_type
                                  else target.result_type): [target.label]}
        if kind.image or target.object_tag == "Image":
            main: dict[str, Any] = {"id": region.id, "from_name": target.control,
                                    "to_name": target.to_name, "original_width": tr.width,
                                    "original_height": tr.height, "image_rotation": 0,
                                    "type": target.result_type, "value": value}
        else:
            main = {"id": region.id, "from_name": target.control, "to_name": target.to_name,
                    "type": target.result_type, "value": value}
        if region.score is not None:
            main["score"] = region.score
        out = [main]
        report.ok(shape.kind)
        for c in region.classifications:
            self._classification(out, c, region, geometry, report, region.id)
        return out

    # -- classifications (global or per region, nested to any depth)
    def _classification(self, out: list[dict], c: Classification, region: Region | None,
                        geometry: dict | None, report: Reporter, rid: str | None,
                        parent: tuple[str, str] | None = None) -> None:
        """Append the results of ``c`` (and of what is nested under its answers) to ``out``."""
        per_region = region is not None
        where = region.id if region is not None else c.id
        target = self.mapping.classification_target(c.name, per_region, parent)
        if target is None:
            report.loss(c.kind, f"no Label Studio {'per-region ' if per_region else ''}control "
                        "for this classification", c.name, region=where)
            return
        value = self._classification_value(c, target, report, where)
        if value is None:
            return
        if parent is not None and target.parent != parent:
            report.loss("nesting", "nested under an answer in Labelbox, but the control has no "
                        "visibleWhen on it: sent, and shown unconditionally", c.name,
                        region=where, detail=f"{parent[0]}={parent[1]!r}, control "
                        f"{target.control!r}")
        result_id = region.id if region is not None else (rid or c.id)
        if result_id is None:
            report.loss(c.kind, "classification without an id", c.name)
            return
        if geometry:
            value = {**geometry, **value}
        item: dict[str, Any] = {"id": result_id, "from_name": target.control,
                                "to_name": target.to_name, "type": target.result_type,
                                "value": value}
        score = c.score
        if score is None:
            for a in c.answers:
                if a.score is not None:
                    score = a.score
                    break
        if score is not None:
            item["score"] = score
        out.append(item)
        report.ok(c.kind)
        for answer in c.answers:
            if answer.classifications:
                ls_choice = target.ls_answer(answer.name)
                for child in answer.classifications:
                    self._classification(out, child, region, geometry, report, child.id,
                                         (target.control, ls_choice or ""))

    def _classification_value(self, c: Classification, t: ClassificationTarget,
                              report: Reporter, where: str | None) -> dict | None:
        if t.tag == "Choices":
            if c.kind == "text":
                report.loss("text", "the control is Choices, the feature is free text", c.name,
                            region=where, detail=f"control {t.control!r}")
                return None
            choices = []
            for a in c.answers:
                ls = t.answers.get(a.name)
                if ls is None:
                    ls = t.ls_answer(a.name)
                if ls is None:
                    report.loss(c.kind, "an answer has no <Choice> in the control", c.name,
                                region=where, detail=f"answer {a.name!r}, control {t.control!r}")
                    return None
                choices.append(ls)
            return {"choices": choices}
        if c.kind != "text":
            report.loss(c.kind, f"the control is {t.tag}, the feature is {c.kind}", c.name,
                        region=where, detail=f"control {t.control!r}")
            return None
        text = c.text or ""
        if t.tag == "TextArea":
            return {"text": [text]}
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            report.loss("text", f"the answer is not a number for a {t.tag} control", c.name,
                        region=where, detail=f"{text!r}, control {t.control!r}")
            return None
        if t.tag == "Rating":
            if not number.is_integer() or not 0 <= number <= (t.max_rating or 5):
                report.loss("text", "the answer is not a whole rating within maxRating", c.name,
                            region=where, detail=f"{text!r}, maxRating {t.max_rating}")
                return None
            return {"rating": int(number)}
        return {"number": int(number) if number.is_integer() else number}

    # -- relations
    def _relation(self, rel: Relation, written: set[str], report: Reporter) -> dict | None:
        if rel.source not in written or rel.target not in written:
            report.loss("relationship", "source or target region was not converted", rel.name,
                        region=rel.id)
            return None
        label = self.mapping.relation_label(rel.name)
        if label is False:
            report.loss("relationship", "no <Relation value> for this relationship", rel.name,
                        region=rel.id)
            return None
        item: dict[str, Any] = {"from_id": rel.source, "to_id": rel.target, "type": "relation",
                "direction": "bi" if rel.bidirectional else "right"}
        if label:
            item["labels"] = [label]
        report.ok("relationship")
        return item


def prediction_score(tr: TaskRegions) -> float | None:
    """The task-level score Label Studio shows: mean of the region/classification scores."""
    scores = [r.score for r in tr.regions if r.score is not None]
    scores += [c.score for c in tr.classifications if c.score is not None]
    return round(sum(scores) / len(scores), 6) if scores else None
