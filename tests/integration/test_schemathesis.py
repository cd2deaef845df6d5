"""Schemathesis against our OpenAPI spec: requests generated from the spec of every operation
(a few examples each), sent with a tenant's key, must get no 5xx and answers as the spec
documents them (status, content type, body schema). Each operation gets EXAMPLES valid and
EXAMPLES invalid requests, the same ones every run (derandomized), and EXAMPLES valid ones with
a NUL in every string and every instant past year 9999 (`poison`), which must get no 5xx
either: 30-60 s in all.

It runs against an API process of its own (tests/integration/api_process.py) whose
`?wait=true` gives up after 0.2 s, so a generated wait on a command the wallet agent refuses
does not cost 5 s, and with no rate limit. Generated `customer_id`s (path and body) are replaced
by the tenant's own, so the operations are exercised past the 403 that a random tenant gets
(the isolation matrix, test_tenant_isolation.py, covers that 403). The schema registry routes
are left out: they are Confluent's protocol, outside API keys (writes take the operator
credential) and global, and generated writes would change the stack's registered schemas for
every other test.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.api_process import api_process
from tests.integration.support import new_tenant

REGISTRY = r"^/(subjects|schemas|compatibility|config|mode)\b"
EXAMPLES = 6
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed_api(settings, tmp_path_factory):
    log = tmp_path_factory.mktemp("schemathesis") / "api.log"
    with api_process(log, CREDITS_WAIT_TIMEOUT_S="0.2", API_RATE_LIMIT_PER_S="0") as url:
        yield url


@pytest.fixture(scope="module")
def fuzz_tenant(settings):
    return new_tenant(settings)


def test_the_api_answers_as_its_spec_says(fuzzed_api, fuzz_tenant):
    schema = schemathesis.openapi.from_url(f"{fuzzed_api}/openapi.json").exclude(path_regex=REGISTRY)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, [op.label for op in operations]
    failures = []
    for operation in operations:
        for mode, poisoned in ((GenerationMode.POSITIVE, False), (GenerationMode.NEGATIVE, False),
                               (GenerationMode.POSITIVE, True)):
            try:
                exercise(operation, mode, fuzzed_api, fuzz_tenant, poisoned)
            except Unsatisfiable:
                pass  # nothing of this operation to make invalid (no parameters, no body)
            except (Exception, FailureGroup) as exc:  # noqa: BLE001 - every operation's failures are reported
                failures.append(f"{operation.label} ({mode.value}{', poisoned' if poisoned else ''}): {exc}"[:3000])
    assert not failures, "\n\n".join(failures)


def poison(value):
    """Every string of a generated value with what no store can hold appended: a NUL, and an
    instant's year pushed past 9999 (schemas/storable.py). The API must refuse, never fail."""
    if isinstance(value, str):
        if len(value) >= 20 and value[4] == "-" and value[10] == "T":  # an RFC 3339 instant
            return "9999-12-31T23:59:59-01:00"
        return value + "\x00"
    if isinstance(value, dict):
        return {poison(k): poison(v) for k, v in value.items()}
    if isinstance(value, list):
        return [poison(v) for v in value]
    return value


def exercise(operation, mode: GenerationMode, url: str, tenant, poisoned: bool = False) -> None:
    """A few generated requests (pytest's own schemathesis integration does not support pytest 9 yet)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def send(case):
        if poisoned:
            case.body = poison(case.body) if isinstance(case.body, (dict, list)) else case.body
            case.query = poison(case.query) if case.query else case.query
        if case.path_parameters and "customer_id" in case.path_parameters:
            case.path_parameters["customer_id"] = tenant.customer_id
        if isinstance(case.body, dict) and "customer_id" in case.body:
            case.body["customer_id"] = tenant.customer_id
        case.call_and_validate(base_url=url, headers={"X-OM-Api-Key": tenant.api_key},
                               checks=[not_a_server_error] if poisoned else CHECKS, timeout=30)

    send()
