"""What the index serves for a data row: its model version, run and compact row (for the edit
report, which compares an annotation with the prediction its task was given)."""

from __future__ import annotations

from typing import Callable

from labelbridge.predictions.live import EMPTY_MODEL_VERSION
from labelbridge.predictions.store import PredictionStore


def served_lookup(store: PredictionStore | None, model_version: str | None = None
                  ) -> Callable[[dict], tuple[str, str | None, bytes] | None]:
    """``lookup({"id": ...} or {"globalKey": ...})`` -> (model version, run id, payload)."""
    def lookup(data_row: dict) -> tuple[str, str | None, bytes] | None:
        if store is None or not store.exists():
            return None
        key, value = (("data_row_id", data_row["id"]) if data_row.get("id")
                      else ("global_key", data_row.get("globalKey")))
        if not value:
            return None
        pk = store.find(key, [value]).get(value)
        row = store.rows([pk]).get(pk) if pk is not None else None
        if row is None:
            return None
        version = model_version or store.meta().get("model_version") or EMPTY_MODEL_VERSION
        return version, row[0], row[1]
    return lookup
