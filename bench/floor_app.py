"""The floor for ``/predict``: a minimal FastAPI ML backend whose model does nothing.

It pays what any Python ML backend pays on this stack (uvicorn, Starlette routing, reading and
parsing the JSON body, writing a JSON answer) and nothing else: one empty prediction per task.
Served by uvicorn with the same settings labelbridge uses (``bench/predict.py`` starts it).
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status":"UP","model_class":"NoOp"}', media_type="application/json")


@app.post("/predict")
async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    results = [{"result": []} for _ in body["tasks"]]
    return Response(orjson.dumps({"results": results}), media_type="application/json")
