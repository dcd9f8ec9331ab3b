"""``labelbridge doctor``: does the Label Studio label config (+ mapping file) fit the Labelbox
ontology, both ways? Pure logic: loading, checking, findings. The CLI prints them; the server
logs them at start.

Matching is ``labelbridge.labelstudio.mapping``'s own (``object_target``, ``classification_target``,
``object_from_ls``, ``classification_from_ls``, ``relation_label``, ``relation_from_ls``):
names compare case-insensitively, the mapping file wins, the kind (bbox, polygon, ...) and the
place (global or per region, nested under which choice) disambiguate. A finding here means the
converters would drop or Labelbox would reject that feature.

Message contract (tests assert these verbatim; keep them stable). ``<kind>`` is bbox, polygon,
point, polyline, span or mask; ``<type>`` is radio, checklist or text; ``<path>`` is
``tool 'car'`` and/or ``'weather' = 'rainy'`` segments joined by `` > ``; ``<place>`` is
``global`` or ``nested under <path>``; ``<ls desc>`` is the control's tag (``RectangleLabels``,
or ``Labels + Rectangle`` for a ``<Labels>`` shared by a geometry tool).

errors
  mapping-problem             every entry of ``Mapping.problems`` (verbatim), e.g.
                              ``mapping objects: no control 'nope' in the label config``
  lb-unmapped-object          ``Labelbox tool 'car' (bbox) has no Label Studio control``
  lb-unmapped-classification  ``Labelbox classification 'weather' (radio) has no Label Studio
                              control``; nested: ``Labelbox classification 'cause' (radio)
                              nested under tool 'car' > 'occluded' = 'yes' has no Label Studio
                              control``
  lb-unmapped-option          ``Labelbox option 'snowy' of 'weather' has no <Choice> in control
                              'weather'``
  ls-unmapped-label           ``Label Studio label 'Truck' of control 'label' (RectangleLabels)
                              has no Labelbox feature``; when the mapping file renames it, ``...
                              has no Labelbox feature (mapped to 'lorry')``; a label-less tool
                              named in the mapping file: ``Label Studio control 'box'
                              (Rectangle) has no Labelbox feature (mapped to 'vehicle')``
  ls-unmapped-control         ``Label Studio control 'note' (TextArea) has no Labelbox
                              classification`` (same suffix when renamed); a label-less tool
                              not in the mapping file: ``Label Studio control 'box' (Rectangle)
                              has no Labelbox tool: name one for it in the mapping file``
  ls-unmapped-choice          ``Label Studio choice 'night' of control 'weather' has no
                              Labelbox option``; when the control serves several Labelbox
                              classifications (per-region questions of several tools) and only
                              some lack it: ``... has no Labelbox option in 'occluded' nested
                              under tool 'person'``
  kind-mismatch               ``Labelbox tool 'road' is a polygon but Label Studio label 'road'
                              is on control 'label' (RectangleLabels)``;
                              ``Label Studio label 'lane' of control 'poly' (PolygonLabels) is a
                              polygon but Labelbox tool 'lane' is a polyline``;
                              ``Labelbox classification 'tags' is checklist (multiple answers)
                              but Label Studio control 'tags' is single-choice``; radio is
                              ``radio (one answer)``, text is ``text``; the Label Studio side is
                              ``single-choice``, ``multiple-choice`` (``choice="multiple"``) or
                              the tag (``TextArea``, ``Number``, ``Rating``)
  nesting-mismatch            ``Labelbox classification 'occluded' is nested under tool 'car'
                              but Label Studio control 'occluded' is not perRegion``;
                              ``Labelbox classification 'weather' is global but Label Studio
                              control 'weather' is perRegion``;
                              ``Labelbox classification 'rain_intensity' is nested under
                              'weather' = 'rainy' but Label Studio control 'rain_intensity' has
                              no visibleWhen parent``; ``... but Label Studio control
                              'rain_intensity' is shown when 'weather' = 'sunny'``;
                              ``Labelbox classification 'wet' is global but Label Studio control
                              'wet' is shown when 'rain_intensity' = 'heavy'``;
                              from the Label Studio side (a control no Labelbox question
                              resolved to): ``Label Studio control 'w2' is perRegion but
                              Labelbox classification 'weather' is global``; a broken parent in
                              the label config: ``Label Studio control 'x' is shown when 'y' =
                              'z', which is not a choice of a <Choices> control``
  ambiguous                   ``Labelbox tool 'car' (bbox) matches 2 Label Studio labels: 'Car'
                              of control 'a', 'Car' of control 'b'``; ``Labelbox classification
                              'weather' (radio) matches 2 Label Studio controls: 'w1', 'w2'``
  relationship-unmapped       ``Labelbox relationship 'owns' has no <Relation value> in Label
                              Studio``; ``Label Studio relation 'next_to' has no Labelbox
                              relationship``
  not-configured              ``no Label Studio label config: pass --label-config PATH or set
                              LABELBRIDGE_LABEL_CONFIG, or set LABEL_STUDIO_URL,
                              LABEL_STUDIO_API_KEY and LABEL_STUDIO_PROJECT_ID`` (variants
                              name what is missing); ``no Labelbox ontology: pass --ontology
                              PATH or set LABELBRIDGE_ONTOLOGY, or set LABELBOX_API_KEY and
                              LABELBOX_PROJECT_ID``
  unreadable                  ``<path>: cannot read ontology: ...``, ``<path>: not a Labelbox
                              ontology: ...``, ``<source>: label config: cannot parse: ...``,
                              ``<path>: cannot read mapping: ...``
  unreachable                 ``Label Studio at <url> is unreachable: <reason>``;
                              ``Labelbox is unreachable: <reason> (endpoint <graphql url>)``;
                              ``<reason>`` is the innermost cause, e.g.
                              ``ConnectionRefusedError: [Errno 111] Connection refused``, or
                              ``no answer within <timeout> s``
  remote-error                reachable but refused: ``Label Studio at <url> answered <status>:
                              <body>``; ``Labelbox could not read project '<id>': <reason>``

warnings (declared losses; they do not fail ``doctor``)
  unsupported                 ``Labelbox tool 'lane' (polyline) cannot be shown in Label Studio:
                              it has no image polyline tool``; ``Labelbox tool 'sky' (mask) is
                              not supported yet: masks are neither predicted nor imported``;
                              ``Labelbox tool 'x' (<Labelbox tool type>) is not supported``;
                              ``Labelbox classification 'x' (<Labelbox type>) is not
                              supported``; ``Labelbox tool 'PER' (span) is on HyperText control
                              'html': Labelbox character offsets cannot become HyperText
                              spans``; ``Label Studio control 'brush' (BrushLabels) is not
                              supported: its annotations are not sent to Labelbox``
  nesting-mismatch            ``Labelbox relationship 'drives' has nested classifications, which
                              Label Studio relations cannot hold``; ``Label Studio control
                              'occluded' (perRegion) can be answered on 'person' regions but
                              Labelbox tool 'person' has no classification 'occluded'`` (narrow
                              it with visibleWhen="region-selected" whenLabelValue="...")
  name-spelling               ``Label Studio control 'weather' sends 'Weather' to Labelbox, which
                              spells it 'weather'`` (Labelbox may match names case-sensitively;
                              the mapping file's spelling is sent as written)

Identical findings are reported once (a per-region control shared by several tools).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from labelbridge.labelstudio.mapping import TOOL_KINDS as LS_TOOL_TAGS
from labelbridge.labelstudio.mapping import (ClassificationTarget, Mapping, MappingError,
                                             ObjectTarget, Overrides)
from labelbridge.settings import Settings

Severity = Literal["error", "warning"]
ObjectKind = Literal["bbox", "polygon", "point", "polyline", "span", "mask", "other"]
QuestionKind = Literal["radio", "checklist", "text", "other"]

# labelbox/schema/ontology.py Tool.Type values -> our kinds ("edge" is the relationship tool).
LABELBOX_TOOL_KINDS: dict[str, ObjectKind] = {
    "rectangle": "bbox", "polygon": "polygon", "point": "point", "line": "polyline",
    "named-entity": "span", "superpixel": "mask", "raster-segmentation": "mask"}
RELATIONSHIP_TOOL = "edge"
# Classification.Type values (+ the legacy "dropdown", a single answer) -> our kinds.
LABELBOX_QUESTION_KINDS: dict[str, QuestionKind] = {
    "radio": "radio", "dropdown": "radio", "checklist": "checklist", "text": "text"}
DEFAULT_TIMEOUT = 30.0


# ===== findings ==============================================================================

@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)   # what was checked, from where

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True only when there is no error (warnings are declared losses)."""
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "errors": len(self.errors), "warnings": len(self.warnings),
                "sources": dict(self.sources),
                "findings": [f.as_dict() for f in self.findings]}


class SourceError(RuntimeError):
    """An input could not be loaded; ``code`` is the finding code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class OntologyError(SourceError):
    def __init__(self, message: str) -> None:
        super().__init__("unreadable", message)


# ===== the ontology ==========================================================================

@dataclass(frozen=True, slots=True)
class OntologyOption:
    name: str                    # the option's label: what exports and imports call the answer
    value: str
    schema_id: str | None = None
    classifications: tuple[OntologyClassification, ...] = ()

    def matches(self, answer: str) -> bool:
        folded = answer.casefold()
        return folded in (self.name.casefold(), self.value.casefold())


@dataclass(frozen=True, slots=True)
class OntologyClassification:
    name: str
    kind: QuestionKind
    type: str                    # Labelbox's own type string ("radio", "dropdown", "group"...)
    options: tuple[OntologyOption, ...] = ()
    schema_id: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectFeature:
    name: str
    kind: ObjectKind
    tool: str                    # Labelbox's own tool string ("rectangle", "line", ...)
    schema_id: str | None = None
    classifications: tuple[OntologyClassification, ...] = ()


@dataclass(frozen=True, slots=True)
class RelationshipFeature:
    name: str
    schema_id: str | None = None
    classifications: tuple[OntologyClassification, ...] = ()


@dataclass(frozen=True, slots=True)
class Ontology:
    """A neutral view of a Labelbox ontology (its ``normalized`` JSON)."""

    objects: tuple[ObjectFeature, ...] = ()
    classifications: tuple[OntologyClassification, ...] = ()
    relationships: tuple[RelationshipFeature, ...] = ()

    @property
    def relationship_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.relationships)

    def names(self) -> list[str]:
        """Every feature and option name, for ``Mapping(labelbox_names=...)``. Later entries win
        a case-insensitive clash there, so features come after options."""
        options: list[str] = []
        questions: list[str] = []

        def walk(cs: tuple[OntologyClassification, ...]) -> None:
            for c in cs:
                questions.append(c.name)
                for o in c.options:
                    options.extend(dict.fromkeys((o.value, o.name)))
                    walk(o.classifications)

        for f in (*self.objects, *self.relationships):
            walk(f.classifications)
        walk(self.classifications)
        return [*options, *questions, *(r.name for r in self.relationships),
                *(f.name for f in self.objects)]

    @classmethod
    def from_normalized(cls, data: Any, source: str = "ontology") -> Ontology:
        """Parse Labelbox's normalized ontology JSON (also accepts ``{"normalized": ...}``)."""
        if isinstance(data, dict) and "normalized" in data and "tools" not in data:
            data = data["normalized"]
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except ValueError as exc:
                    raise OntologyError(f"{source}: 'normalized' is not JSON: {exc}") from None
        if not isinstance(data, dict) or not ("tools" in data or "classifications" in data):
            raise OntologyError(f"{source}: not a Labelbox ontology: expected an object with "
                                "'tools' and 'classifications'")
        tools = _list(data.get("tools"), f"{source}: tools")
        objects, relationships = [], []
        for i, t in enumerate(tools):
            where = f"{source}: tools[{i}]"
            if not isinstance(t, dict) or not t.get("name"):
                raise OntologyError(f"{where} has no name")
            tool = str(t.get("tool") or "")
            nested = _questions(t.get("classifications"), f"{where}.classifications")
            if tool == RELATIONSHIP_TOOL:
                relationships.append(RelationshipFeature(str(t["name"]), t.get("featureSchemaId"),
                                                         nested))
            else:
                objects.append(ObjectFeature(str(t["name"]),
                                             LABELBOX_TOOL_KINDS.get(tool, "other"), tool,
                                             t.get("featureSchemaId"), nested))
        questions = _questions(data.get("classifications"), f"{source}: classifications")
        return cls(tuple(objects), questions, tuple(relationships))


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise OntologyError(f"{where} must be a list")
    return value


def _questions(value: Any, where: str) -> tuple[OntologyClassification, ...]:
    out = []
    for i, c in enumerate(_list(value, where)):
        name = (c.get("name") or c.get("instructions")) if isinstance(c, dict) else None
        if not name:
            raise OntologyError(f"{where}[{i}] has no name")
        ctype = str(c.get("type") or "")
        options = []
        for j, o in enumerate(_list(c.get("options"), f"{where}[{i}].options")):
            if not isinstance(o, dict) or (o.get("label") is None and o.get("value") is None):
                raise OntologyError(f"{where}[{i}].options[{j}] has no label or value")
            label = str(o["label"] if o.get("label") is not None else o["value"])
            value = str(o["value"] if o.get("value") is not None else label)
            options.append(OntologyOption(label, value, o.get("featureSchemaId"), _questions(
                o.get("options"), f"{where}[{i}].options[{j}].options")))
        out.append(OntologyClassification(str(name),
                                          LABELBOX_QUESTION_KINDS.get(ctype, "other"), ctype,
                                          tuple(options), c.get("featureSchemaId")))
    return tuple(out)


def load_ontology(path: Path | str) -> Ontology:
    """A Labelbox normalized ontology JSON file (``project.ontology().normalized``)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise OntologyError(f"{path}: cannot read ontology: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise OntologyError(f"{path}: cannot read ontology: not JSON: {exc}") from None
    return Ontology.from_normalized(raw, str(path))


# ===== remote sources ========================================================================

def ontology_from_labelbox(settings: Settings) -> Ontology:
    """The project's ontology through the labelbox SDK (``project.ontology().normalized``)."""
    from labelbridge.labelbox.gateway import LabelboxGateway
    from labelbridge.model.sink import TransientError

    if not (settings.labelbox_api_key and settings.labelbox_project_id):
        raise SourceError("not-configured", _NO_ONTOLOGY)
    try:
        gateway = LabelboxGateway(settings.labelbox_api_key.get_secret_value(),
                                  settings.labelbox_project_id,
                                  endpoint=settings.labelbox_endpoint,
                                  rest_endpoint=settings.labelbox_rest_endpoint,
                                  app_url=settings.labelbox_app_url)
        normalized = gateway.ontology()
    except TransientError as exc:
        raise SourceError("unreachable", f"Labelbox is unreachable: {_reason(exc)} (endpoint "
                          f"{settings.labelbox_endpoint})") from None
    except Exception as exc:  # PermanentError and anything the SDK raises at construction
        raise SourceError("remote-error", f"Labelbox could not read project "
                          f"'{settings.labelbox_project_id}': {_reason(exc)}") from None
    if isinstance(normalized, str):
        try:
            normalized = json.loads(normalized)
        except ValueError:
            pass
    return Ontology.from_normalized(normalized or {}, f"Labelbox project "
                                    f"'{settings.labelbox_project_id}'")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a network failure, e.g. ``NewConnectionError: ... Connection
    refused`` rather than three nested wrappers repeating it."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = next((c for c in (getattr(exc, "cause", None), getattr(exc, "reason", None),
                                  exc.__cause__, exc.args[0] if exc.args else None)
                      if isinstance(c, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return f"{exc.__class__.__name__}: {exc}"


def label_config_from_label_studio(url: str, api_key: str, project_id: int,
                                   timeout: float = DEFAULT_TIMEOUT) -> str:
    """The project's label config through label-studio-sdk."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    base = url.rstrip("/")
    try:
        ls = LabelStudio(base_url=base, api_key=api_key, timeout=timeout)
        project = ls.projects.get(id=project_id, request_options={"max_retries": 0})
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, (str, dict)) else ""
        raise SourceError("remote-error", f"Label Studio at {base} answered {exc.status_code}: "
                          f"{body}") from None
    except Exception as exc:
        raise SourceError("unreachable", f"Label Studio at {base} is unreachable: "
                          f"{_reason(exc)}") from None
    config = getattr(project, "label_config", None)
    if not config:
        raise SourceError("unreadable", f"Label Studio project {project_id} at {base} has no "
                          "label config")
    return str(config)


# ===== the checks ============================================================================

_KIND_PHRASE = {"radio": "radio (one answer)", "checklist": "checklist (multiple answers)",
                "text": "text"}
_MERGED_TOOLS = {"rectanglelabels": "Rectangle", "polygonlabels": "Polygon",
                 "keypointlabels": "KeyPoint"}
# Label Studio kinds held by a Labelbox tool of another kind: video boxes are rectangle tools.
_LB_KIND = {"videobox": "bbox"}


@dataclass(frozen=True, slots=True)
class _Place:
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

    def under(self, question: str, option: str, ls_parent: tuple[str, str] | None) -> _Place:
        return _Place(self.tool, (*self.chain, (question, option)), ls_parent)


class _Checker:
    def __init__(self, mapping: Mapping, ontology: Ontology) -> None:
        self.m = mapping
        self.o = ontology
        self.findings: list[Finding] = []
        self.used_labels: set[tuple[str, str | None, str]] = set()    # (control, label, kind)
        # control -> the Labelbox questions that resolved to it (and whether kinds compare)
        self.matched: dict[str, list[tuple[OntologyClassification, _Place, bool]]] = {}
        self.explained: set[tuple[str, bool]] = set()   # (folded name, per_region) reported above
        self.places: dict[str, list[tuple[OntologyClassification, _Place]]] = {}
        for f in ontology.objects:
            self._collect(f.classifications, _Place(tool=f.name))
        self._collect(ontology.classifications, _Place())

    def _collect(self, questions: tuple[OntologyClassification, ...], place: _Place) -> None:
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

    # ----- run ----------------------------------------------------------------------------
    def run(self) -> list[Finding]:
        for problem in self.m.problems:
            self.error("mapping-problem", problem)
        for f in self.o.objects:
            self.lb_object(f)
        for c in self.o.classifications:
            self.lb_question(c, _Place())
        self.relationships()
        for o in self.m.objects:
            self.ls_label(o)
        for t in self.m.classifications:
            self.ls_control(t)
        self.ls_parents()
        self.ls_unsupported()
        seen: set[Finding] = set()
        out = []
        for f in self.findings:
            if f not in seen:
                seen.add(f)
                out.append(f)
        return out

    # ----- Labelbox -> Label Studio -------------------------------------------------------
    def lb_object(self, f: ObjectFeature) -> None:
        label = f"Labelbox tool '{f.name}' ({f.tool if f.kind == 'other' else f.kind})"
        if f.kind in ("polyline", "mask", "other"):
            self.warn("unsupported", {
                "polyline": f"{label} cannot be shown in Label Studio: it has no image "
                            "polyline tool",
                "mask": f"{label} is not supported yet: masks are neither predicted nor "
                        "imported",
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
            self.lb_question(c, _Place(tool=f.name))

    def lb_question(self, c: OntologyClassification, place: _Place) -> None:
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

    # ----- Label Studio -> Labelbox -------------------------------------------------------
    def ls_label(self, o: ObjectTarget) -> None:
        if o.label is None and not o.labelbox:
            self.error("ls-unmapped-control", f"Label Studio control '{o.control}' "
                       f"({self.ls_desc(o)}) has no Labelbox tool: name one for it in the "
                       "mapping file")
            return
        hit = self.m.object_from_ls(o.control, o.label, o.kind) or o
        folded = hit.labelbox.casefold()
        tools = [f for f in self.o.objects if f.name.casefold() == folded]
        same = [f for f in tools if f.kind == _LB_KIND.get(o.kind, o.kind)]
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
                   questions: list[tuple[OntologyClassification, _Place]]) -> None:
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


def check(mapping: Mapping, ontology: Ontology) -> list[Finding]:
    """Every way ``mapping`` (label config + mapping file) and ``ontology`` do not fit."""
    return _Checker(mapping, ontology).run()


# ===== loading + checking ====================================================================

_NO_CONFIG = ("no Label Studio label config: pass --label-config PATH or set "
              "LABELBRIDGE_LABEL_CONFIG, or set LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY and "
              "LABEL_STUDIO_PROJECT_ID")
_NO_ONTOLOGY = ("no Labelbox ontology: pass --ontology PATH or set LABELBRIDGE_ONTOLOGY, or "
                "set LABELBOX_API_KEY and LABELBOX_PROJECT_ID")


class _StillRunning(Exception):
    pass


def _in_background(fn: Callable[[], Any]) -> Callable[[float], Any]:
    """Start ``fn`` in a daemon thread (a hung SDK call never blocks exit); return a waiter."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiter
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="labelbridge-doctor-fetch")
    thread.start()

    def wait(timeout: float) -> Any:
        thread.join(max(timeout, 0.0))
        if thread.is_alive():
            raise _StillRunning
        if "error" in box:
            raise box["error"]
        return box["value"]

    return wait


def run_checks(settings: Settings, label_config_path: Path | None = None,
               ontology_path: Path | None = None, mapping_path: Path | None = None,
               ls_project: int | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Load the label config, the ontology and the mapping file, then ``check`` them.

    Precedence, for each input: the explicit argument, then the settings' file
    (LABELBRIDGE_LABEL_CONFIG / LABELBRIDGE_ONTOLOGY / LABELBRIDGE_MAPPING), then the remote
    service (Label Studio: LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY + LABEL_STUDIO_PROJECT_ID;
    Labelbox: LABELBOX_API_KEY + LABELBOX_PROJECT_ID). ``ls_project`` is an explicit request for
    that Label Studio project: it beats LABELBRIDGE_LABEL_CONFIG, not ``label_config_path``.
    The ontology's names are passed to ``Mapping`` as ``labelbox_names``, as the server does
    with the names it knows. Both remote calls run concurrently and give up after
    ``timeout`` seconds. What cannot be loaded becomes an error finding naming what to set.
    """
    report = Report()
    add = report.findings.append
    deadline = time.monotonic() + timeout

    # -- where each input comes from; remote fetches start at once, in parallel
    config_wait: Callable[[float], Any] | None = None
    config_text: str | None = None
    config_where = ""
    ls_url = settings.label_studio_url
    ls_key = settings.label_studio_api_key.get_secret_value() \
        if settings.label_studio_api_key else None
    if label_config_path is None and ls_project is None and settings.label_config is not None:
        label_config_path = settings.label_config
    if label_config_path is not None:
        config_where = str(label_config_path)
        try:
            config_text = Path(label_config_path).read_text(encoding="utf-8")
        except OSError as exc:
            add(Finding("error", "unreadable", f"{label_config_path}: cannot read label config: "
                        f"{exc.strerror or exc}"))
    else:
        project = ls_project or settings.label_studio_project_id
        if ls_url and ls_key and project:
            config_where = f"Label Studio project {project} at {ls_url.rstrip('/')}"
            config_wait = _in_background(lambda: label_config_from_label_studio(
                ls_url, ls_key, int(project), timeout))
        elif ls_project is not None:
            add(Finding("error", "not-configured", "no Label Studio label config: --ls-project "
                        "needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"))
        elif ls_url and not project:
            add(Finding("error", "not-configured", "no Label Studio label config: "
                        "LABEL_STUDIO_URL is set but LABEL_STUDIO_PROJECT_ID is not (or pass "
                        "--ls-project ID, or --label-config PATH)"))
        else:
            add(Finding("error", "not-configured", _NO_CONFIG))
    report.sources["label_config"] = config_where or "none"

    ontology: Ontology | None = None
    ontology_wait: Callable[[float], Any] | None = None
    ontology_path = ontology_path or settings.ontology
    if ontology_path is not None:
        report.sources["ontology"] = str(ontology_path)
        try:
            ontology = load_ontology(ontology_path)
        except SourceError as exc:
            add(Finding("error", exc.code, str(exc)))
    elif settings.labelbox_api_key and settings.labelbox_project_id:
        report.sources["ontology"] = f"Labelbox project {settings.labelbox_project_id}"
        ontology_wait = _in_background(lambda: ontology_from_labelbox(settings))
    else:
        report.sources["ontology"] = "none"
        add(Finding("error", "not-configured", _NO_ONTOLOGY))

    overrides: Overrides | None = None
    mapping_path = mapping_path or settings.mapping
    report.sources["mapping"] = str(mapping_path) if mapping_path else "none"
    try:
        overrides = Overrides.load(mapping_path)
    except MappingError as exc:
        add(Finding("error", "unreadable", str(exc)))

    # -- wait for the remote ones
    def outcome(wait: Callable[[float], Any], who: str, where: str = "") -> Any:
        try:
            return wait(deadline - time.monotonic())
        except _StillRunning:
            add(Finding("error", "unreachable", f"{who} is unreachable: no answer within "
                        f"{timeout:g} s{where}"))
        except SourceError as exc:
            add(Finding("error", exc.code, str(exc)))
        except Exception as exc:  # a bug or an SDK surprise: still a finding, not a crash
            add(Finding("error", "remote-error", f"{who}: {exc.__class__.__name__}: {exc}"))
        return None

    if config_wait is not None:
        config_text = outcome(config_wait, f"Label Studio at {(ls_url or '').rstrip('/')}")
    if ontology_wait is not None:
        ontology = outcome(ontology_wait, "Labelbox",
                           f" (endpoint {settings.labelbox_endpoint})")

    # -- check
    if config_text is None or overrides is None:
        return report
    try:
        mapping = Mapping(config_text, overrides, ontology.names() if ontology else ())
    except MappingError as exc:
        add(Finding("error", "unreadable", f"{config_where}: {exc}"))
        return report
    if ontology is None:
        report.findings.extend(Finding("error", "mapping-problem", p) for p in mapping.problems)
        return report
    report.findings.extend(check(mapping, ontology))
    return report


def sources_configured(settings: Settings) -> bool:
    """Whether the settings name both a label config and an ontology source (server start)."""
    config = settings.label_config is not None or bool(
        settings.label_studio_url and settings.label_studio_api_key
        and settings.label_studio_project_id)
    ontology = settings.ontology is not None or bool(
        settings.labelbox_api_key and settings.labelbox_project_id)
    return config and ontology


def log_report(report: Report, logger: logging.Logger) -> None:
    """What the server logs at start: every finding at warning level, or one line when fine."""
    for f in report.findings:
        logger.warning("doctor: %s: %s [%s]", f.severity, f.message, f.code)
    if report.findings:
        logger.warning("doctor: %d errors, %d warnings between the label config (%s) and the "
                       "Labelbox ontology (%s); `labelbridge doctor` shows them again",
                       len(report.errors), len(report.warnings),
                       report.sources.get("label_config"), report.sources.get("ontology"))
    else:
        logger.info("doctor: the label config (%s) and the Labelbox ontology (%s) map fully",
                    report.sources.get("label_config"), report.sources.get("ontology"))
