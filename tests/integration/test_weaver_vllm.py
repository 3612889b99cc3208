"""The weaver's clients against the real vLLM CPU server (the session's ``vllm_server``).

The same calls the unit tests make against the fake server in
tests/unit/test_weaver_openai.py, made here through vLLM's real HTTP API:
plain chat, structured output that vLLM enforces, refusal of an unknown model,
truncation detected, and a recording that replays without the server. The tiny
model writes noise, so the schema bounds every value (enums, booleans): the
grammar then forces a short valid document whatever the weights say.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weaver import (
    Answer,
    BadAnswer,
    MindRejected,
    OpenAIClient,
    Recorder,
    ReplayBackend,
    mind_from_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"enum": ["method", "acts", "none"]},
        "approved": {"type": "boolean"},
    },
    "required": ["kind", "approved"],
    "additionalProperties": False,
}


def ask(uuid: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You judge proposals."},
        {"role": "user", "content": f"Object {uuid} does not understand #double. Judge it."},
    ]


def valid(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"kind", "approved"}
        and value["kind"] in {"method", "acts", "none"}
        and isinstance(value["approved"], bool)
    )


@pytest.fixture
def mind(vllm_server) -> OpenAIClient:
    return OpenAIClient(vllm_server.base_url, vllm_server.model, timeout=120, retries=1)


def test_lists_the_served_model(mind, vllm_server):
    assert vllm_server.model in mind.models()


def test_plain_chat(mind, vllm_server):
    answer = mind.chat(ask("3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b"), max_tokens=8)
    assert isinstance(answer, Answer)
    assert isinstance(answer.text, str)
    assert answer.model == vllm_server.model
    assert answer.structured is False
    assert answer.parsed is None
    assert 0 < answer.usage["completion_tokens"] <= 8
    assert answer.usage["prompt_tokens"] > 8
    print(f"vLLM plain chat, 8 tokens: {answer.elapsed * 1000:.0f} ms")


def test_structured_output_is_enforced_and_schema_valid(mind):
    for temperature in (0.0, 1.0):
        answer = mind.chat(ask("3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b"), schema=SCHEMA,
                           schema_name="verdict", max_tokens=64, temperature=temperature)
        assert answer.structured is True
        assert valid(answer.parsed), answer.text
        assert json.loads(answer.text) == answer.parsed
    assert mind.structured is True


def test_truncated_structured_answer_is_a_bad_answer(mind):
    with pytest.raises(BadAnswer, match="max_tokens=2") as info:
        mind.chat(ask("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"), schema=SCHEMA, max_tokens=2)
    assert isinstance(info.value.text, str)


def test_unknown_model_is_rejected_without_retry(mind, vllm_server):
    with pytest.raises(MindRejected) as info:
        mind.chat(ask("x"), model="no-such-adapter", max_tokens=4)
    assert info.value.status in (400, 404)
    assert "no-such-adapter" in str(info.value)
    assert vllm_server.base_url in str(info.value)


def test_record_then_replay_without_the_server(vllm_server, tmp_path: Path):
    log = tmp_path / "mind.jsonl"
    recorder = mind_from_env({"BATOS_MIND_URL": vllm_server.base_url,
                              "BATOS_MIND_MODEL": vllm_server.model,
                              "BATOS_MIND_RECORD": str(log), "BATOS_MIND_TIMEOUT": "120"})
    assert isinstance(recorder, Recorder)
    plain = recorder.chat(ask("3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b"), max_tokens=8)
    judged = recorder.chat(ask("3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b"), schema=SCHEMA,
                           max_tokens=64)
    assert valid(judged.parsed)
    assert len(log.read_text().splitlines()) == 2

    replay = ReplayBackend(log)
    other = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"  # another image's uuid: same request
    again = replay.chat(ask(other), max_tokens=8)
    assert (again.text, again.model) == (plain.text, vllm_server.model)
    again = replay.chat(ask(other), schema=SCHEMA, max_tokens=64)
    assert (again.parsed, again.structured) == (judged.parsed, True)
