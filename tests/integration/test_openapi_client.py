"""docs/openapi.json is usable by the tools users point at it: openapi-python-client generates a
Python client from it, and that client rates an event against the running API.

The generator drops a response it cannot model (and says so in a warning): any warning fails the
test, so the spec stays one a client can be generated from whole."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api import openapi_spec

PACKAGE = "om_generated_client"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory):
    """The generated package, importable for the module's tests."""
    out = tmp_path_factory.mktemp("openapi_client")
    bin_dir = Path(sys.executable).parent  # the generator runs ruff, a dependency of its own, from PATH
    generated = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(openapi_spec.SPEC_PATH), "--meta", "none",
         "--output-path", str(out / PACKAGE)],
        capture_output=True, text=True, timeout=180, cwd=out,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output[-4000:]
    assert "Warning(s) encountered" not in output, f"openapi-python-client could not model part of the spec:\n{output[-4000:]}"
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_the_generated_client_rates_an_event(client_package, settings, tenant):
    rating = importlib.import_module(f"{PACKAGE}.api.rating.calculate_v1_rating_calculate_post")
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.CalculateV1RatingCalculatePostRatingIn.from_dict(
        {"provider": "openai", "model": "gpt-4-turbo", "input_tokens": 1000, "output_tokens": 500})
    with client_package.AuthenticatedClient(base_url=settings.api_url, token=tenant.api_key) as client:
        answer = rating.sync_detailed(client=client, body=body)
    assert answer.status_code == 200, answer.content
    rated = answer.parsed
    assert isinstance(rated, models.CalculateV1RatingCalculatePostRatingOut), rated
    # the default burn table: gpt-4-turbo's provider price ($0.025) + 20%, in credits at $0.01
    assert (rated.credits_, rated.usd_cost, rated.burn_table_id) == ("3.000000000000", "0.025000000000", "default")


def test_the_generated_client_parses_a_refusal(client_package, settings):
    rating = importlib.import_module(f"{PACKAGE}.api.rating.calculate_v1_rating_calculate_post")
    models = importlib.import_module(f"{PACKAGE}.models")
    body = models.CalculateV1RatingCalculatePostRatingIn.from_dict(
        {"provider": "openai", "model": "gpt-4-turbo", "input_tokens": 1, "output_tokens": 1})
    with client_package.AuthenticatedClient(base_url=settings.api_url, token="om_not_a_key") as client:
        answer = rating.sync_detailed(client=client, body=body)
    assert answer.status_code == 401
    assert isinstance(answer.parsed, models.CalculateV1RatingCalculatePostResponse401), answer.parsed
    assert answer.parsed.error.code == "invalid_api_key", answer.content
