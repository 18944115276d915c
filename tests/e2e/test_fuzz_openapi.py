"""Fuzz every HTTP endpoint in the OpenAPI schema the app publishes (schemathesis, on hypothesis):
inputs that fit the schema and inputs that break it. No answer is a 5xx, and a refused request
changes nothing in the database."""

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import USERS

EXAMPLES = 30  # per endpoint and mode: finds the edge cases in seconds, bounded on a 2-core machine
NOT_FUZZED = {("POST", "/api/align/run"),  # starts a real training round; test_admin_access checks its guard
              ("POST", "/api/align/worker/rounds")}  # takes the round lock for a (made-up) remote worker
CHEAP_GENERATION = {"max_tokens": 4, "n": 2}  # generated chat requests stay fast on a CPU engine


def published_schema(app_server) -> schemathesis.schemas.BaseSchema:
    raw = httpx.get(app_server.url + "/api/openapi.json").json()
    narrow_chat(raw["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    return schemathesis.openapi.from_dict(raw)


def narrow_chat(chat: dict) -> None:
    """The published chat schema is OpenAI's permissive shape; narrowed here to requests that must
    succeed (a user message last, not blank, no unknown fields, the default model) and stay cheap,
    so that 'positive' cases reach the engine and the store, and 'negative' ones break exactly these rules."""
    for field, most in CHEAP_GENERATION.items():
        chat["properties"][field]["maximum"] = most
    chat["properties"]["model"] = {"enum": ["default"]}
    message = chat["properties"]["messages"]["items"]
    message["properties"]["role"] = {"enum": ["user"]}
    message["properties"]["content"]["pattern"] = r"\S"
    chat["additionalProperties"] = message["additionalProperties"] = False


def operations(schema):
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in NOT_FUZZED:
            yield operation


def fuzz(operation, mode: GenerationMode, app_server) -> Counter:
    """Send up to EXAMPLES generated requests to one operation; returns how often each status came back."""
    statuses = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def one_request(case):
        before = app_server.counts()
        r = case.call(base_url=app_server.url, auth=("alice", USERS["alice"]), timeout=120)
        sent = f"{case.method} {case.formatted_path} {case.body!r:.300}"
        statuses[r.status_code] += 1
        assert r.status_code < 500, f"{sent} -> {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            assert app_server.counts() == before, f"{sent} -> {r.status_code} but rows changed"

    try:
        one_request()
    except Unsatisfiable:
        # Nothing in the schema to break (no body; a string path segment takes any string).
        assert mode is GenerationMode.NEGATIVE, operation.path
    return statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_5xx_and_refusals_write_nothing(app_server, mode):
    schema = published_schema(app_server)
    statuses = {f"{op.method.upper()} {op.path}": fuzz(op, mode, app_server) for op in operations(schema)}

    assert {"POST /v1/chat/completions", "POST /api/feedback", "POST /api/adapters/{version}/activate"} <= set(statuses)
    if mode is GenerationMode.POSITIVE:  # the fuzzer got past validation to the engine, not only 4xx
        assert statuses["POST /v1/chat/completions"][200] > 0, statuses
