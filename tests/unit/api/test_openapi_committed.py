"""docs/openapi.json is what the app builds: the TypeScript SDK generates its types from it, so a
route changed without regenerating it would leave the SDK's types wrong."""

from __future__ import annotations

import difflib
import json

from api import openapi_spec


def test_the_committed_openapi_spec_is_what_the_app_builds():
    built = openapi_spec.spec_text()
    assert openapi_spec.SPEC_PATH.exists(), f"docs/openapi.json is missing: create it with `{openapi_spec.REGENERATE}`"
    committed = openapi_spec.SPEC_PATH.read_text(encoding="utf-8")
    if committed != built:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), built.splitlines(keepends=True), "docs/openapi.json (committed)",
            "the app's spec", n=2))[:80])
        raise AssertionError(
            f"docs/openapi.json differs from the spec the app builds; regenerate it with `{openapi_spec.REGENERATE}` "
            f"and commit it (the TypeScript SDK's types are generated from it). First differences:\n{diff}")


def test_the_spec_documents_the_sdk_routes():
    """The routes the TypeScript SDK calls, with their JSON bodies: what its generated types need."""
    paths = json.loads(openapi_spec.SPEC_PATH.read_text(encoding="utf-8"))["paths"]
    for path, method in [("/v1/events/ingest", "post"), ("/v1/entitlements/check", "post"),
                         ("/v1/rating/calculate", "post"), ("/v1/burn-tables", "post"),
                         ("/v1/credits/purchase", "post"), ("/v1/credits/grant", "post"),
                         ("/v1/credits/consume", "post"), ("/v1/customers/{customer_id}/credits", "get")]:
        operation = paths[path][method]
        if method == "post":
            assert "application/json" in operation["requestBody"]["content"], path
        assert any(status.startswith("2") and "content" in answer for status, answer in operation["responses"].items()), path


def test_write_and_check_round_trip(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(openapi_spec, "SPEC_PATH", tmp_path / "openapi.json")
    assert openapi_spec.main(["--check"]) == 1
    assert "python -m api.openapi_spec --write" in capsys.readouterr().err
    assert openapi_spec.main(["--write"]) == 0
    assert openapi_spec.main(["--check"]) == 0
    (tmp_path / "openapi.json").write_text("{}\n")
    assert openapi_spec.main(["--check"]) == 1
