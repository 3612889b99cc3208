"""OpenAIClient's transport policy: retries, ``Retry-After``, timeouts, connections, proxies.

Against ``tests.unit.fake_openai.FakeOpenAI``, through the client's transport seam and
over real loopback sockets (``fake``), or over the socket only (``loopback``): what a
server that is slow, busy, gone or dropping connections does to the client, and what
the client does with its connections.
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.unit.fake_openai import ASK, FakeOpenAI, Reply, client, fake_server
from tests.unit.http_fakes import WAYS, Loopback
from weaver import MindTimeout, MindUnavailable, OpenAIClient
from weaver.transport import retry_after


@pytest.fixture(params=WAYS)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeOpenAI]:
    with fake_server(request.param) as server:
        yield server


@pytest.fixture
def loopback() -> Iterator[tuple[FakeOpenAI, Loopback]]:
    """The fake over a real socket only: for what only a socket shows."""
    with fake_server("loopback") as server:
        assert server.served is not None
        assert server.served.loopback is not None
        yield server, server.served.loopback


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

