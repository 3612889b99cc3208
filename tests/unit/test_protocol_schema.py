"""docs/protocol.schema.json is what ``bridge.schema`` generates, and it says what the wire does.

The checked-in file must equal the generated text (regenerate with the command the
failure names). The schema must carry the limits and defaults a third party needs,
accept what this side sends (requests, W1 replies, events) and refuse what this side
refuses (a missing ``v``, both ``result`` and ``error``, a field over its limit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ormsgpack
import pytest

from bridge.codec import encode
from bridge.messages import (
    PROTOCOL,
    ErrorInfo,
    Event,
    EvolveRequest,
    Heartbeat,
    PingRequest,
    Reply,
    RollbackRequest,
    SendRequest,
)
from bridge.schema import REGENERATE, document, text

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "protocol.schema.json"


def test_the_checked_in_schema_is_the_generated_one():
    assert CHECKED_IN.exists(), f"docs/protocol.schema.json is missing: run `{REGENERATE}`"
    assert CHECKED_IN.read_text() == text(), (
        f"docs/protocol.schema.json differs from bridge/messages.py: run `{REGENERATE}`")


def test_the_document_names_its_dialect_version_and_every_message():
    doc = document()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["protocol"] == PROTOCOL == "1.0"
    defs = doc["$defs"]
    assert {"Request", "Reply", "ErrorInfo", "Control", "Event"} <= set(defs)
    assert set(defs["Request"]["discriminator"]["mapping"]) == {
        "send", "describe", "status", "ping", "evolve", "rollback", "handovers"}
    assert set(defs["Control"]["discriminator"]["mapping"]) == {
        "ready", "heartbeat", "bye", "stop", "validate", "validated", "publish", "suspect",
        "quarantine", "attach"}


def test_the_limits_and_defaults_are_in_the_schema():
    defs = document()["$defs"]
    send, evolve = defs["SendRequest"]["properties"], defs["EvolveRequest"]["properties"]
    assert (send["id"]["minLength"], send["id"]["maxLength"]) == (1, 128)
    assert send["target"]["maxLength"] == send["selector"]["maxLength"] == 256
    assert send["author"]["anyOf"][0]["maxLength"] == 64
    assert send["args"]["type"] == "array"
    assert "default" in send["args"]  # []
    assert evolve["add"]["maxItems"] == evolve["remove"]["maxItems"] == 100
    assert evolve["who"]["maxLength"] == 128
    probation = evolve["probation"]["anyOf"][0]
    assert (probation["minimum"], probation["maximum"]) == (0, 3600)
    assert defs["RollbackRequest"]["properties"]["force"]["default"] is False
    assert defs["DescribeRequest"]["properties"]["target"]["default"] == "genesis"
    for name in ("SendRequest", "PingRequest", "Ready", "Event"):
        assert defs[name]["required"][0] == "v", name  # required on the wire, default or not
    assert defs["SendRequest"]["required"][:2] == ["v", "kind"]


# --- the schema against real messages (needs jsonschema, a test-only dependency) -----------


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    doc = document()
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


def wire(message: Any) -> Any:
    """What goes on the wire, as JSON Schema sees it (msgpack binary aside)."""
    return ormsgpack.unpackb(encode(message))


def test_what_this_side_sends_is_valid(validator):
    error = ErrorInfo(type="Busy", message="a handover runs", where="supervisor")
    for message in (
        SendRequest(id="s", target="genesis", selector="at:put:", args=[1, "x", [None]]),
        PingRequest(id="p"),
        EvolveRequest(id="e", add=["six"], probation=30, who="ops@host"),
        RollbackRequest(id="r", force=True),
        Reply(id="s", ok=True, result=None),
        Reply(id="s", ok=True, result={"a": [1, 2]}),
        Reply(id="s", ok=False, error=error),
        Reply(id="", ok=False, error=error),
        Heartbeat(incarnation="inc-1", served=3),
        Event(kind="handover.phase", ts=1.0, data={"handover": "h", "phase": "build"}),
    ):
        errors = list(validator.iter_errors(wire(message)))
        assert not errors, (message, [e.message for e in errors])


@pytest.mark.parametrize("message", [
    {"kind": "ping", "id": "p"},  # no v
    {"v": 2, "kind": "ping", "id": "p"},
    {"v": 1, "id": "p"},  # no kind: not a request, and no other message either
    {"v": 1, "kind": "ping", "id": ""},
    {"v": 1, "kind": "send", "id": "s", "target": "t" * 257, "selector": "x"},
    {"v": 1, "kind": "evolve", "id": "e", "probation": 3601},
    {"v": 1, "kind": "evolve", "id": "e", "add": ["x"] * 101},
    {"v": 1, "id": "s", "ok": True},  # an ok reply carries result (it may be null)
    {"v": 1, "id": "s", "ok": True, "result": 1, "error": None},  # the old form
    {"v": 1, "id": "s", "ok": False, "result": None,
     "error": {"type": "Busy", "message": "m", "where": "supervisor"}},
])
def test_what_this_side_refuses_is_invalid(validator, message):
    assert not validator.is_valid(message), message


def test_the_checked_in_file_is_json_with_a_trailing_newline():
    raw = CHECKED_IN.read_text()
    assert raw.endswith("}\n")
    assert json.loads(raw)["protocol"] == PROTOCOL
