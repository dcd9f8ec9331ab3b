"""Neutral regions <-> Label Studio result JSON, driven by the project's label config.

``writer`` (Labelbox -> Label Studio) and ``reader`` (Label Studio -> Labelbox) dispatch region
geometry through one table, ``kinds.KINDS`` (a ``ResultKind`` per neutral shape kind: its result
types, label key and value codec); ``check`` validates predictions against the label config with
``LabelInterface``'s exact verdicts, from a table compiled once per config.
"""

from labelbridge.labelstudio.results.check import PredictionCheck
from labelbridge.labelstudio.results.reader import ResultReader
from labelbridge.labelstudio.results.writer import RESULTS_VERSION, ResultWriter, prediction_score

__all__ = ["RESULTS_VERSION", "PredictionCheck", "ResultReader", "ResultWriter",
           "prediction_score"]
