"""Which Label Studio control (and label value) is which Labelbox feature.

Derived from the project's label config (through label-studio-sdk ``LabelInterface``) by
matching names case-insensitively, and overridable by a YAML mapping file (see
``configs/mapping.example.yaml``). Neutral names are Labelbox feature names; only the Label
Studio adapter uses this module to translate them.

A Label Studio name takes Labelbox's spelling (when Labelbox's names are known) by one rule,
the same in every process whatever order the names come in: a Labelbox name spelled exactly
like it wins; else its only case variant among Labelbox's names; else, when Labelbox has
several case variants of it (``Car`` and ``car`` for a label ``CAR``), the first of them in
code point order (``Car``), and ``problems`` says so (rename the label, or map it in the
mapping file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Literal
from xml.etree import ElementTree

from labelbridge.labelstudio.label_config import LabelConfig, TagOutline
from labelbridge.labelstudio.mapping_file import MappingError, Overrides
from labelbridge.model.regions import ClassificationKind, ShapeKind

if TYPE_CHECKING:
    from label_studio_sdk.label_interface import LabelInterface

# Geometry tools and the kind of Labelbox object each holds.
TOOL_KINDS: dict[str, ShapeKind] = {
    "RectangleLabels": "bbox", "Rectangle": "bbox",
    "PolygonLabels": "polygon", "Polygon": "polygon",
    "KeyPointLabels": "point", "KeyPoint": "point",
    "BrushLabels": "mask", "Brush": "mask",
    "VideoRectangle": "videobox",
}
# Tools whose <Labels> the editor merges into the tool's own result as ``value.labels``
# (``mergeLabelsAndResults`` of the Video tag): the result type stays the tool's.
MERGED_LABEL_TOOLS = {"VideoRectangle"}
# Objects a plain <Labels> control labels spans of.
SPAN_OBJECTS = {"Text", "HyperText"}
CLASSIFICATION_TAGS = {"Choices", "TextArea", "Number", "Rating"}
_UNKNOWN = object()  # not looked up yet (None is a cached answer: no target)


@dataclass(frozen=True, slots=True)
class ObjectTarget:
    """Where a Labelbox object feature lives in Label Studio."""

    labelbox: str
    kind: ShapeKind
    control: str            # from_name of the result
    to_name: str
    result_type: str        # e.g. "rectanglelabels" (also for <Labels> merged with a geometry tool)
    label: str | None       # LS label value; None for a label-less tool (<Rectangle/> alone)
    object_tag: str         # Image, Text, HyperText, ...
    schema_id: str | None = None   # the Labelbox feature's schemaId (mapping file), if known
    stroke_width: float | None = None  # the tool's strokeWidth (px) when the config sets one


@dataclass(frozen=True, slots=True)
class ClassificationTarget:
    """Where a Labelbox classification (question) lives in Label Studio."""

    labelbox: str
    kind: ClassificationKind
    control: str
    to_name: str
    tag: str                              # Choices, TextArea, Number, Rating
    per_region: bool
    answers: dict[str, str] = field(default_factory=dict)   # Labelbox option -> LS choice
    parent: tuple[str, str] | None = None                   # (parent control, LS choice value)
    max_rating: int | None = None
    schema_id: str | None = None                            # Labelbox schemaId (mapping file)
    answer_schema_ids: dict[str, str] = field(default_factory=dict)  # Labelbox option -> id

    @property
    def result_type(self) -> str:
        return self.tag.lower()

    def ls_answer(self, labelbox_answer: str) -> str | None:
        if labelbox_answer in self.answers:
            return self.answers[labelbox_answer]
        return _ci_lookup(self.answers, labelbox_answer)

    def labelbox_answer(self, ls_choice: str) -> str | None:
        for lb, ls in self.answers.items():
            if ls == ls_choice:
                return lb
        return None


def _ci_lookup(table: dict[str, str], key: str) -> str | None:
    folded = key.casefold()
    hits = [v for k, v in table.items() if k.casefold() == folded]
    return hits[0] if len(hits) == 1 else None


def _opt(value: Any) -> str | None:
    return str(value) if value else None


def _stroke_width(tool: TagOutline) -> float | None:
    """A tool's ``strokeWidth`` attribute when it is a positive number (None: the default)."""
    try:
        width = float(tool.attr.get("strokeWidth", ""))
    except (TypeError, ValueError):
        return None
    return width if 0 < width < float("inf") else None


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


class Mapping:
    """Name resolution between a Label Studio label config and Labelbox features.

    ``labelbox_names`` (optional) are the feature names Labelbox knows (from an ontology or seen
    in an export); when given, names going to Labelbox use Labelbox's exact spelling.
    """

    def __init__(self, label_config: str | LabelConfig, overrides: Overrides | None = None,
                 labelbox_names: Iterable[str] = ()) -> None:
        if isinstance(label_config, LabelConfig):
            self.config = label_config
        else:
            try:
                self.config = LabelConfig.parse(label_config)
            except Exception as exc:  # the SDK raises several types for malformed XML
                raise MappingError(f"label config: cannot parse: {exc}") from None
        self.overrides = overrides or Overrides()
        self._lb_exact = frozenset(labelbox_names)
        self._lb_variants: dict[str, list[str]] = {}   # casefolded -> spellings, sorted
        for name in sorted(self._lb_exact):
            self._lb_variants.setdefault(name.casefold(), []).append(name)
        self._ambiguous: dict[str, list[str]] = {}     # LS name -> Labelbox case variants
        self.objects: list[ObjectTarget] = []
        self.classifications: list[ClassificationTarget] = []
        self.relation_labels: list[str] = []
        self.problems: list[str] = []
        self._object_cache: dict[tuple, ObjectTarget | None] = {}   # lookups, memoized: the
        self._classification_cache: dict[tuple, ClassificationTarget | None] = {}  # tables
        self._build()                                                # never change once built

    def __reduce__(self) -> tuple:
        """Pickled as what it is built from: the config's outline, not the SDK's parse (a
        prepare worker builds it again in ~1 ms, without importing label_studio_sdk)."""
        return (Mapping, (self.config, self.overrides, tuple(sorted(self._lb_exact))))

    @property
    def label_config(self) -> str:
        return self.config.text

    @property
    def interface(self) -> LabelInterface:
        return self.config.interface

    # ----- construction -------------------------------------------------------------------
    def _object_tag(self, name: str) -> str:
        obj = self.config.object(name)
        return obj.tag if obj is not None else ""

    def _build(self) -> None:
        controls = self.config.controls
        tools_by_object: dict[str, list[TagOutline]] = {}
        for c in controls:
            if c.tag in TOOL_KINDS and not c.tag.endswith("Labels"):
                for obj in c.to_name:
                    tools_by_object.setdefault(obj, []).append(c)
        for c in controls:
            to_name = c.to_name[0] if c.to_name else ""
            obj_tag = self._object_tag(to_name)
            if c.tag in TOOL_KINDS and c.tag.endswith("Labels"):
                kind = TOOL_KINDS[c.tag]
                for label in c.labels:
                    self.objects.append(ObjectTarget(self._lb(label), kind, c.name, to_name,
                                                     c.tag.lower(), label, obj_tag,
                                                     stroke_width=_stroke_width(c)))
            elif c.tag in TOOL_KINDS:
                has_labels = any(o.tag == "Labels" and set(o.to_name) & set(c.to_name)
                                 for o in controls)
                if not has_labels:  # label-less tool: mapped only through the YAML file
                    self.objects.append(ObjectTarget("", TOOL_KINDS[c.tag], c.name, to_name,
                                                     c.tag.lower(), None, obj_tag,
                                                     stroke_width=_stroke_width(c)))
            elif c.tag in ("Labels", "HyperTextLabels"):
                if obj_tag in SPAN_OBJECTS or c.tag == "HyperTextLabels":
                    rtype = "hypertextlabels" if obj_tag == "HyperText" else "labels"
                    for label in c.labels:
                        self.objects.append(ObjectTarget(self._lb(label), "span", c.name, to_name,
                                                         rtype, label, obj_tag))
                else:
                    for tool in tools_by_object.get(to_name, []):
                        kind = TOOL_KINDS[tool.tag]
                        merged = tool.tag in MERGED_LABEL_TOOLS
                        for label in c.labels:
                            self.objects.append(ObjectTarget(
                                self._lb(label), kind, tool.name if merged else c.name,
                                to_name, tool.tag.lower() + ("" if merged else "labels"), label,
                                obj_tag, stroke_width=_stroke_width(tool)))
            elif c.tag in CLASSIFICATION_TAGS:
                self.classifications.append(self._classification_target(c, to_name))
        # LabelInterface does not expose <Relations>; read their <Relation value> directly.
        root = ElementTree.fromstring(self.label_config)
        self.relation_labels = [v for el in root.iter("Relation") if (v := el.get("value"))]
        for label in self.relation_labels:
            self._lb(label)   # notes an ambiguous spelling (relations are named at lookup)
        self._apply_overrides()
        self._report_ambiguous()

    def _classification_target(self, c: TagOutline, to_name: str) -> ClassificationTarget:
        attr = c.attr
        if c.tag == "Choices":
            kind: ClassificationKind = "checklist" if attr.get("choice") == "multiple" else "radio"
        else:
            kind = "text"
        parent = None
        if attr.get("visibleWhen") == "choice-selected" and attr.get("whenTagName"):
            parent = (attr["whenTagName"], attr.get("whenChoiceValue") or "")
        max_rating = int(attr.get("maxRating", 5)) if c.tag == "Rating" else None
        answers = {self._lb(v): v for v in c.labels}
        return ClassificationTarget(self._lb(c.name), kind, c.name, to_name, c.tag,
                                    _truthy(attr.get("perRegion", "false")), answers, parent,
                                    max_rating)

    def _lb(self, ls_name: str) -> str:
        """Labelbox spelling of a Label Studio name (the module docstring gives the rule)."""
        if ls_name in self._lb_exact:
            return ls_name
        variants = self._lb_variants.get(ls_name.casefold())
        if not variants:
            return ls_name
        if len(variants) > 1:
            self._ambiguous[ls_name] = variants
        return variants[0]

    def _report_ambiguous(self) -> None:
        """A problem for each ambiguous spelling still in use (the mapping file may have
        named the feature)."""
        for ls_name, variants in sorted(self._ambiguous.items()):
            chosen = variants[0]
            if not (any(o.label == ls_name and o.labelbox == chosen for o in self.objects)
                    or any((t.control == ls_name and t.labelbox == chosen)
                           or t.answers.get(chosen) == ls_name for t in self.classifications)
                    or (ls_name in self.relation_labels
                        and ls_name not in self._relation_overrides.values())):
                continue
            self.problems.append(
                f"label config name {ls_name!r} matches Labelbox names "
                f"{', '.join(map(repr, variants))}, which differ only in case: {chosen!r} is "
                "used (the first in code point order); rename the label, or map it in the "
                "mapping file")

    def _apply_overrides(self) -> None:
        ov = self.overrides
        for entry in ov.objects:
            control, label = entry["control"], entry.get("label")
            matches = [o for o in self.objects if o.control == control
                       and (label is None or o.label == label)]
            if not matches:
                self.problems.append(
                    f"mapping objects: no control {control!r}" +
                    (f" with label {label!r}" if label else "") + " in the label config")
                continue
            kinds = {o.kind for o in matches}
            if entry.get("kind"):
                kinds &= {entry["kind"]}
            for o in list(self.objects):
                if o in matches and o.kind in kinds:
                    self.objects.remove(o)
                    self.objects.append(ObjectTarget(str(entry["labelbox"]), o.kind, o.control,
                                                     o.to_name, o.result_type, o.label,
                                                     o.object_tag, _opt(entry.get("schema_id")),
                                                     o.stroke_width))
        for entry in ov.classifications:
            control = entry["control"]
            found = [t for t in self.classifications if t.control == control]
            if not found:
                self.problems.append(f"mapping classifications: no control {control!r} "
                                     "in the label config")
                continue
            t = found[0]
            answers = dict(t.answers)
            for lb_answer, ls_choice in (entry.get("answers") or {}).items():
                if t.tag == "Choices" and str(ls_choice) not in set(t.answers.values()):
                    self.problems.append(f"mapping classifications: control {control!r} has no "
                                         f"choice {ls_choice!r}")
                    continue
                answers = {k: v for k, v in answers.items() if v != str(ls_choice)}
                answers[str(lb_answer)] = str(ls_choice)
            parent = t.parent
            if entry.get("parent"):
                p = entry["parent"]
                parent = (str(p.get("control")), str(p.get("answer")))
            self.classifications.remove(t)
            self.classifications.append(ClassificationTarget(
                str(entry["labelbox"]), t.kind, t.control, t.to_name, t.tag, t.per_region,
                answers, parent, t.max_rating, _opt(entry.get("schema_id")),
                {str(k): str(v) for k, v in (entry.get("answer_schema_ids") or {}).items()}))
        self._relation_overrides = {str(e["labelbox"]): e.get("label") for e in ov.relations}

    # ----- Labelbox -> Label Studio -------------------------------------------------------
    def object_target(self, kind: ShapeKind, labelbox_name: str) -> ObjectTarget | None:
        key = (kind, labelbox_name)
        target = self._object_cache.get(key, _UNKNOWN)
        if target is _UNKNOWN:
            target = self._object_cache[key] = self._object_target(kind, labelbox_name)
        return target  # type: ignore[return-value]

    def _object_target(self, kind: ShapeKind, labelbox_name: str) -> ObjectTarget | None:
        same_kind = [o for o in self.objects if o.kind == kind and o.labelbox]
        exact = [o for o in same_kind if o.labelbox == labelbox_name]
        if len(exact) == 1:
            return exact[0]
        folded = labelbox_name.casefold()
        loose = exact or [o for o in same_kind if o.labelbox.casefold() == folded]
        return loose[0] if len(loose) == 1 else None

    def classification_target(self, labelbox_name: str, per_region: bool,
                              parent: tuple[str, str] | None = None
                              ) -> ClassificationTarget | None:
        """The control for a question; ``parent`` is (parent control, LS choice) when nested."""
        key = (labelbox_name, per_region, parent)
        target = self._classification_cache.get(key, _UNKNOWN)  # one lookup: a row asks dozens
        if target is _UNKNOWN:
            target = self._classification_cache[key] = self._find_classification(*key)
        return target  # type: ignore[return-value]

    def _find_classification(self, labelbox_name: str, per_region: bool,
                             parent: tuple[str, str] | None) -> ClassificationTarget | None:
        folded = labelbox_name.casefold()
        named = [t for t in self.classifications if t.labelbox == labelbox_name] or \
                [t for t in self.classifications if t.labelbox.casefold() == folded]
        placed = [t for t in named if t.per_region == per_region]
        if parent is not None:
            placed = [t for t in placed if t.parent in (None, parent)] or placed
        return placed[0] if len(placed) == 1 else None

    def relation_label(self, labelbox_name: str | None) -> str | None | Literal[False]:
        """LS relation label for a Labelbox relationship: a value, None (unlabelled), or False."""
        if labelbox_name is None:
            return None
        if labelbox_name in self._relation_overrides:
            return self._relation_overrides[labelbox_name]
        hit = _ci_lookup({v: v for v in self.relation_labels}, labelbox_name)
        if hit:
            return hit
        return None if not self.relation_labels else False

    # ----- Label Studio -> Labelbox -------------------------------------------------------
    def object_from_ls(self, control: str, label: str | None, kind: ShapeKind | None = None
                       ) -> ObjectTarget | None:
        hits = [o for o in self.objects if o.control == control and o.label == label
                and (kind is None or o.kind == kind) and o.labelbox]
        return hits[0] if hits else None

    def classification_from_ls(self, control: str) -> ClassificationTarget | None:
        for t in self.classifications:
            if t.control == control:
                return t
        return None

    def relation_from_ls(self, ls_label: str | None) -> str | None:
        for lb, ls in self._relation_overrides.items():
            if ls == ls_label:
                return lb
        if ls_label is None:
            unlabeled = [lb for lb, ls in self._relation_overrides.items() if ls is None]
            return unlabeled[0] if unlabeled else None
        return self._lb(ls_label)

    # ----- helpers ------------------------------------------------------------------------
    def objects_named(self, labelbox_name: str) -> list[ObjectTarget]:
        """Every LS label (any kind) whose Labelbox name matches, case-insensitively."""
        folded = labelbox_name.casefold()
        return [o for o in self.objects if o.labelbox and o.labelbox.casefold() == folded]

    def classifications_named(self, labelbox_name: str) -> list[ClassificationTarget]:
        """Every control (global or per region) whose Labelbox name matches, case-insensitively."""
        folded = labelbox_name.casefold()
        return [t for t in self.classifications if t.labelbox.casefold() == folded]

    def children_of(self, control: str, ls_choice: str) -> list[ClassificationTarget]:
        return [t for t in self.classifications if t.parent == (control, ls_choice)]

    @property
    def fingerprint(self) -> str:
        """Stable hash of everything that changes conversion output."""
        h = hashlib.sha1(self.label_config.encode("utf-8"))
        h.update(repr((self.overrides.objects, self.overrides.classifications,
                       self.overrides.relations, self.overrides.rotated_boxes,
                       sorted(self._lb_exact))).encode("utf-8"))
        return h.hexdigest()


def label_config_hash(label_config: str) -> str:
    return hashlib.sha1(label_config.encode("utf-8")).hexdigest()
