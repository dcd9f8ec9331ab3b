"""``/openapi.json`` documents every endpoint with models that describe Label Studio's real
bodies (every captured request fits its model), behind basic auth when it is set."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from labelbridge.service import schemas
from labelbridge.service.server import create_app
from labelbridge.settings import Settings

from tests.helpers import CAPTURES, capture

AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
ENDPOINTS = {"/": {"get"}, "/health": {"get"}, "/setup": {"post"}, "/predict": {"post"},
             "/versions": {"get"}, "/webhook": {"post"}, "/metrics": {"get"},
             "/status": {"get"}, "/ready": {"get"}}


def captured(kind: str) -> list[Path]:
    return sorted(p for p in CAPTURES.rglob("*.json") if kind in p.name)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    settings = Settings(LABELBRIDGE_DATA_DIR=tmp_path_factory.mktemp("openapi"),
                        BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="s3cret",
                        LABELBRIDGE_DELIVERY_WORKER="off")
    with TestClient(create_app(settings)) as client:
        assert client.get("/openapi.json").status_code == 401
        r = client.get("/openapi.json", headers=AUTH)
        assert r.status_code == 200
        return r.json()


def test_every_endpoint_is_documented_and_nothing_else(spec):
    assert {p: set(ops) for p, ops in spec["paths"].items()} == ENDPOINTS


@pytest.mark.parametrize("path, model", [("/setup", "SetupRequest"),
                                         ("/predict", "PredictRequest"),
                                         ("/webhook", "WebhookBody")])
def test_request_bodies_reference_their_models(spec, path, model):
    body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert model in spec["components"]["schemas"]
    for code in ("400", "401", "413", "422"):
        assert code in spec["paths"][path]["post"]["responses"], (path, code)


def test_every_ref_resolves(spec):
    refs: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].rsplit("/", 1)[-1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(spec)
    assert refs and refs <= set(spec["components"]["schemas"])


def test_auth_is_documented_per_endpoint(spec):
    assert spec["paths"]["/webhook"]["post"]["security"] == [{"webhookToken": []}]
    assert spec["paths"]["/predict"]["post"]["security"] == [{"basic": []}]
    assert spec["components"]["securitySchemes"]["webhookToken"]["name"] == "X-Labelbridge-Token"


@pytest.mark.parametrize("path", captured("webhook_"), ids=lambda p: str(p.relative_to(CAPTURES)))
def test_every_captured_webhook_fits_the_model(path):
    body = capture(str(path.relative_to(CAPTURES)))
    TypeAdapter(schemas.WebhookBody).validate_python(body)


@pytest.mark.parametrize("path", captured("POST-predict"),
                         ids=lambda p: str(p.relative_to(CAPTURES)))
def test_every_captured_predict_fits_the_model(path):
    schemas.PredictRequest.model_validate(capture(str(path.relative_to(CAPTURES))))


@pytest.mark.parametrize("path", captured("POST-setup"), ids=lambda p: str(p.relative_to(CAPTURES)))
def test_every_captured_setup_fits_the_model(path):
    schemas.SetupRequest.model_validate(capture(str(path.relative_to(CAPTURES))))


def test_the_models_refuse_what_the_validators_refuse():
    body = capture("basic-auth-flow/ml-auto-webhook_ANNOTATION_CREATED.json")
    bad = dict(body, annotation=dict(body["annotation"], id=2 ** 63))
    with pytest.raises(ValueError):
        TypeAdapter(schemas.WebhookBody).validate_python(bad)
    with pytest.raises(ValueError):
        schemas.PredictRequest.model_validate({"tasks": [{"id": 1}]})
