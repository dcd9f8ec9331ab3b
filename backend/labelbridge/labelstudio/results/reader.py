"""A Label Studio ``result`` list (an annotation or a prediction) -> neutral regions.

Results sharing an ``id`` are one region: the geometry result (kind table ``kinds.BY_TYPE``)
and its per-region classifications; other results are task-level classifications, re-nested
under their parent answer (``visibleWhen``). Nothing here raises on a damaged result: what
cannot be read is a loss naming the region id, the field and the reason.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from labelbridge.labelstudio.mapping import ClassificationTarget, Mapping
from labelbridge.labelstudio.results.kinds import BY_TYPE, LABEL_KEYS, ResultError
from labelbridge.model.ids import clean_region_id
from labelbridge.model.regions import (Answer, Classification, DataRowRef, Region, Relation,
                                       Span, TaskRegions)
from labelbridge.model.report import Reporter


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _strs(value: Any) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _geometry_type(item: dict) -> bool:
    t = item.get("type")
    return type(t) is str and t in BY_TYPE


def _size(item: dict) -> tuple[float, float] | None:
    w: Any = item.get("original_width")
    h: Any = item.get("original_height")
    if type(w) in (int, float) and type(h) in (int, float) and w > 0 and h > 0:
        return float(w), float(h)
    return None


class ResultReader:
    """Reads a Label Studio ``result`` list into neutral regions."""

    def __init__(self, mapping: Mapping, report: Reporter) -> None:
        self.mapping = mapping
        self.report = report

    def read(self, result: Any, data_row: DataRowRef, size: tuple[int, int] | None = None,
             task_text: str | None = None, task_data: dict | None = None) -> TaskRegions:
        """``task_data``: the task's data (a video's ``frameRate="$fps"`` reads its field)."""
        row = data_row.id or data_row.global_key or data_row.external_id or "?"
        report = self.report.scope(data_row=row)
        groups: dict[str, list[dict]] = {}
        relations: list[dict] = []
        for i, item in enumerate(result if isinstance(result, list) else ()):
            if not isinstance(item, dict):
                report.loss("result", "a result item is not an object", field=f"result[{i}]")
                continue
            if item.get("type") == "relation":
                relations.append(item)
                continue
            rid = clean_region_id(str(item.get("id") or f"noid{i}"))
            groups.setdefault(rid, []).append(item)
        if not isinstance(result, list):
            report.loss("result", "the annotation's result is not a list", field="result")
        regions: list[Region] = []
        global_items: list[tuple[str, dict]] = []
        task_size = (float(size[0]), float(size[1])) if size else None
        w = h = None
        for rid, items in groups.items():
            geometry = [it for it in items if _geometry_type(it)]
            others = [it for it in items if not _geometry_type(it)]
            for it in geometry:
                if w is None and (s := _size(it)):
                    w, h = int(s[0]), int(s[1])
            if not geometry:
                global_items.extend((rid, it) for it in items)
                continue
            region = self._region(rid, geometry, others, report.scope(region=rid), task_size,
                                  task_text, task_data)
            if region is not None:
                regions.append(region)
        classifications = self._assemble(global_items, report, per_region=False)
        ids = {r.id for r in regions}
        rels = tuple(r for item in relations if (r := self._relation(item, ids, report)))
        if w is None and size:
            w, h = size
        return TaskRegions(data_row=data_row, regions=tuple(regions),
                           classifications=classifications, relations=rels, width=w, height=h)

    # -- regions
    def _region(self, rid: str, geometry: list[dict], others: list[dict], report: Reporter,
                task_size, task_text: str | None, task_data: dict | None = None
                ) -> Region | None:
        main = next((g for g in geometry if g["type"] in LABEL_KEYS), geometry[0])
        rtype = main["type"]
        kind = BY_TYPE[rtype]
        value = main.get("value")
        if not isinstance(value, dict):
            report.loss(kind.kind, "missing" if value is None else "not an object",
                        field="value")
            return None
        labels = _strs(value.get(kind.label_key if rtype == kind.labels_type else rtype)) \
            or _strs(value.get(rtype)) or _strs(value.get("labels"))
        if not labels:  # a label may sit on a companion result of the same region
            labels = next((ls for g in geometry if g is not main and (ls := _strs(
                _dict(g.get("value")).get(g.get("type"))))), None)
        label = labels[0] if labels else None
        control = main.get("from_name")
        target = self.mapping.object_from_ls(control if isinstance(control, str) else "", label,
                                             kind.kind)  # type: ignore[arg-type]
        if target is None:
            report.loss(kind.kind, "no Labelbox feature for this control and label", label,
                        detail=f"control {control!r}" + (f", label {label!r}" if label else
                                                          ", no label"))
            return None
        if labels and len(labels) > 1:
            report.loss(kind.kind, "Labelbox objects have one feature: kept the first label",
                        label, detail=f"dropped {labels[1:]}")
        if kind.read_item is not None:
            shape = kind.read_item(main, [s for s in (task_size,) if s], self.mapping, report,
                                   target.labelbox, task_data)
            if shape is None:
                return None
        else:
            try:
                shape = kind.read(value, _size(main) or task_size, task_text)
            except ResultError as exc:
                report.loss(kind.kind, exc.reason, target.labelbox, field=exc.field,
                            detail=exc.detail)
                return None
        if isinstance(shape, Span) and task_text is not None and shape.text is not None \
                and task_text[shape.start:shape.end] != shape.text:
            report.loss("span", "value.text differs from the task text at these offsets: the "
                        "offsets were sent, value.text was not used", target.labelbox,
                        field="value.text", detail=f"{shape.text!r} vs "
                        f"{task_text[shape.start:shape.end]!r}")
        nested = self._assemble([(rid, it) for it in others], report, per_region=True)
        if kind.nest is not None:
            shape, nested = kind.nest(shape, nested)
        score: Any = main.get("score")
        return Region(id=rid, name=target.labelbox, shape=shape, classifications=nested,
                      score=float(score) if type(score) in (int, float) else None,
                      schema_id=target.schema_id)

    # -- classifications
    def _classification(self, item: dict, t: ClassificationTarget, rid: str | None,
                        report: Reporter) -> Classification | None:
        v = _dict(item.get("value"))
        score = item.get("score") if type(item.get("score")) in (int, float) else None
        if t.tag == "Choices":
            answers = []
            choices = v.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                name = t.labelbox_answer(choice) if isinstance(choice, str) else None
                if name is None:
                    report.loss(t.kind, "a choice has no Labelbox option", t.labelbox,
                                field="value.choices", detail=f"choice {choice!r} of control "
                                f"{t.control!r}")
                    continue
                answers.append(Answer(name=name, schema_id=t.answer_schema_ids.get(name)))
            if not answers:
                return None
            if t.kind == "radio" and len(answers) > 1:
                report.loss("radio", "a single-choice control holds several choices: kept the "
                            "first", t.labelbox, field="value.choices",
                            detail=f"control {t.control!r}, {len(answers)} choices")
                answers = answers[:1]
            return Classification(t.labelbox, t.kind, tuple(answers), id=rid, score=score,
                                  schema_id=t.schema_id)
        if t.tag == "TextArea":
            texts = v.get("text")
            text = "\n".join(str(x) for x in texts) if isinstance(texts, list) else None
        elif t.tag == "Number":
            n: Any = v.get("number")
            text = _number_text(n) if type(n) in (int, float) and math.isfinite(n) else None
        else:
            r = v.get("rating")
            text = str(r) if type(r) is int else None
        if not text:
            return None
        return Classification(t.labelbox, "text", text=text, id=rid, score=score,
                              schema_id=t.schema_id)

    def _assemble(self, items: Iterable[tuple[str, dict]], report: Reporter, per_region: bool
                  ) -> tuple[Classification, ...]:
        """Classification results -> trees, re-nesting children under their parent answer."""
        built: list[tuple[ClassificationTarget, Classification]] = []
        for rid, item in items:
            control = item.get("from_name")
            t = self.mapping.classification_from_ls(control) if isinstance(control, str) else None
            if t is None:
                rtype = item.get("type")
                report.loss(rtype if isinstance(rtype, str) and rtype else "classification",
                            "no Labelbox classification for this control", str(control),
                            region=rid)
                continue
            if t.per_region != per_region:
                where = "a region" if t.per_region else "the task"
                report.loss(t.kind, f"the control belongs to {where}", t.labelbox, region=rid,
                            detail=f"control {control!r}")
                continue
            c = self._classification(item, t, None if per_region else rid,
                                     report.scope(region=rid))
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
                answers.append(Answer(a.name, tuple(kids), a.score, a.schema_id) if kids else a)
            return Classification(c.name, c.kind, tuple(answers), c.text, c.id, c.score,
                                  c.schema_id)

        roots = []
        for t, c in built:
            if t.parent and t.parent[0] in by_control:
                parent_t, parent_c = by_control[t.parent[0]]
                chosen = {parent_t.ls_answer(a.name) for a in parent_c.answers}
                if t.parent[1] in chosen:
                    continue  # placed under its parent's answer by tree()
                report.loss(t.kind, "nested under an answer that is not selected: sent at the "
                            "top level", t.labelbox, detail=f"{t.parent[0]}={t.parent[1]!r}")
            elif t.parent:
                report.loss(t.kind, "its parent control has no answer: sent at the top level",
                            t.labelbox, detail=f"parent control {t.parent[0]!r}")
            roots.append(tree(t, c))
        return tuple(roots)

    # -- relations
    def _relation(self, item: dict, ids: set[str], report: Reporter) -> Relation | None:
        src = clean_region_id(str(item.get("from_id", "")))
        tgt = clean_region_id(str(item.get("to_id", "")))
        labels = _strs(item.get("labels")) or []
        name = self.mapping.relation_from_ls(labels[0] if labels else None)
        if src not in ids or tgt not in ids:
            report.loss("relationship", "a related region was not converted", name,
                        detail=f"{src} -> {tgt}")
            return None
        if name is None:
            report.loss("relationship", "unlabelled relation and no Labelbox relationship "
                        "mapped for it", None, detail=f"{src} -> {tgt}")
            return None
        direction = item.get("direction", "right")
        if direction == "left":
            src, tgt = tgt, src
        return Relation(src, tgt, name, direction == "bi")


def _number_text(value: float) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else repr(f)
