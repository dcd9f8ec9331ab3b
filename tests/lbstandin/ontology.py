"""Ontology declarations for the stand-in and their Labelbox "normalized" JSON.

``Feature(name, kind, options=..., nested=...)`` declares one feature. Kinds and the Labelbox
type they become (``labelbox.schema.ontology.Tool.Type`` / ``Classification.Type`` values):

============  =====================================
kind          normalized
============  =====================================
bbox          tool "rectangle"
polygon       tool "polygon"
point         tool "point"
polyline      tool "line"
mask          tool "raster-segmentation"
ner           tool "named-entity"
relationship  tool "edge" (Labelbox keeps relationship tools in ``tools``; there is no
              top-level ``relationships`` key)
radio         classification "radio"
checklist     classification "checklist"
text          classification "text"
============  =====================================

``nested``: for a tool, the list of its per-object classifications; for radio/checklist either a
dict ``{option value: [Feature, ...]}`` or a list attached to *every* option. An option may also
be given as ``Option("rainy", nested=[...])``. Feature schema ids are deterministic
(``"c" + sha1(project id, path)[:24]``) unless ``feature_schema_id=`` is given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Union

TOOL_TYPES = {"bbox": "rectangle", "polygon": "polygon", "point": "point", "polyline": "line",
              "ner": "named-entity", "relationship": "edge", "mask": "raster-segmentation"}
CLASSIFICATION_TYPES = {"radio": "radio", "checklist": "checklist", "text": "text"}
KINDS = set(TOOL_TYPES) | set(CLASSIFICATION_TYPES)

_PALETTE = ["#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff", "#00ffff", "#ff8000",
            "#8000ff", "#0080ff", "#80ff00"]


@dataclass
class Option:
    value: str
    nested: list = field(default_factory=list)  # list[Feature] (classifications)
    label: str | None = None
    feature_schema_id: str | None = None


@dataclass
class Feature:
    name: str
    kind: str
    options: list = field(default_factory=list)  # list[str | Option]
    nested: Union[list, dict, None] = None
    feature_schema_id: str | None = None
    color: str | None = None
    required: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown feature kind {self.kind!r}; use one of {sorted(KINDS)}")
        if self.kind in ("radio", "checklist") and not self.options:
            raise ValueError(f"{self.kind} feature {self.name!r} needs options")
        if self.kind not in ("radio", "checklist") and self.options:
            raise ValueError(f"{self.kind} feature {self.name!r} cannot have options")
        if self.kind == "text" and self.nested:
            raise ValueError(f"text feature {self.name!r} cannot have nested classifications")
        if self.kind in TOOL_TYPES and isinstance(self.nested, dict):
            raise ValueError(f"tool {self.name!r}: nested must be a list of classifications")

    @property
    def is_tool(self) -> bool:
        return self.kind in TOOL_TYPES

    @classmethod
    def from_json(cls, d: dict) -> "Feature":
        """Build from the setup.json shape (see ``__main__``)."""
        def opt(o):
            if isinstance(o, str):
                return o
            return Option(o["value"], [cls.from_json(n) for n in o.get("nested", [])],
                          o.get("label"), o.get("feature_schema_id"))
        nested = d.get("nested")
        if isinstance(nested, dict):
            nested = {k: [cls.from_json(n) for n in v] for k, v in nested.items()}
        elif nested is not None:
            nested = [cls.from_json(n) for n in nested]
        return cls(d["name"], d["kind"], [opt(o) for o in d.get("options", [])], nested,
                   d.get("feature_schema_id"), d.get("color"), d.get("required", False))


def _cuid(*parts: str) -> str:
    return "c" + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:24]


class Node:
    """One resolved ontology node: a tool, a classification, or an option."""

    def __init__(self, kind: str, name: str, schema_id: str, node_id: str):
        self.kind = kind  # feature kind, or "option"
        self.name = name
        self.schema_id = schema_id
        self.node_id = node_id
        self.label = name
        self.children: list[Node] = []  # classifications (of a tool/option) or options

    def find(self, name: str | None = None, schema_id: str | None = None) -> "Node | None":
        for c in self.children:
            if schema_id is not None and c.schema_id == schema_id:
                return c
            if schema_id is None and name is not None and (c.name == name or c.label == name):
                return c
        return None

    @property
    def is_tool(self) -> bool:
        return self.kind in TOOL_TYPES


class CompiledOntology:
    """The ontology of one project: normalized JSON plus a lookup tree for validation."""

    def __init__(self, project_id: str, features: list[Feature]):
        self.project_id = project_id
        self.ontology_id = _cuid(project_id, "ontology")
        self.root = Node("root", "", "", "")
        self.normalized: dict[str, Any] = {"tools": [], "classifications": []}
        names = set()
        for i, f in enumerate(features):
            if f.name in names:
                raise ValueError(f"duplicate top-level feature name {f.name!r}")
            names.add(f.name)
            node, js = self._compile(f, (f.name,), top=True, index=i)
            self.root.children.append(node)
            (self.normalized["tools"] if f.is_tool else self.normalized["classifications"]).append(js)
        self.by_schema_id: dict[str, Node] = {}
        self._index(self.root)

    def _index(self, node: Node) -> None:
        for c in node.children:
            self.by_schema_id[c.schema_id] = c
            self._index(c)

    def _compile(self, f: Feature, path: tuple, top: bool, index: int = 0):
        sid = f.feature_schema_id or _cuid(self.project_id, "schema", *path)
        nid = _cuid(self.project_id, "node", *path)
        node = Node(f.kind, f.name, sid, nid)
        if f.is_tool:
            classes = []
            for n in f.nested or []:
                child, js = self._compile(n, path + (n.name,), top=False)
                node.children.append(child)
                classes.append(js)
            js = {"tool": TOOL_TYPES[f.kind], "name": f.name, "required": f.required,
                  "color": f.color or _PALETTE[index % len(_PALETTE)], "classifications": classes,
                  "schemaNodeId": nid, "featureSchemaId": sid, "attributes": None}
            return node, js
        options_js = []
        for pos, o in enumerate(f.options):
            o = o if isinstance(o, Option) else Option(str(o))
            nested = list(o.nested)
            if isinstance(f.nested, dict):
                nested += f.nested.get(o.value, [])
            elif f.nested:
                nested += f.nested
            opath = path + ("option:" + o.value,)
            onode = Node("option", o.value, o.feature_schema_id or _cuid(self.project_id, "schema", *opath),
                         _cuid(self.project_id, "node", *opath))
            onode.label = o.label or o.value
            ojs_children = []
            for n in nested:
                child, cjs = self._compile(n, opath + (n.name,), top=False)
                onode.children.append(child)
                ojs_children.append(cjs)
            node.children.append(onode)
            options_js.append({"schemaNodeId": onode.node_id, "featureSchemaId": onode.schema_id,
                               "label": onode.label, "value": o.value, "position": pos,
                               "options": ojs_children})
        if isinstance(f.nested, dict):
            unknown = set(f.nested) - {(o.value if isinstance(o, Option) else str(o)) for o in f.options}
            if unknown:
                raise ValueError(f"{f.name!r}: nested given for unknown options {sorted(unknown)}")
        js = {"type": CLASSIFICATION_TYPES[f.kind], "instructions": f.name, "name": f.name,
              "required": f.required, "options": options_js, "schemaNodeId": nid,
              "featureSchemaId": sid, "attributes": None}
        if top:
            js["scope"] = "global"
        return node, js

    def lookup(self, parent: Node, name: Any, schema_id: Any) -> Node | None:
        if schema_id is not None:
            node = parent.find(schema_id=schema_id)
            if node is not None and name is not None and name not in (node.name, node.label):
                return None
            return node
        return parent.find(name=name)

    @property
    def object_count(self) -> int:
        return len(self.normalized["tools"])

    @property
    def classification_count(self) -> int:
        return len(self.normalized["classifications"])
