"""The Labelbox ontology as labelbridge reads it: features (tools, relationships), their
classifications and options, with Labelbox's tool and question types mapped to our kinds.

Parsed from the ontology's ``normalized`` JSON (``project.ontology().normalized``, the SDK's
``OntologyBuilder.asdict()``, or a file of either, also wrapped as ``{"normalized": ...}``).
A malformed tree raises ``OntologyError`` naming the place, e.g.
``tools[3].classifications[0].options[2] has no label or value``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


class OntologyError(ValueError):
    """The ontology cannot be read or is not a Labelbox ontology; the message says where."""


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
        """Every feature and option name, for ``Mapping(labelbox_names=...)`` (which resolves
        case variants by its own rule, whatever the order)."""
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
