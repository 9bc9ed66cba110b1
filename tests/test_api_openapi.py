"""docs/openapi.json is the committed OpenAPI document; it must match what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from api_live import live_server
from lifeguard.api.keys import SCOPES
from lifeguard.api.serve import openapi_document
from lifeguard.settings import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def test_committed_openapi_is_current() -> None:
    committed = json.loads(DOC.read_text())
    assert committed == json.loads(json.dumps(openapi_document())), (
        "docs/openapi.json is stale: run `python -m lifeguard.api.serve docs/openapi.json`"
    )


def test_openapi_served_and_describes_auth(sqlite_settings: Settings) -> None:
    with live_server(sqlite_settings) as lv:
        served = httpx.get(lv.base_url + "/openapi.json").json()
    assert served == json.loads(json.dumps(openapi_document()))
    ops = [(p, m, op) for p, item in served["paths"].items() for m, op in item.items()]
    for path, method, op in ops:
        if path in ("/healthz", "/readyz", "/status", "/status/live"):
            assert "security" not in op
        else:
            assert op["security"] == [{"bearer": []}, {"apiKey": []}], (path, method)
            assert op["x-required-scope"] in SCOPES
        assert "application/problem+json" in op["responses"]["default"]["content"]
    assert set(served["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert (
        "multipart/form-data"
        in served["paths"]["/v1/banks/{name}/import"]["post"]["requestBody"]["content"]
    )
