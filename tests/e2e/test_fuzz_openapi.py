"""Fuzz every HTTP endpoint in the OpenAPI schema the app publishes (schemathesis, on hypothesis),
the admin and remote-trainer routes included: inputs that fit the schema and inputs that break it.
No answer is a 5xx, and a refused request changes nothing in the database."""

import os
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from storage.process import current_process
from tests.conftest import USERS

EXAMPLES = 30  # per endpoint and mode: finds the edge cases in seconds, bounded on a 2-core machine
CHEAP_GENERATION = {"max_tokens": 4, "n": 2}  # generated chat requests stay fast on a CPU engine
# Fuzzed first, while this test holds the round lock (`round_lock_held`): every generated request must
# be refused there (409) instead of starting a training round or taking the lock for a made-up worker.
LOCK_TAKERS = (("POST", "/api/align/run"), ("POST", "/api/align/worker/rounds"))

# The worker uploads its round as an uncompressed tar: generated bodies are sent as raw bytes.
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")


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
    """Every operation, the lock takers first, while the round claimed before any of them still holds the lock."""
    ops = [result.ok() for result in schema.get_all_operations()]
    return sorted(ops, key=lambda op: (op.method.upper(), op.path) not in LOCK_TAKERS)


class HeldRound:
    """A worker round held by this test process (alive while the test runs): no fuzzed request can start a
    real round or take the lock for a made-up worker. `id` claims a new one once the fuzzer has ended it
    (a fuzzed /fail or upload does), so the round routes are fuzzed against a running round too."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self._id: int | None = None

    @property
    def id(self) -> int:
        if self._id is None or self.client.get(f"/api/align/rounds/{self._id}").json()["status"] != "running":
            me = current_process()
            claimed = self.client.post("/api/align/worker/rounds",
                                       json={"host": me.host, "pid": os.getpid(), "start": me.start})
            assert claimed.status_code == 201, claimed.text
            self._id = claimed.json()["round"]["id"]
        return self._id

    def release(self) -> None:
        if self._id is not None:
            self.client.post(f"/api/align/worker/rounds/{self._id}/fail", json={"error": "fuzzing done"})


@pytest.fixture
def held_round(app_server, alice):
    held = HeldRound(alice)
    held.id  # noqa: B018 - claimed before the first fuzzed request
    yield held
    held.release()


def fuzz(operation, mode: GenerationMode, app_server, held: HeldRound) -> Counter:
    """Send up to EXAMPLES generated requests to one operation; returns how often each status came back.
    Every other request to a round's route names the running round this test holds, the rest whatever
    the fuzzer made up."""
    statuses = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def one_request(case):
        if "round_id" in (case.path_parameters or {}) and sum(statuses.values()) % 2 == 0:
            case.path_parameters["round_id"] = str(held.id)
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
def test_no_5xx_and_refusals_write_nothing(app_server, held_round, mode):
    schema = published_schema(app_server)
    statuses = {f"{op.method.upper()} {op.path}": fuzz(op, mode, app_server, held_round) for op in operations(schema)}

    assert {"POST /v1/chat/completions", "POST /api/feedback", "POST /api/adapters/{version}/activate",
            "POST /api/align/run", "POST /api/align/worker/rounds", "POST /api/align/worker/rounds/{round_id}/adapter",
            "POST /api/align/worker/rounds/{round_id}/progress", "GET /api/admin/export"} <= set(statuses)
    assert set(statuses["POST /api/align/run"]) <= {409}  # refused while the lock is held: no round started
    if mode is GenerationMode.POSITIVE:  # the fuzzer got past validation to the engine, not only 4xx
        assert statuses["POST /v1/chat/completions"][200] > 0, statuses
