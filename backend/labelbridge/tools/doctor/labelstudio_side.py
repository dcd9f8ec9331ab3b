"""Label Studio -> Labelbox: every label, control and choice of the label config must reach a
Labelbox feature, question or option; unsupported controls are declared."""

from __future__ import annotations

from labelbridge.labelbox.ontology import OntologyClassification
from labelbridge.labelstudio.mapping import TOOL_KINDS as LS_TOOL_TAGS
from labelbridge.labelstudio.mapping import ClassificationTarget, ObjectTarget
from labelbridge.tools.doctor.checker import LB_KIND, CheckerBase, Place


class LabelStudioSide(CheckerBase):
    def ls_label(self, o: ObjectTarget) -> None:
        if o.label is None and not o.labelbox:
            self.error("ls-unmapped-control", f"Label Studio control '{o.control}' "
                       f"({self.ls_desc(o)}) has no Labelbox tool: name one for it in the "
                       "mapping file")
            return
        hit = self.m.object_from_ls(o.control, o.label, o.kind) or o
        folded = hit.labelbox.casefold()
        tools = [f for f in self.o.objects if f.name.casefold() == folded]
        same = [f for f in tools if f.kind == LB_KIND.get(o.kind, o.kind)]
        if same:
            who = f"label '{o.label}' of control '{o.control}'" if o.label is not None \
                else f"control '{o.control}'"
            self.spelling(f"Label Studio {who}", hit.labelbox, same[0].name)
        elif (o.control, o.label, o.kind) in self.used_labels:
            return  # reported from the Labelbox side
        elif tools:
            self.error("kind-mismatch", f"Label Studio {self.ls_item(o)} is a {o.kind} but "
                       f"Labelbox tool '{tools[0].name}' is a {tools[0].kind}")
        else:
            renamed = "" if folded == (o.label or "").casefold() else \
                f" (mapped to '{hit.labelbox}')"
            self.error("ls-unmapped-label", f"Label Studio {self.ls_item(o)} has no Labelbox "
                       f"feature{renamed}")

    def ls_control(self, t: ClassificationTarget) -> None:
        matched = self.matched.get(t.control)
        if matched:
            if t.tag == "Choices":
                self.ls_choices(t, [(c, p) for c, p, ok in matched
                                    if ok and c.kind in ("radio", "checklist")])
            for c, _, _ in matched[:1]:
                self.spelling(f"Label Studio control '{t.control}'", t.labelbox, c.name)
            if any(p.per_region for _, p, _ in matched):
                self.ls_per_region(t)
            return
        if (t.labelbox.casefold(), t.per_region) in self.explained:
            return
        occurrences = self.places.get(t.labelbox.casefold(), [])
        if not occurrences:
            renamed = "" if t.labelbox.casefold() == t.control.casefold() else \
                f" (mapped to '{t.labelbox}')"
            self.error("ls-unmapped-control", f"Label Studio control '{t.control}' ({t.tag}) "
                       f"has no Labelbox classification{renamed}")
            return
        ls_place = "perRegion" if t.per_region else "global"
        if t.parent is not None:
            ls_place += f", shown when '{t.parent[0]}' = '{t.parent[1]}'"
        lb_places = " and ".join(dict.fromkeys(p.describe() for _, p in occurrences))
        self.error("nesting-mismatch", f"Label Studio control '{t.control}' is {ls_place} but "
                   f"Labelbox classification '{occurrences[0][0].name}' is {lb_places}")

    def ls_choices(self, t: ClassificationTarget,
                   questions: list[tuple[OntologyClassification, Place]]) -> None:
        if not questions:
            return
        for choice in t.answers.values():
            answer = t.labelbox_answer(choice) or choice
            missing = [(c, p) for c, p in questions
                       if not any(opt.matches(answer) for opt in c.options)]
            if len(missing) == len(questions):
                self.error("ls-unmapped-choice", f"Label Studio choice '{choice}' of control "
                           f"'{t.control}' has no Labelbox option")
            else:
                for c, p in missing:
                    self.error("ls-unmapped-choice", f"Label Studio choice '{choice}' of control "
                               f"'{t.control}' has no Labelbox option in '{c.name}' "
                               f"{p.describe()}")

    def ls_parents(self) -> None:
        choices = {t.control: set(t.answers.values()) for t in self.m.classifications
                   if t.tag == "Choices"}
        for t in self.m.classifications:
            if t.parent is not None and t.parent[1] not in choices.get(t.parent[0], ()):
                self.error("nesting-mismatch", f"Label Studio control '{t.control}' is shown "
                           f"when '{t.parent[0]}' = '{t.parent[1]}', which is not a choice of a "
                           "<Choices> control")

    def ls_per_region(self, t: ClassificationTarget) -> None:
        """A perRegion control can be answered on every region of its object (unless
        ``whenLabelValue`` narrows it); the Labelbox tool of each such label must hold it."""
        if not t.per_region or t.parent is not None:
            return
        attr = self._attr(t.control)
        only = None
        if attr.get("visibleWhen") == "region-selected" and attr.get("whenLabelValue"):
            only = {v.strip() for v in str(attr["whenLabelValue"]).split(",")}
        folded = t.labelbox.casefold()
        for o in self.m.objects:
            if o.to_name != t.to_name or not o.labelbox or o.label is None \
                    or (only is not None and o.label not in only):
                continue
            name = o.labelbox.casefold()
            tool = next((f for f in self.o.objects if f.kind == o.kind
                         and f.name.casefold() == name), None)
            if tool is not None and not any(c.name.casefold() == folded
                                            for c in tool.classifications):
                self.warn("nesting-mismatch", f"Label Studio control '{t.control}' (perRegion) "
                          f"can be answered on '{o.label}' regions but Labelbox tool "
                          f"'{tool.name}' has no classification '{t.labelbox}'")

    def _attr(self, control: str) -> dict:
        try:
            return dict(self.m.interface.get_control(control).attr or {})
        except Exception:
            return {}

    def ls_unsupported(self) -> None:
        used = {o.control for o in self.m.objects} | {t.control for t in self.m.classifications}
        video = {o.to_name for o in self.m.objects if o.kind == "videobox"}
        used |= {c.name for c in self.m.interface.controls  # merged into the VideoRectangle
                 if c.tag == "Labels" and set(c.to_name) & video}
        for c in self.m.interface.controls:
            if c.name not in used and c.tag not in LS_TOOL_TAGS:
                self.warn("unsupported", f"Label Studio control '{c.name}' ({c.tag}) is not "
                          "supported: its annotations are not sent to Labelbox")

    def spelling(self, who: str, sent: str, labelbox: str) -> None:
        if sent != labelbox:
            self.warn("name-spelling", f"{who} sends '{sent}' to Labelbox, which spells it "
                      f"'{labelbox}'")
