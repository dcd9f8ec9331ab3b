"""The Labelbox features a project knows, by their place in the ontology: exact names and schema ids.

A feature's place is its path of names: ``("object", "Car")``, ``("object", "Car", "occluded")``,
``("object", "Car", "occluded", "yes")``; global questions start with ``"classification"``,
relationships with ``"relationship"``. Labelbox gives a nested question its own schema id under
each tool, so a name alone is not enough. Lookups are exact, then case-insensitive (unique
matches only). Filled from the ontology (file or SDK), read by the Labelbox adapter when it
names features in NDJSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FeatureRef:
    name: str                    # Labelbox's exact spelling
    schema_id: str | None = None


@dataclass
class FeatureTable:
    exact: dict[Path, FeatureRef] = field(default_factory=dict)
    _folded: dict[Path, FeatureRef | None] = field(default_factory=dict)

    def add(self, path: Path, name: str, schema_id: str | None = None) -> None:
        ref = FeatureRef(name, schema_id or None)
        self.exact[path] = ref
        key = tuple(p.casefold() for p in path)
        self._folded[key] = ref if key not in self._folded or self._folded[key] == ref else None

    def find(self, path: Path) -> FeatureRef | None:
        hit = self.exact.get(path)
        if hit is None:
            hit = self._folded.get(tuple(p.casefold() for p in path))
        return hit

    def naming(self, path: Path, name: str, schema_id: str | None = None
               ) -> tuple[str | None, str]:
        """How a feature is named in NDJSON: (its schema id, when given or known here, else
        None: then by name; Labelbox's exact spelling of ``name``, the path of what is nested
        under it)."""
        ref = self.find(path)
        if ref is None:
            return schema_id, name
        return schema_id or ref.schema_id, ref.name

    def names(self) -> list[str]:
        """Every exact name, sorted (for ``Mapping(labelbox_names=...)``, where order does not
        matter)."""
        return sorted({ref.name for ref in self.exact.values()})

    def __len__(self) -> int:
        return len(self.exact)
