"""The OpenAPI document is valid (a real validator), and a property-based fuzzer driven by it finds nothing:
no server error, every response in its declared schema, every invalid input refused with a 4xx naming the error.

The fuzzer (schemathesis) talks to a real daemon process over loopback, with a fixed seed and a bounded number of
examples per operation, so a failure reproduces.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from dms import __version__
from dms.api.openapi import build_spec
from dms.api.server import BASE, ENDPOINTS
from tests.conftest import PAYOUT
from tests.procs import DmsProcess, post

SPEC_PATH = "/api/v1/openapi.json"
EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DmsProcess]:
    d = DmsProcess(tmp_path_factory.mktemp("openapi"), "fuzzed").start()
    # Onboarded, so that the onboarding views answer with their documented shapes (not only 409).
    m = d.get("/api/v1/onboarding/provisioned")
    post(
        d,
        "/onboarding/onboard",
        {"memory": m["memory"] // 2, "cpu": m["cpu"] // 2, "channel": "nunet-test", "payment_addr": PAYOUT},
    )
    yield d
    d.stop()


@pytest.fixture(scope="module")
def spec(api: DmsProcess) -> dict[str, Any]:
    doc: dict[str, Any] = api.get(SPEC_PATH)
    return doc


def test_the_document_validates_as_openapi(spec: dict[str, Any]) -> None:
    validate(spec)


def test_every_templated_path_declares_its_parameters(spec: dict[str, Any]) -> None:
    templated = [path for path in spec["paths"] if "{" in path]
    assert templated, "the API has templated paths (e.g. /run/jobs/{job_id})"
    for path in templated:
        for method, op in spec["paths"][path].items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, (method, path)


# The document as the daemon builds it, known at collection time so that each operation is a test of its own.
SCHEMA = schemathesis.openapi.from_dict(build_spec(ENDPOINTS, BASE, __version__))
OPERATIONS: dict[str, Any] = {}
for result in SCHEMA.get_all_operations():
    assert isinstance(result, Ok), f"the document has an invalid operation: {result.err()}"
    OPERATIONS[result.ok().label] = result.ok()


def _can_be_invalid(definition: dict[str, Any]) -> bool:
    """Whether any input of an operation can be malformed (a string path or query parameter cannot)."""
    params = definition.get("parameters", [])
    return "requestBody" in definition or any(p["schema"].get("type") != "string" for p in params)


RUNS = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, GenerationMode.NEGATIVE)
    for label in sorted(OPERATIONS)
    if _can_be_invalid(OPERATIONS[label].definition.raw)
]


def test_the_daemon_serves_the_document_the_fuzzer_reads(spec: dict[str, Any]) -> None:
    assert spec == json.loads(json.dumps(SCHEMA.raw_schema))


def errors_carry_error(ctx: Any, response: Any, case: Case[Any]) -> bool:
    """Every 4xx and 5xx answer is the one error shape: a JSON object with `error`."""
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert isinstance(body, dict) and "error" in body, f"{response.status_code} without `error`: {body!r}"
    return True


def not_a_server_error(ctx: Any, response: Any, case: Case[Any]) -> bool:
    """No 5xx, except one the operation declares as its designed answer (501: a NuNet route dms does not offer)."""
    declared = str(response.status_code) in case.operation.definition.raw["responses"]
    assert response.status_code < 500 or declared, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    return True


CHECKS = [not_a_server_error, errors_carry_error, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{label}-{mode.value}" for label, mode in RUNS])
def test_fuzzed_requests_get_no_server_error_and_documented_answers(
    api: DmsProcess, label: str, mode: GenerationMode
) -> None:
    """Valid and invalid inputs alike: no 5xx, answers in their declared schema; invalid inputs get a 4xx."""
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # a fixed seed: the same examples every run
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case[Any]) -> None:
        case.call_and_validate(base_url=api.url, checks=checks, timeout=30)

    fuzz()


def test_the_fuzzed_daemon_still_serves(api: DmsProcess) -> None:
    with urllib.request.urlopen(api.url + "/api/v1/onboarding/provisioned", timeout=10) as r:
        assert json.load(r)["total_cores"] >= 1
