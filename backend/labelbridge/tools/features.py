"""The project's Labelbox features (exact names, schema ids) for naming features in NDJSON.

Read from the ontology: a normalized ontology JSON file, or the project's ontology through the
SDK (read once per process, on first use, and kept). The ontology is parsed by ``doctor``'s
reader today (``load_ontology`` / ``ontology_from_labelbox``); that parser is moving to
``labelbox/ontology.py``, and these two calls move with it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from labelbridge.model.features import FeatureTable, Path as FeaturePath
from labelbridge.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER = 300.0  # seconds before an unreadable remote ontology is tried again


class FeatureSourceError(RuntimeError):
    """The ontology could not be read; the message says where and why."""


def _questions(table: FeatureTable, parent: FeaturePath, questions: Iterable[Any]) -> None:
    for q in questions:
        here = parent + (q.name,)
        table.add(here, q.name, q.schema_id)
        for o in q.options:
            table.add(here + (o.name,), o.name, o.schema_id)
            _questions(table, here + (o.name,), o.classifications)


def table_from_ontology(ontology: Any) -> FeatureTable:
    """A ``FeatureTable`` of a parsed ontology (``doctor.Ontology``)."""
    table = FeatureTable()
    for f in ontology.objects:
        table.add(("object", f.name), f.name, f.schema_id)
        _questions(table, ("object", f.name), f.classifications)
    for r in ontology.relationships:
        table.add(("relationship", r.name), r.name, r.schema_id)
    _questions(table, ("classification",), ontology.classifications)
    return table


def ontology_features(path: Path | None) -> FeatureTable:
    """The features of an ontology file (an empty table without one)."""
    if path is None:
        return FeatureTable()
    from labelbridge.labelbox.ontology import OntologyError, load_ontology

    try:
        return table_from_ontology(load_ontology(path))
    except OntologyError as exc:
        raise FeatureSourceError(str(exc)) from None


class ProjectFeatures:
    """The features of ``LABELBRIDGE_ONTOLOGY``, else of the Labelbox project's ontology through
    the SDK; read on first use and kept (an unreadable remote ontology is retried later)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._table: FeatureTable | None = None
        self._failed_at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> FeatureTable:
        with self._lock:
            if self._table is None and time.monotonic() - self._failed_at > RETRY_AFTER:
                try:
                    self._table = self._read()
                except (FeatureSourceError, OSError) as exc:
                    self._failed_at = time.monotonic()
                    log.warning("Labelbox ontology unreadable, features are named as the "
                                "mapping spells them: %s", exc)
            return self._table if self._table is not None else FeatureTable()

    def _read(self) -> FeatureTable:
        if self.settings.ontology is not None:
            return ontology_features(self.settings.ontology)
        if not (self.settings.labelbox_api_key and self.settings.labelbox_project_id):
            return FeatureTable()
        from labelbridge.tools.doctor.findings import SourceError
        from labelbridge.tools.doctor.sources import ontology_from_labelbox

        try:
            return table_from_ontology(ontology_from_labelbox(self.settings))
        except SourceError as exc:
            raise FeatureSourceError(str(exc)) from None
