"""The project's Labelbox features (exact names, schema ids), read once per process.

From ``LABELBRIDGE_ONTOLOGY`` when set, else from the Labelbox project's ontology through the
SDK (doctor's source, ``tools.doctor.sources``); an unreadable remote ontology is logged and
tried again later, and features are named as the mapping spells them meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time

from labelbridge.labelbox.features import feature_table, ontology_features
from labelbridge.labelbox.ontology import OntologyError
from labelbridge.model.features import FeatureTable
from labelbridge.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER = 300.0  # seconds before an unreadable ontology is tried again


class ProjectFeatures:
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
                except (OntologyError, RuntimeError) as exc:  # SourceError is a RuntimeError
                    self._failed_at = time.monotonic()
                    log.warning("Labelbox ontology unreadable, features are named as the "
                                "mapping spells them: %s", exc)
            return self._table if self._table is not None else FeatureTable()

    def _read(self) -> FeatureTable:
        if self.settings.ontology is not None:
            return ontology_features(self.settings.ontology)
        if not (self.settings.labelbox_api_key and self.settings.labelbox_project_id):
            return FeatureTable()
        from labelbridge.tools.doctor import ontology_from_labelbox

        return feature_table(ontology_from_labelbox(self.settings))
