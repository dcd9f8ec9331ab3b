"""The checker's state, shared by both directions of the checks: the Labelbox questions by
name and place, what each side already reported, and how findings name Label Studio things.

Matching is ``labelbridge.labelstudio.mapping``'s own (``object_target``, ``classification_target``,
``object_from_ls``, ``classification_from_ls``, ``relation_label``, ``relation_from_ls``):
names compare case-insensitively, the mapping file wins, the kind (bbox, polygon, ...) and the
place (global or per region, nested under which choice) disambiguate. A finding here means the
converters would drop or Labelbox would reject that feature.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelbridge.labelbox.ontology import Ontology, OntologyClassification
from labelbridge.labelstudio.mapping import ClassificationTarget, Mapping, ObjectTarget
from labelbridge.tools.doctor.findings import Finding

_MERGED_TOOLS = {"rectanglelabels": "Rectangle", "polygonlabels": "Polygon",
                 "keypointlabels": "KeyPoint"}
# Label Studio kinds held by a Labelbox tool of another kind: video boxes are rectangle tools.
LB_KIND = {"videobox": "bbox"}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a Labelbox classification sits, and where Label Studio must nest its control."""

    tool: str | None = None                        # the tool it belongs to (per region)
    chain: tuple[tuple[str, str], ...] = ()        # (classification, option) above it, LB names
    ls_parent: tuple[str, str] | None = None       # (LS control, LS choice) it must hang under

    @property
    def per_region(self) -> bool:
        return self.tool is not None

    @property
    def nested(self) -> bool:
        return bool(self.tool or self.chain)

    def path(self) -> str:
        parts = [f"tool '{self.tool}'"] if self.tool else []
        parts += [f"'{c}' = '{o}'" for c, o in self.chain]
        return " > ".join(parts)

    def describe(self) -> str:
        return f"nested under {self.path()}" if self.nested else "global"

    def under(self, question: str, option: str, ls_parent: tuple[str, str] | None) -> Place:
        return Place(self.tool, (*self.chain, (question, option)), ls_parent)


class CheckerBase:
    """What both directions read and record; ``LabelboxSide`` and ``LabelStudioSide`` add the
    checks, ``checks._Checker`` runs them."""

    def __init__(self, mapping: Mapping, ontology: Ontology) -> None:
        self.m = mapping
        self.o = ontology
        self.findings: list[Finding] = []
        self.used_labels: set[tuple[str, str | None, str]] = set()    # (control, label, kind)
        # control -> the Labelbox questions that resolved to it (and whether kinds compare)
        self.matched: dict[str, list[tuple[OntologyClassification, Place, bool]]] = {}
        self.explained: set[tuple[str, bool]] = set()   # (folded name, per_region) reported above
        self.places: dict[str, list[tuple[OntologyClassification, Place]]] = {}
        for f in ontology.objects:
            self._collect(f.classifications, Place(tool=f.name))
        self._collect(ontology.classifications, Place())

    def _collect(self, questions: tuple[OntologyClassification, ...], place: Place) -> None:
        for c in questions:
            self.places.setdefault(c.name.casefold(), []).append((c, place))
            for opt in c.options:
                self._collect(opt.classifications, place.under(c.name, opt.name, None))

    def error(self, code: str, message: str) -> None:
        self.findings.append(Finding("error", code, message))

    def warn(self, code: str, message: str) -> None:
        self.findings.append(Finding("warning", code, message))

    # ----- helpers ------------------------------------------------------------------------
    def tag(self, control: str) -> str:
        try:
            return self.m.interface.get_control(control).tag
        except Exception:
            return "?"

    def ls_desc(self, o: ObjectTarget) -> str:
        tag = self.tag(o.control)
        if tag == "Labels" and o.kind != "span":
            return f"Labels + {_MERGED_TOOLS.get(o.result_type, o.result_type)}"
        return tag

    def ls_item(self, o: ObjectTarget) -> str:
        if o.label is None:
            return f"control '{o.control}' ({self.ls_desc(o)})"
        return f"label '{o.label}' of control '{o.control}' ({self.ls_desc(o)})"

    @staticmethod
    def ls_kind(t: ClassificationTarget) -> str:
        if t.tag == "Choices":
            return "multiple-choice" if t.kind == "checklist" else "single-choice"
        return t.tag

    @staticmethod
    def ls_parent(parent: tuple[str, str] | None) -> str:
        return "has no visibleWhen parent" if parent is None else \
            f"is shown when '{parent[0]}' = '{parent[1]}'"

    def explain(self, questions: tuple[OntologyClassification, ...], per_region: bool) -> None:
        """A subtree the converters never reach; its controls need no report of their own."""
        for c in questions:
            self.explained.add((c.name.casefold(), per_region))
            for opt in c.options:
                self.explain(opt.classifications, per_region)
