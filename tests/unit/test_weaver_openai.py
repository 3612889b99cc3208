"""OpenAIClient's API against a fake server that speaks the OpenAI chat API.

``tests.unit.fake_openai.FakeOpenAI`` answers from a script of replies, so success,
structured output and its fallback, refusals, truncation and record/replay run without
a model; every test runs through the client's transport seam (``httpx.MockTransport``)
and over real loopback sockets. Retries, timeouts and connections are in
test_weaver_openai_transport.py. The same calls run against a real vLLM in
tests/integration/test_weaver_vllm.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.unit.fake_openai import ASK, SCHEMA, FakeOpenAI, Reply, client, completion, fake_server
from tests.unit.http_fakes import WAYS
from weaver import (
    Answer,
    BadAnswer,
    MindProtocolError,
    MindRejected,
    MindUnavailable,
    OpenAIClient,
    Recorder,
    ReplayBackend,
    ReplayMiss,
)
from weaver.openai import normalize_base_url


@pytest.fixture(params=WAYS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAI]:
    with fake_server(request.param) as server:
        yield server


def test_plain_chat_sends_the_openai_body_and_reads_the_answer(fake, monkeypatch):
    monkeypatch.setenv("TEST_WEAVER_KEY", "sekrit")
    answer = client(fake, api_key_env="TEST_WEAVER_KEY").chat(ASK, max_tokens=20, temperature=0.5)
    assert isinstance(answer, Answer)
    assert answer.text == "hello from fake"
    assert answer.parsed is None
    assert answer.structured is False
    assert answer.model == "fake-model"
    assert answer.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert answer.elapsed >= 0
    (request,) = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sekrit"
    assert request["body"] == {"model": "fake-model", "messages": ASK, "max_tokens": 20,
                               "temperature": 0.5}


def test_no_authorization_header_without_a_key(fake, monkeypatch):
    monkeypatch.delenv("BATOS_MIND_API_KEY", raising=False)
    client(fake).chat(ASK)
    assert "Authorization" not in fake.requests[0]["headers"]


def test_model_argument_selects_an_adapter(fake):
    client(fake).chat(ASK, model="fake-adapter")
    assert fake.posts()[0]["model"] == "fake-adapter"


@pytest.mark.parametrize("given", [
    "http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/chat/completions",
])
def test_base_url_is_normalized(given):
    assert normalize_base_url(given) == "http://h:1/v1"


def test_base_url_must_be_http():
    with pytest.raises(ValueError, match="http"):
        OpenAIClient("127.0.0.1:8000", "m")


def test_models_lists_ids(fake):
    assert client(fake).models() == ["fake-model", "fake-adapter"]


def test_structured_output_sends_response_format_and_parses(fake):
    fake.script.append(Reply(body=completion('{"verdict": "approve", "reasons": "fine"}')))
    answer = client(fake).chat(ASK, schema=SCHEMA, schema_name="verdict")
    assert answer.structured is True
    assert answer.parsed == {"verdict": "approve", "reasons": "fine"}
    assert fake.posts()[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
    }


def _reject_response_format(body: dict) -> Reply:
    if "response_format" in body:
        return Reply(400, {"object": "error", "message":
                           "response_format type json_schema is not supported by this server"})
    return Reply(body=completion('Sure!\n```json\n{"verdict": "reject"}\n```\nbye'))


def test_rejected_response_format_falls_back_to_text_and_is_remembered(fake):
    fake.default = _reject_response_format
    mind = client(fake)
    first = mind.chat(ASK, schema=SCHEMA)
    assert first.structured is False
    assert first.parsed == {"verdict": "reject"}
    assert mind.structured is False
    second = mind.chat(ASK, schema=SCHEMA)
    assert second.parsed == {"verdict": "reject"}
    assert ["response_format" in body for body in fake.posts()] == [True, False, False]


def test_structured_true_does_not_fall_back(fake):
    fake.default = _reject_response_format
    with pytest.raises(MindRejected, match="not supported"):
        client(fake, structured=True).chat(ASK, schema=SCHEMA)
    assert len(fake.posts()) == 1


def test_a_bad_schema_is_not_mistaken_for_no_support(fake):
    fake.script.append(Reply(400, {"error": {"message": "Invalid JSON schema: 'foo' is not a type"}}))
    mind = client(fake)
    with pytest.raises(MindRejected, match="Invalid JSON schema"):
        mind.chat(ASK, schema={"type": "foo"})
    assert mind.structured is None


def test_schema_answer_without_json_is_a_bad_answer(fake):
    fake.script.append(Reply(body=completion("I cannot answer in JSON, sorry")))
    with pytest.raises(BadAnswer) as info:
        client(fake, structured=False).chat(ASK, schema=SCHEMA)
    assert info.value.text == "I cannot answer in JSON, sorry"


def test_no_retry_on_400(fake):
    fake.script.append(Reply(400, {"error": {"message": "max_tokens is too large"}}))
    with pytest.raises(MindRejected) as info:
        client(fake, retries=3).chat(ASK)
    assert info.value.status == 400
    assert "max_tokens is too large" in str(info.value)
    assert fake.base_url in str(info.value)
    assert len(fake.posts()) == 1


def test_unknown_model_404_hints_at_the_name(fake):
    fake.script.append(Reply(404, {"error": {"message": "The model `nope` does not exist."}}))
    with pytest.raises(MindRejected, match="does not exist.*model name"):
        client(fake).chat(ASK, model="nope")


def test_truncated_json_is_a_bad_answer_saying_so(fake):
    fake.script.append(Reply(body=completion('{"verdict": "appr', finish="length")))
    with pytest.raises(BadAnswer, match="max_tokens=8") as info:
        client(fake).chat(ASK, schema=SCHEMA, max_tokens=8)
    assert info.value.text == '{"verdict": "appr'


def test_truncated_plain_text_is_returned(fake):
    fake.script.append(Reply(body=completion("a long stor", finish="length")))
    assert client(fake).chat(ASK, max_tokens=3).text == "a long stor"


def test_a_reply_that_is_not_json_is_a_protocol_error(fake):
    fake.script.append(Reply(body=b"<html>hello</html>"))
    with pytest.raises(MindProtocolError, match="not JSON"):
        client(fake).chat(ASK)


def test_a_reply_without_choices_is_a_protocol_error(fake):
    fake.script.append(Reply(body={"hello": "world"}))
    with pytest.raises(MindProtocolError, match="choices"):
        client(fake).chat(ASK)


def test_concurrent_chats_all_answer(fake):
    mind = client(fake)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(mind.chat(ASK).text))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["hello from fake"] * 8


# -- record from the server, replay without it ---------------------------------

UUID_A = "3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b"
UUID_B = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def ask_about(uuid: str, when: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You write methods."},
        {"role": "user", "content": f"Object {uuid} (at {when}) does not understand #double."},
    ]


def test_record_then_replay_with_other_ids(fake, tmp_path: Path):
    fake.script.append(Reply(body=completion('{"verdict": "approve"}')))
    fake.script.append(Reply(body=completion("def double(self):\n    return 2 * self.n\n")))
    log = tmp_path / "mind.jsonl"
    recorder = Recorder(client(fake), log)
    first = recorder.chat(ask_about(UUID_A, "2024-05-01T10:00:00Z"), schema=SCHEMA)
    second = recorder.chat(ask_about(UUID_A, "2024-05-01T10:00:00Z"))
    assert recorder.model == "fake-model"
    assert len(log.read_text().splitlines()) == 2

    fake.default = lambda body: Reply(fail=httpx.ConnectError)  # gone: the file answers
    replay = ReplayBackend(log)
    again = replay.chat(ask_about(UUID_B, "2025-01-02T03:04:05.123+00:00"), schema=SCHEMA)
    assert again.parsed == first.parsed == {"verdict": "approve"}
    assert again.structured is True
    assert again.model == "fake-model"
    code = replay.chat(ask_about(UUID_B, "1999-12-31 23:59"))
    assert code.text == second.text
    with pytest.raises(ReplayMiss, match="does not understand #triple"):
        replay.chat([{"role": "user", "content": f"Object {UUID_B} does not understand #triple."}])


def test_recorder_records_bad_answers_and_replays_them(fake, tmp_path: Path):
    fake.script.append(Reply(body=completion('{"verdict": ', finish="length")))
    log = tmp_path / "mind.jsonl"
    with pytest.raises(BadAnswer):
        Recorder(client(fake), log).chat(ASK, schema=SCHEMA, max_tokens=4)
    with pytest.raises(BadAnswer, match="max_tokens") as info:
        ReplayBackend(log).chat(ASK, schema=SCHEMA)
    assert info.value.text == '{"verdict": '


def test_recorder_does_not_record_transport_errors(tmp_path: Path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        mind = OpenAIClient(f"http://127.0.0.1:{sock.getsockname()[1]}", "m", retries=0)
        log = tmp_path / "mind.jsonl"
        with pytest.raises(MindUnavailable):
            Recorder(mind, log).chat(ASK)
    assert log.read_text() == ""


def test_an_enforced_answer_with_a_raw_control_character_still_parses(fake):
    # vLLM's grammar can let a raw control character into a string; it is still the answer
    fake.default = lambda body: Reply(body=completion('{"approve": true, "reasons": ["a\x14b"]}'))
    answer = client(fake, structured=True).chat(ASK, schema=SCHEMA)
    assert answer.parsed == {"approve": True, "reasons": ["a\x14b"]}


def test_an_enforced_answer_that_is_not_one_json_value_is_bad_not_a_fragment(fake):
    # garbage around a "{}" inside it: the fragment must not pass for the answer
    fake.default = lambda body: Reply(body=completion('{"approve": tru {} e'))
    with pytest.raises(BadAnswer, match="not one JSON value"):
        client(fake, structured=True).chat(ASK, schema=SCHEMA)
