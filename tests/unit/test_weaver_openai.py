"""OpenAIClient against a fake server that speaks the OpenAI chat API, reached two ways.

``FakeOpenAI`` answers from a script of replies, so every transport path (success,
structured output and its fallback, retries with ``Retry-After``, refusals, timeouts,
dropped connections, truncation) runs without a model. It is written once, as an
httpx handler, and every test runs twice (``tests.unit.http_fakes``): through the
client's transport seam (``httpx.MockTransport``) and through real sockets (the same
handler served on 127.0.0.1). The same calls run against a real vLLM in
tests/integration/test_weaver_vllm.py.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.http_fakes import WAYS, Loopback, serve
from weaver import (
    Answer,
    BadAnswer,
    MindProtocolError,
    MindRejected,
    MindTimeout,
    MindUnavailable,
    OpenAIClient,
    Recorder,
    ReplayBackend,
    ReplayMiss,
)
from weaver.openai import normalize_base_url
from weaver.transport import retry_after

SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"enum": ["approve", "reject"]}, "reasons": {"type": "string"}},
    "required": ["verdict"],
}


def completion(text: str, *, finish: str = "stop", model: str = "fake-model") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    #: no answer at all: ``httpx.ReadTimeout`` (silence), ``httpx.RemoteProtocolError`` (dropped)
    fail: type[httpx.TransportError] | None = None


Responder = Callable[[dict], Reply]


class FakeOpenAI:
    """A scripted OpenAI-compatible server (an httpx handler); ``requests`` holds what it got."""

    def __init__(self) -> None:
        self.script: list[Reply | Responder] = []
        self.default: Responder = lambda body: Reply(body=completion("hello from fake"))
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.base_url = ""
        self.transport: httpx.BaseTransport | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        with self.lock:
            self.requests.append({"method": request.method, "path": path,
                                  "headers": request.headers, "body": body})
            step = self.script.pop(0) if request.method == "POST" and self.script else None
        if request.method == "GET" and path == "/v1/models":
            reply = Reply(body={"object": "list", "data": [
                {"id": "fake-model", "object": "model"}, {"id": "fake-adapter", "object": "model"}]})
        elif request.method != "POST" or path != "/v1/chat/completions":
            reply = Reply(404, {"error": {"message": f"no route {path}"}})
        else:
            step = step or self.default
            reply = step(body) if callable(step) else step
        if reply.fail is not None:
            raise reply.fail(f"the fake says: {reply.fail.__name__}", request=request)
        raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        return httpx.Response(reply.status, content=raw,
                              headers={"Content-Type": "application/json", **reply.headers})

    def posts(self) -> list[dict]:
        return [r["body"] for r in self.requests if r["method"] == "POST"]


@pytest.fixture(params=WAYS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    served = serve(server, request.param)
    server.base_url, server.transport = f"{served.url}/v1", served.transport
    try:
        yield server
    finally:
        served.close()


def client(fake: FakeOpenAI, **kwargs: Any) -> OpenAIClient:
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return OpenAIClient(fake.base_url, "fake-model", transport=fake.transport, **kwargs)


ASK = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"}]


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


def test_retries_a_503_then_succeeds(fake):
    fake.script.append(Reply(503, {"error": {"message": "warming up"}}))
    answer = client(fake, retries=2).chat(ASK)
    assert answer.text == "hello from fake"
    assert len(fake.posts()) == 2


def test_retries_a_429_honouring_retry_after(fake):
    fake.script.append(Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}))
    assert client(fake).chat(ASK).text == "hello from fake"
    assert len(fake.posts()) == 2


def _waited(fake: FakeOpenAI, retry_after_header: str, **kwargs: Any) -> float:
    """Seconds one chat took whose first attempt is a 429 with this ``Retry-After``."""
    fake.script.append(Reply(429, {"error": {"message": "slow down"}},
                             {"Retry-After": retry_after_header}))
    mind = client(fake, backoff=0.01, **kwargs)
    began = time.monotonic()
    assert mind.chat(ASK).text == "hello from fake"
    return time.monotonic() - began


def test_retry_after_in_seconds_is_waited_over_the_backoff(fake):
    assert _waited(fake, "0.3") >= 0.3  # the backoff alone would be 0.01 s
    assert len(fake.posts()) == 2


def test_retry_after_as_an_http_date_is_waited_up_to_the_cap(fake):
    in_an_hour = email.utils.formatdate(time.time() + 3600, usegmt=True)
    waited = _waited(fake, in_an_hour, backoff_cap=0.3)
    assert 0.3 <= waited < 5  # read as a date (else 0.01 s), and capped (else an hour)
    assert len(fake.posts()) == 2


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), (" 1.5 ", 1.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:29:00 GMT", 60.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0), ("soon", None), ("inf", None), (None, None),
])
def test_retry_after_reads_seconds_and_http_dates(header, seconds):
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert retry_after(header, now=now) == seconds


def test_gives_up_after_the_retries_naming_url_and_message(fake):
    fake.default = lambda body: Reply(500, {"error": {"message": "engine crashed"}})
    with pytest.raises(MindUnavailable) as info:
        client(fake, retries=2).chat(ASK)
    assert len(fake.posts()) == 3
    message = str(info.value)
    assert fake.base_url in message
    assert "engine crashed" in message
    assert "3 attempt" in message


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


def test_timeout_is_mind_timeout_and_not_retried(fake):
    # through the seam the transport times out; over the socket the server stays silent
    fake.script.append(Reply(fail=httpx.ReadTimeout))
    with pytest.raises(MindTimeout) as info:
        client(fake, timeout=0.3, retries=2).chat(ASK)
    assert isinstance(info.value, MindUnavailable)
    assert fake.base_url in str(info.value)
    assert "within 0.3s" in str(info.value)
    assert len(fake.posts()) == 1


def test_a_dropped_connection_is_retried(fake):
    fake.script.append(Reply(fail=httpx.RemoteProtocolError))
    assert client(fake, retries=1).chat(ASK).text == "hello from fake"
    assert len(fake.posts()) == 2


def test_a_connection_dropped_every_time_is_mind_unavailable(fake):
    fake.default = lambda body: Reply(fail=httpx.RemoteProtocolError)
    with pytest.raises(MindUnavailable, match="2 attempt.*connection failed") as info:
        client(fake, retries=1).chat(ASK)
    assert not isinstance(info.value, MindTimeout)


def test_connection_refused_is_mind_unavailable():
    # A bound socket that does not listen: connecting to its port is refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        with pytest.raises(MindUnavailable) as info:
            OpenAIClient(url, "m", retries=1, backoff=0.01).chat(ASK)
    assert url in str(info.value)
    assert "refused" in str(info.value).lower()
    assert not isinstance(info.value, MindTimeout)


# -- the real socket only: connections, proxies --------------------------------------


@pytest.fixture
def loopback() -> Iterator[tuple[FakeOpenAI, Loopback]]:
    server = FakeOpenAI()
    served = Loopback(server)
    server.base_url = f"{served.url}/v1"
    try:
        yield server, served
    finally:
        served.close()


def test_one_client_reuses_its_connection_until_closed(loopback):
    fake, served = loopback
    with client(fake) as mind:
        mind.chat(ASK)
        mind.models()
        mind.chat(ASK)
    assert len(served.peers) == 3
    assert len(set(served.peers)) == 1  # one connection for the three requests
    mind.chat(ASK)  # closed: a new connection
    assert len(set(served.peers)) == 2
    mind.close()


def test_a_loopback_mind_is_never_reached_through_a_proxy(loopback, monkeypatch):
    fake, _ = loopback
    with socket.socket() as dead:  # a proxy that refuses every connection
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with client(fake, retries=0) as mind:
            assert mind.chat(ASK).text == "hello from fake"


def test_a_remote_mind_follows_the_proxy_from_the_environment(loopback, monkeypatch):
    fake, served = loopback  # the fake plays the proxy: it gets the whole URL
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, served.url)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with OpenAIClient("http://mind.example:8000/v1", "fake-model", retries=0, timeout=5) as mind:
        assert mind.chat(ASK).text == "hello from fake"
    assert fake.requests[0]["headers"]["host"] == "mind.example:8000"


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
