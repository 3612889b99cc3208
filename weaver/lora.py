"""The adapter runtime: an LRU of LoRA adapters loaded on a vLLM server, under a budget.

``LoraRuntime.ensure(info)`` makes an adapter usable as ``model=<info.name>``: a loaded
one is touched (most recently used); otherwise the least recently used adapters are
unloaded (``POST /v1/unload_lora_adapter``) until the new one fits the budget (count
and bytes), then it is loaded (``POST /v1/load_lora_adapter``). Both steps are
confirmed against ``GET /v1/models``, where a loaded LoRA appears with its name, its
path as ``root`` and the base model as ``parent``, rather than trusting the reply.
``use(info)`` is ``ensure`` plus a pin for the length of a ``with`` block: a pinned
adapter is never evicted, so a completion in flight cannot lose its adapter.

The server cannot be asked its LoRA limits, so they come from the configuration that
started it: ``LoraRuntime.for_server(server)`` takes ``--max-loras`` and
``--max-lora-rank`` from a ``VllmServer``; otherwise vLLM's own defaults (1 and 16)
apply unless given. An adapter whose rank is above the maximum is refused before the
server is asked. The budget counts only adapters this runtime loaded (or found
loaded under one of its names, which, being content-hashed, mean the same weights).

vLLM's error answers become ``weaver.errors``: rank above the maximum
(``AdapterRankTooLarge``), missing path (``AdapterNotFound``), duplicate name
(``AdapterNameConflict``), unknown adapter on unload (``AdapterNotLoaded``), runtime
updates off (``LoraUpdatesDisabled``), unreachable server (``MindUnavailable``).

HTTP goes through one ``httpx.Client`` per runtime (``weaver.transport``: kept
connections, no proxy for a loopback server); ``transport=`` is the seam tests fake
vLLM at, and ``close()`` releases the connections. A request is never retried: a load
or unload that failed half-way is confirmed (or not) against ``/v1/models`` instead.

Threads: every method is safe to call from any thread. One lock serializes changes
to the loaded set (the server applies loads one at a time anyway); HTTP to load and
unload happens under it, completions never do.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import httpx

from weaver.adapters import AdapterInfo
from weaver.errors import (
    AdapterBusy,
    AdapterError,
    AdapterLoadFailed,
    AdapterNameConflict,
    AdapterNotFound,
    AdapterNotLoaded,
    AdapterRankTooLarge,
    AdapterTooLarge,
    LoraUpdatesDisabled,
    MindTimeout,
    MindUnavailable,
)
from weaver.transport import http_client

__all__ = ["LoraRuntime", "server_root"]

log = logging.getLogger(__name__)

VLLM_DEFAULT_MAX_LORAS = 1
VLLM_DEFAULT_MAX_RANK = 16
ENABLE_HINT = (
    "start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
    "(weaver.vllm_server.VllmServer does)"
)


class _ServerConfig(Protocol):
    base_url: str
    max_loras: int
    max_lora_rank: int
    api_key: str | None


def server_root(base_url: str) -> str:
    """``http://host:port`` from a base URL given with or without ``/v1``."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base URL {base_url!r} is not an http(s) URL like http://127.0.0.1:8000")
    return url


class LoraRuntime:
    """The LoRA adapters loaded on one vLLM server, least recently used first out."""

    def __init__(
        self,
        base_url: str,
        *,
        max_adapters: int | None = None,
        max_bytes: int | None = None,
        max_rank: int | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        busy_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.root = server_root(base_url)
        self.max_adapters = max_adapters or VLLM_DEFAULT_MAX_LORAS
        self.max_bytes = max_bytes
        self.max_rank = max_rank or VLLM_DEFAULT_MAX_RANK
        self.api_key = api_key
        self.timeout = timeout
        self.busy_timeout = busy_timeout
        self._lru: OrderedDict[str, AdapterInfo] = OrderedDict()
        self._pins: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._released = threading.Condition(self._lock)
        self._transport = transport
        self._http = http_client(self.root, timeout=timeout, transport=transport)

    @classmethod
    def for_server(cls, server: _ServerConfig, **overrides: Any) -> LoraRuntime:
        """A runtime whose budget is the server's ``--max-loras`` and ``--max-lora-rank``."""
        settings: dict[str, Any] = {
            "max_adapters": server.max_loras,
            "max_rank": server.max_lora_rank,
            "api_key": server.api_key,
        }
        settings.update(overrides)
        return cls(server.base_url, **settings)

    def __repr__(self) -> str:
        return (
            f"LoraRuntime({self.root}, {len(self._lru)}/{self.max_adapters} adapters, "
            f"max rank {self.max_rank})"
        )

    def close(self) -> None:
        """Release the kept connections (the adapters stay loaded on the server).

        A later request opens new ones.
        """
        fresh = http_client(self.root, timeout=self.timeout, transport=self._transport)
        with self._lock:
            spent, self._http = self._http, fresh
        spent.close()

    def __enter__(self) -> LoraRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the LRU ----------------------------------------------------------------

    def ensure(self, info: AdapterInfo) -> str:
        """Make ``info`` loaded on the server, evicting as needed; returns its model name."""
        with self._lock:
            self._admissible(info)
            if info.name in self._lru:
                self._lru.move_to_end(info.name)
                return info.name
            self._make_room(info)
            if info.name in self.loaded():
                # Same name means same weights (content-hashed): adopt it.
                log.info("adapter %s already on the server: adopted", info.name)
            else:
                self.load(info, _checked=True)
            self._lru[info.name] = info
            self._lru.move_to_end(info.name)
            return info.name

    @contextmanager
    def use(self, info: AdapterInfo) -> Iterator[str]:
        """``ensure`` and keep the adapter from eviction until the block ends."""
        with self._lock:
            name = self.ensure(info)
            self._pins[name] += 1
        try:
            yield name
        finally:
            with self._lock:
                self._pins[name] -= 1
                if self._pins[name] <= 0:
                    del self._pins[name]
                self._released.notify_all()

    def evict(self, name: str) -> None:
        """Unload one adapter this runtime holds (unless it is pinned)."""
        with self._lock:
            if self._pins[name]:
                raise AdapterBusy(f"adapter {name} is in use; it cannot be evicted now",
                                  adapter=name)
            self.unload(name)

    def lru(self) -> list[str]:
        """Names this runtime holds, least recently used first."""
        with self._lock:
            return list(self._lru)

    def sync(self) -> list[str]:
        """Forget adapters the server no longer has (e.g. after a restart); returns them."""
        with self._lock:
            served = self.loaded()
            gone = [name for name in self._lru if name not in served]
            for name in gone:
                del self._lru[name]
            return gone

    def _admissible(self, info: AdapterInfo) -> None:
        if info.rank > self.max_rank:
            raise AdapterRankTooLarge(
                f"adapter {info.name} has rank {info.rank}, above the server's maximum "
                f"{self.max_rank}: retrain it with r <= {self.max_rank}, or restart vLLM "
                f"with --max-lora-rank {info.rank} or more",
                adapter=info.name,
            )
        if self.max_bytes is not None and info.size_bytes > self.max_bytes:
            raise AdapterTooLarge(
                f"adapter {info.name} has {info.size_bytes} bytes, more than the whole "
                f"budget of {self.max_bytes} bytes: raise the budget or use a smaller rank",
                adapter=info.name,
            )

    def _over_budget(self, incoming: AdapterInfo) -> bool:
        if len(self._lru) + 1 > self.max_adapters:
            return True
        if self.max_bytes is None:
            return False
        held = sum(info.size_bytes for info in self._lru.values())
        return held + incoming.size_bytes > self.max_bytes

    def _make_room(self, incoming: AdapterInfo) -> None:
        deadline = time.monotonic() + self.busy_timeout
        while self._over_budget(incoming):
            victim = next((name for name in self._lru if not self._pins[name]), None)
            if victim is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AdapterBusy(
                        f"no room for adapter {incoming.name}: all {len(self._lru)} loaded "
                        f"adapters are in use (budget {self.max_adapters}); try again later",
                        adapter=incoming.name,
                    )
                self._released.wait(left)
                continue
            log.info("evicting adapter %s (least recently used) for %s", victim, incoming.name)
            try:
                self.unload(victim)
            except AdapterNotLoaded:
                self._lru.pop(victim, None)  # someone else unloaded it: the room is there

    # -- the server's endpoints ---------------------------------------------------

    def loaded(self) -> dict[str, str]:
        """The LoRA adapters the server lists, name -> path (whoever loaded them)."""
        data = self._request("GET", "/v1/models").get("data")
        if not isinstance(data, list):
            raise AdapterError(f"{self.root}/v1/models answered without a 'data' list")
        return {m["id"]: m.get("root", "") for m in data if m.get("parent")}

    def load(self, info: AdapterInfo, *, _checked: bool = False) -> None:
        """Load one adapter under its name, confirmed by ``/v1/models``.

        Records it as the most recently used but evicts nothing: ``ensure`` is the call
        that keeps the budget. A name already loaded is ``AdapterNameConflict``.
        """
        with self._lock:
            if not _checked:
                self._admissible(info)
            body = {"lora_name": info.name, "lora_path": info.path}
            self._request("POST", "/v1/load_lora_adapter", body, adapter=info)
            served = self.loaded()
            if served.get(info.name) != info.path:
                raise AdapterLoadFailed(
                    f"vLLM answered that adapter {info.name} was loaded, but /v1/models "
                    f"lists {served.get(info.name)!r} for it, not {info.path!r}",
                    adapter=info.name,
                )
            self._lru[info.name] = info
            log.info("loaded adapter %s from %s", info.name, info.path)

    def unload(self, name: str) -> None:
        """Unload one adapter by name, confirmed by ``/v1/models``."""
        with self._lock:
            self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name}, name=name)
            self._lru.pop(name, None)
            if name in self.loaded():
                raise AdapterLoadFailed(
                    f"vLLM answered that adapter {name} was unloaded, but /v1/models still "
                    "lists it",
                    adapter=name,
                )
            log.info("unloaded adapter %s", name)

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        adapter: AdapterInfo | None = None,
        name: str = "",
    ) -> dict[str, Any]:
        url = self.root + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        try:
            reply = self._http.request(method, url, content=data, headers=headers)
        except httpx.TimeoutException as exc:
            raise MindTimeout(f"vLLM at {url} did not answer within {self.timeout:.0f}s",
                              url=url) from exc
        except httpx.HTTPError as exc:
            raise MindUnavailable(
                f"vLLM at {self.root} cannot be reached ({exc}); is the server running?",
                url=url,
            ) from exc
        if not reply.is_success:
            raise self._translate(reply.status_code, reply.text, path, adapter, name)
        try:
            return json.loads(reply.content)
        except ValueError:
            return {"text": reply.text}

    def _translate(
        self,
        status: int,
        raw: str,
        path: str,
        adapter: AdapterInfo | None,
        name: str,
    ) -> Exception:
        """vLLM's error answer (status and body) as the project's own error."""
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message", "") if isinstance(error, dict) else ""
        who = adapter.name if adapter else name
        said = f"vLLM said ({status}): {message or raw[:300]}"
        if status == 404 and not message and path.endswith("lora_adapter"):
            # FastAPI's own 404: the route is not there at all.
            return LoraUpdatesDisabled(
                f"{self.root} has no {path} endpoint: {ENABLE_HINT}", adapter=who
            )
        if status >= 500 and "greater than max_lora_rank" in message:
            return AdapterRankTooLarge(
                f"adapter {who} has a rank above the server's --max-lora-rank: retrain it with "
                f"a smaller r, or restart vLLM with a larger --max-lora-rank. {said}",
                adapter=who,
            )
        if path.endswith("/load_lora_adapter"):
            where = adapter.path if adapter else "?"
            if status == 404:
                return AdapterNotFound(
                    f"vLLM finds no LoRA adapter at {where} for {who}: the path must exist "
                    f"on the server's machine and hold adapter_config.json and weights. {said}",
                    adapter=who,
                )
            if status == 400 and ("already been loaded" in message or "conflicts" in message):
                return AdapterNameConflict(
                    f"the name {who} is taken on the server (loaded already, or the base "
                    f"model's name): unload it first or use ensure(), which reuses it. {said}",
                    adapter=who,
                )
            if "LoRA is not enabled" in message or "enable_lora" in message:
                return LoraUpdatesDisabled(f"{ENABLE_HINT}. {said}", adapter=who)
            return AdapterLoadFailed(f"vLLM could not load adapter {who}. {said}", adapter=who)
        if path.endswith("/unload_lora_adapter") and status == 404:
            return AdapterNotLoaded(
                f"vLLM has no adapter named {who} to unload (see GET /v1/models). {said}",
                adapter=who,
            )
        return AdapterError(f"{path} failed for {who or 'the server'}. {said}", adapter=who)
