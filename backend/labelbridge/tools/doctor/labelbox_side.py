"""Labelbox -> Label Studio: every Labelbox feature, question and option must reach a Label
Studio control of the same kind, at the same place."""

from __future__ import annotations

from labelbridge.labelbox.ontology import ObjectFeature, OntologyClassification
from labelbridge.tools.doctor.checker import CheckerBase, Place

_KIND_PHRASE = {"radio": "radio (one answer)", "checklist": "checklist (multiple answers)",
                "text": "text"}


class LabelboxSide(CheckerBase):
    def lb_object(self, f: ObjectFeature) -> None:
        label = f"Labelbox tool '{f.name}' ({f.tool if f.kind == 'other' else f.kind})"
        if f.kind in ("polyline", "other"):
            self.warn("unsupported", {
                "polyline": f"{label} cannot be shown in Label Studio: it has no image "
                            "polyline tool",
                "other": f"{label} is not supported"}[f.kind])
            self.explain(f.classifications, True)
            return
        t = self.m.object_target(f.kind, f.name)  # type: ignore[arg-type]
        if t is None and f.kind == "bbox":
            t = self.m.object_target("videobox", f.name)
        if t is None:
            named = self.m.objects_named(f.name)
            same_kind = [o for o in named if o.kind == f.kind]
            if len(same_kind) > 1:
                self.error("ambiguous", f"{label} matches {len(same_kind)} Label Studio labels: "
                           + ", ".join(f"'{o.label}' of control '{o.control}'"
                                       if o.label is not None else f"control '{o.control}'"
                                       for o in same_kind))
                named = same_kind
            elif named:
                for o in named:
                    where = (f"label '{o.label}' is on control '{o.control}' ({self.ls_desc(o)})"
                             if o.label is not None else
                             f"control '{o.control}' is a {self.ls_desc(o)}")
                    self.error("kind-mismatch", f"Labelbox tool '{f.name}' is a {f.kind} but "
                               f"Label Studio {where}")
            else:
                self.error("lb-unmapped-object", f"{label} has no Label Studio control")
            self.used_labels.update((o.control, o.label, o.kind) for o in named)
            self.explain(f.classifications, True)
            return
        self.used_labels.add((t.control, t.label, t.kind))
        if t.result_type == "hypertextlabels":
            self.warn("unsupported", f"{label} is on HyperText control '{t.control}': Labelbox "
                      "character offsets cannot become HyperText spans")
        for c in f.classifications:
            self.lb_question(c, Place(tool=f.name))

    def lb_question(self, c: OntologyClassification, place: Place) -> None:
        label = f"Labelbox classification '{c.name}' ({c.type if c.kind == 'other' else c.kind})"
        where = f" nested under {place.path()}" if place.nested else ""
        if c.kind == "other":
            self.warn("unsupported", f"{label}{where} is not supported")
            self.explain((c,), place.per_region)
            return
        t = self.m.classification_target(c.name, place.per_region, place.ls_parent)
        if t is None:
            named = self.m.classifications_named(c.name)
            same = [x for x in named if x.per_region == place.per_region]
            other = [x for x in named if x.per_region != place.per_region]
            if len(same) > 1:
                self.error("ambiguous", f"{label}{where} matches {len(same)} Label Studio "
                           "controls: " + ", ".join(f"'{x.control}'" for x in same))
                for x in same:
                    self.matched.setdefault(x.control, []).append((c, place, False))
                self.explain((c,), place.per_region)
                return
            if len(other) != 1:
                self.error("lb-unmapped-classification", f"{label}{where} has no Label Studio "
                           "control")
                for x in other:
                    self.matched.setdefault(x.control, []).append((c, place, False))
                self.explain((c,), place.per_region)
                return
            t = other[0]
            self.error("nesting-mismatch", f"Labelbox classification '{c.name}' is "
                       f"{place.describe()} but Label Studio control '{t.control}' is "
                       f"{'' if t.per_region else 'not '}perRegion")
        if t.parent != place.ls_parent:
            self.error("nesting-mismatch", f"Labelbox classification '{c.name}' is "
                       f"{place.describe()} but Label Studio control '{t.control}' "
                       f"{self.ls_parent(t.parent)}")
        comparable = (c.kind == "text") == (t.tag != "Choices")
        if not comparable or (c.kind != "text" and c.kind != t.kind):
            self.error("kind-mismatch", f"Labelbox classification '{c.name}' is "
                       f"{_KIND_PHRASE[c.kind]} but Label Studio control '{t.control}' is "
                       f"{self.ls_kind(t)}")
        self.matched.setdefault(t.control, []).append((c, place, comparable))
        if not comparable:
            for opt in c.options:
                self.explain(opt.classifications, place.per_region)
            return
        for opt in c.options:
            ls_choice = t.ls_answer(opt.name) or t.ls_answer(opt.value)
            if ls_choice is None:
                self.error("lb-unmapped-option", f"Labelbox option '{opt.name}' of '{c.name}' "
                           f"has no <Choice> in control '{t.control}'")
                self.explain(opt.classifications, place.per_region)
                continue
            for child in opt.classifications:
                self.lb_question(child, place.under(c.name, opt.name, (t.control, ls_choice)))

    def relationships(self) -> None:
        known = {r.name.casefold() for r in self.o.relationships}
        for r in self.o.relationships:
            label = self.m.relation_label(r.name)
            back = None if label is False else self.m.relation_from_ls(label)
            if back is None or back.casefold() != r.name.casefold():
                self.error("relationship-unmapped", f"Labelbox relationship '{r.name}' has no "
                           "<Relation value> in Label Studio")
            if r.classifications:
                self.warn("nesting-mismatch", f"Labelbox relationship '{r.name}' has nested "
                          "classifications, which Label Studio relations cannot hold")
        for value in self.m.relation_labels:
            name = self.m.relation_from_ls(value)
            if name is None or name.casefold() not in known:
                self.error("relationship-unmapped", f"Label Studio relation '{value}' has no "
                           "Labelbox relationship")
