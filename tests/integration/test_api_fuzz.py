"""Schemathesis against the running API (real broker behind it): no input gets a 5xx, every status code and
content type that comes back is the one /openapi.json declares, and 405s name the allowed methods."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    status_code_conformance,
)

from pipeline.api.server import bound_port, start_in_thread, stop
from pipeline.testing.stack import Stack
from tests.e2e.apps import app

pytestmark = pytest.mark.integration
EVENT_KEY, SIGNING_KEY = "fuzz-event-key", "fuzz-signing-key"


@pytest.fixture(scope="module")
def api_schema(kafka_bootstrap: str) -> Iterator[schemathesis.BaseSchema]:
    with Stack(app, kafka_bootstrap, services=()) as stack:
        api_settings = stack.settings.model_copy(update={"event_key": EVENT_KEY, "signing_key": SIGNING_KEY})
        server, thread = start_in_thread(api_settings, "127.0.0.1", 0, wait_ready=True, run_wait_seconds=0.0)
        try:
            yield schemathesis.openapi.from_url(f"http://127.0.0.1:{bound_port(server)}/openapi.json")
        finally:
            stop(server, thread)


def test_fuzzed_requests_get_declared_answers_and_never_a_5xx(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:  # each operation its own hypothesis run, so a failure names it
        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            if "event_key" in (case.path_parameters or {}):
                case.path_parameters["event_key"] = EVENT_KEY  # past the key check: the bodies get fuzzed
            case.call_and_validate(headers={"Authorization": f"Bearer {SIGNING_KEY}"},
                                   checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                           allow_header_conformance])

        check()
