"""A mind behind an OpenAI-compatible HTTP API (vLLM, llama.cpp's server, Ollama).

``OpenAIClient`` speaks ``POST {base_url}/chat/completions`` and
``GET {base_url}/models`` through httpx (``weaver.transport``: proxies, certificates,
connection reuse; ``transport=`` is the seam tests fake the server at). It owns the
retry policy:

- one timeout per request; a timeout is not retried (a server too slow once is
  likely too slow again, and retrying would multiply the caller's wait);
- bounded retries with capped exponential backoff on connection errors, 5xx
  and 429 (honouring ``Retry-After``, in seconds or as an HTTP-date, up to the
  cap), never on other 4xx;
- structured output through ``response_format`` json_schema; with
  ``structured=None`` a 400 saying the server does not support it switches the
  client to plain text + ``extract_json`` for good;
- every transport error becomes a ``WeaverError`` naming the URL and carrying
  the server's own message (httpx's exceptions never leave this module).

It must not know about prompts or the image: it sends the messages it is
given. One client may be used from several threads at once: it keeps a pool of
connections (httpx's, which locks itself) that ``close()`` releases.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from typing import Any

import httpx

from weaver.chat import Answer, check_messages, parse_with_schema
from weaver.errors import (
    BadAnswer,
    MindProtocolError,
    MindRejected,
    MindTimeout,
    MindUnavailable,
)
from weaver.transport import http_client, retry_after

__all__ = ["OpenAIClient", "normalize_base_url"]

# A 400/422 that names the feature and says it is unknown or unsupported means
# "this server cannot do response_format json_schema" (and not "your schema is wrong").
_FEATURE_WORDS = ("response_format", "json_schema", "structured", "guided", "grammar")
_REFUSAL_WORDS = (
    "support", "unknown", "unrecognized", "not allowed", "not permitted", "must be",
    "extra", "implemented",
)
_MAX_MESSAGE = 500


def normalize_base_url(base_url: str) -> str:
    """``http://host:port/v1`` from a URL given with or without ``/v1`` or a trailing slash."""
    url = base_url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL {base_url!r} is not an http(s) URL like http://127.0.0.1:8000/v1")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def _server_message(body: bytes) -> str:
    """The server's error message from an error body, whatever its dialect."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MAX_MESSAGE]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_MAX_MESSAGE]
        for key in ("message", "detail", "error"):
            if data.get(key):
                value = data[key]
                return (value if isinstance(value, str) else json.dumps(value))[:_MAX_MESSAGE]
    return text[:_MAX_MESSAGE]


class _Retryable(Exception):
    """Internal: this attempt failed in a way another attempt may fix."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIClient:
    """A ``ChatBackend`` for an OpenAI-compatible server.

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is
    added when missing). ``model`` is the default model or adapter name.
    The API key is ``api_key`` or, when that is ``None``, the environment
    variable ``api_key_env`` (read once, here); without either no
    ``Authorization`` header is sent. ``structured``: ``True`` always sends
    ``response_format``, ``False`` never does, ``None`` tries and falls back.
    ``transport``: where requests go (``None``: the network; tests pass an
    ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "BATOS_MIND_API_KEY",
        timeout: float = 60.0,
        retries: int = 2,
        structured: bool | None = None,
        backoff: float = 0.5,
        backoff_cap: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not model:
            raise ValueError("a model (or adapter) name is required")
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.backoff_cap = float(backoff_cap)
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env) or None
        self._structured = structured
        self._lock = threading.Lock()
        self._transport = transport
        self._http = http_client(self.base_url, timeout=self.timeout, transport=transport)

    def __repr__(self) -> str:
        return f"OpenAIClient({self.base_url!r}, model={self.model!r})"

    @property
    def structured(self) -> bool | None:
        """Whether ``response_format`` is sent: True, False, or None (not known yet)."""
        return self._structured

    # -- public API ---------------------------------------------------------

    def models(self) -> list[str]:
        """The ids the server lists at ``GET /models`` (models and adapters)."""
        data = self._request("GET", "/models", None)
        try:
            return [str(item["id"]) for item in data["data"]]
        except (KeyError, TypeError) as exc:
            raise MindProtocolError(
                f"{self.base_url}/models answered without a 'data' list of ids; "
                "is this an OpenAI-compatible server?"
            ) from exc

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict | None = None,
        schema_name: str = "answer",
        max_tokens: int = 1024,
        temperature: float = 0.0,
        model: str | None = None,
    ) -> Answer:
        body: dict[str, Any] = {
            "model": model or self.model,
            "messages": check_messages(messages),
            "max_tokens": int(max_tokens),
            "temperature": float(temperature),
        }
        started = time.monotonic()
        structured = schema is not None and self._structured is not False
        if structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            }
            try:
                data = self._request("POST", "/chat/completions", body)
            except MindRejected as exc:
                if self._structured is not None or not _says_unsupported(exc):
                    raise
                with self._lock:
                    self._structured = False
                structured = False
                del body["response_format"]
                data = self._request("POST", "/chat/completions", body)
            else:
                with self._lock:
                    if self._structured is None:
                        self._structured = True
        else:
            data = self._request("POST", "/chat/completions", body)
        return self._answer(data, body, schema, structured, time.monotonic() - started)

    def close(self) -> None:
        """Release the kept connections; a later request opens new ones."""
        fresh = http_client(self.base_url, timeout=self.timeout, transport=self._transport)
        with self._lock:
            spent, self._http = self._http, fresh
        spent.close()

    def __enter__(self) -> OpenAIClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------

    def _answer(
        self, data: Any, body: dict, schema: dict | None, structured: bool, elapsed: float
    ) -> Answer:
        url = f"{self.base_url}/chat/completions"
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise MindProtocolError(
                f"{url} answered without choices[0].message; is this an OpenAI-compatible server?"
            ) from exc
        if schema is not None and finish == "length":
            raise BadAnswer(
                f"the answer from {body['model']} stopped at max_tokens={body['max_tokens']} "
                "before its JSON was complete; raise max_tokens or ask for a smaller answer",
                text=text,
            )
        parsed = parse_with_schema(text, schema, enforced=structured)
        usage_in = data.get("usage") if isinstance(data, dict) else None
        usage = {
            key: int(value)
            for key, value in (usage_in or {}).items()
            if key in ("prompt_tokens", "completion_tokens", "total_tokens")
            and isinstance(value, int)
        }
        return Answer(
            text=text,
            parsed=parsed,
            model=str(data.get("model") or body["model"]),
            structured=structured,
            elapsed=elapsed,
            usage=usage,
        )

    def _request(self, method: str, path: str, body: dict | None) -> Any:
        """One logical request with the retry policy; the decoded JSON reply."""
        url = self.base_url + path
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                return self._once(method, url, body)
            except _Retryable as exc:
                last = str(exc)
                if attempt + 1 >= attempts:
                    break
                delay = min(self.backoff_cap, self.backoff * (2**attempt))
                if exc.retry_after is not None:
                    delay = min(self.backoff_cap, max(delay, exc.retry_after))
                time.sleep(delay)
        raise MindUnavailable(
            f"the mind at {url} is unavailable after {attempts} attempt(s): {last}", url=url
        )

    def _once(self, method: str, url: str, body: dict | None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            response = self._http.request(method, url, content=data, headers=headers)
        except httpx.TimeoutException as exc:
            raise self._timeout(url) from exc
        except httpx.ConnectError as exc:
            raise _Retryable(f"cannot connect ({exc})") from exc
        except httpx.TransportError as exc:  # dropped, reset, not HTTP
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from exc
        except httpx.RequestError as exc:  # a redirect loop, a body that does not decode
            raise MindProtocolError(
                f"{url} answered in a way no OpenAI-compatible server does "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if not response.is_success:
            self._http_error(url, response)
        raw = response.content
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise MindProtocolError(
                f"{url} answered something that is not JSON ({raw[:120]!r}); "
                "is this an OpenAI-compatible server?"
            ) from exc

    def _timeout(self, url: str) -> MindTimeout:
        return MindTimeout(
            f"the mind at {url} did not answer within {self.timeout:g}s "
            "(raise the timeout, or ask for fewer max_tokens)",
            url=url,
        )

    def _http_error(self, url: str, response: httpx.Response) -> None:
        message = _server_message(response.content) or response.reason_phrase
        status = response.status_code
        if status == 429 or status >= 500:
            wait = retry_after(response.headers.get("Retry-After"))
            raise _Retryable(f"HTTP {status}: {message}", wait)
        hint = ""
        if status in (401, 403):
            hint = " (set the API key in the environment variable the client reads)"
        elif status == 404:
            hint = " (check the base URL, which should end in /v1, and the model name)"
        raise MindRejected(
            f"the mind at {url} refused the request: HTTP {status}: {message}{hint}",
            url=url,
            status=status,
        )


def _says_unsupported(exc: MindRejected) -> bool:
    text = str(exc).lower()
    return (
        exc.status in (400, 422)
        and any(word in text for word in _FEATURE_WORDS)
        and any(word in text for word in _REFUSAL_WORDS)
    )
