"""The OpenAPI document: FastAPI's, plus the request models routes document without parsing
through them (``service.schemas``) and the two ways of authenticating."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from labelbridge.service.schemas import REQUEST_MODELS, ErrorResponse

REF = "#/components/schemas/{model}"
ERROR_TEXT = {400: "not JSON", 401: "not authenticated", 408: "the body came too slowly",
              413: "over a size limit", 422: "a field is wrong (named in detail.loc)",
              503: "the outbox cannot take events now (Retry-After)"}


def body(model: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": REF.format(model=model)}}}}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": ERROR_TEXT[code]} for code in codes}


def document(app: FastAPI, webhook_header: str) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(title=app.title, version=app.version, description=app.description,
                       routes=app.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, model in REQUEST_MODELS.items():
        schema = TypeAdapter(model).json_schema(ref_template=REF, by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    spec["components"]["securitySchemes"] = {
        "basic": {"type": "http", "scheme": "basic",
                  "description": "BASIC_AUTH_USER / BASIC_AUTH_PASS, when set"},
        "webhookToken": {"type": "apiKey", "in": "header", "name": webhook_header,
                         "description": "LABELBRIDGE_WEBHOOK_TOKEN, when set"}}
    for path, item in spec["paths"].items():
        for operation in item.values():
            operation["security"] = [{"webhookToken": []}] if path.startswith("/webhook") \
                else [{"basic": []}]
    app.openapi_schema = spec
    return spec
