"""A Labelbox ontology (``labelbox/ontology.py``) as a neutral ``FeatureTable``: every feature's
exact name and schema id by its place, for naming features in NDJSON (``ndjson.LabelWriter``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from labelbridge.labelbox.ontology import Ontology, OntologyClassification, load_ontology
from labelbridge.model.features import FeatureTable
from labelbridge.model.features import Path as FeaturePath


def _questions(table: FeatureTable, parent: FeaturePath,
               questions: Iterable[OntologyClassification]) -> None:
    for q in questions:
        here = parent + (q.name,)
        table.add(here, q.name, q.schema_id)
        for o in q.options:
            table.add(here + (o.name,), o.name, o.schema_id)
            _questions(table, here + (o.name,), o.classifications)


def feature_table(ontology: Ontology) -> FeatureTable:
    table = FeatureTable()
    for f in ontology.objects:
        table.add(("object", f.name), f.name, f.schema_id)
        _questions(table, ("object", f.name), f.classifications)
    for r in ontology.relationships:
        table.add(("relationship", r.name), r.name, r.schema_id)
    _questions(table, ("classification",), ontology.classifications)
    return table


def ontology_features(path: Path | None) -> FeatureTable:
    """The features of an ontology file (an empty table without one); ``OntologyError`` when
    the file cannot be read."""
    return feature_table(load_ontology(path)) if path is not None else FeatureTable()
