"""What both framework suites send and compare: Label Studio 1.23.2's captured ML-backend
bodies (tests/fixtures/ls-captures/e2e-flow) and one JSON normal form."""

from __future__ import annotations

import json

FLOW = "e2e-flow/"
SETUP = FLOW + "ml-backend_POST-setup.json"
PREDICTS = [FLOW + name for name in (
    "ml-backend_POST-predict_dm-retrieve-predictions.json", "ml-backend_POST-predict_task-open.json",
    "ml-backend_POST-predict_test-button.json", "ml-backend_POST-predict_interactive.json")]


def canonical(value) -> bytes:
    """JSON with sorted keys and no spaces: equal bytes for equal documents."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def assert_labelbridge_results(body: dict, results: list, model_version: str) -> None:
    """What labelbridge answers for these tasks with ``captured_task_export``'s index: a
    prediction for img1 and img2 (region ids = Labelbox feature ids), nothing for the rest."""
    assert len(results) == len(body["tasks"])
    for task, result in zip(body["tasks"], results):
        if task["data"]["image"].endswith(("/img1.jpg", "/img2.jpg")):
            assert result["model_version"] == model_version
            assert result["result"][0]["id"].startswith("cfeat")
        else:
            assert result == []
