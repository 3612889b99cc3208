"""A fake OpenAI-compatible server for the weaver's client tests, reachable two ways.

``FakeOpenAI`` answers from a script of replies (``Reply``: a status and a body, or no
answer at all), so every path of ``OpenAIClient`` runs without a model. It is an httpx
handler: ``fake_server(how)`` reaches it through the client's transport seam
(``httpx.MockTransport``) or over a real loopback socket (``tests.unit.http_fakes``);
the test modules' ``fake`` fixture runs each test both ways. Used by
test_weaver_openai.py (the API) and test_weaver_openai_transport.py (retries,
timeouts, connections, proxies).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.unit.http_fakes import Served, serve
from weaver import OpenAIClient

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
        self.served: Served | None = None

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


@contextmanager
def fake_server(how: str) -> Iterator[FakeOpenAI]:
    """A ``FakeOpenAI`` reached through the seam (``"mock"``) or a socket (``"loopback"``).

    ``served.loopback`` is the socket server when there is one (its ``peers``).
    """
    server = FakeOpenAI()
    server.served = serve(server, how)
    server.base_url, server.transport = f"{server.served.url}/v1", server.served.transport
    try:
        yield server
    finally:
        server.served.close()


def client(fake: FakeOpenAI, **kwargs: Any) -> OpenAIClient:
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return OpenAIClient(fake.base_url, "fake-model", transport=fake.transport, **kwargs)


ASK = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"}]
