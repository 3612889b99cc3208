"""Adapter identity (content-hash names) and the LoRA runtime's LRU, budget and pins.

The runtime is driven here against ``FakeLoraApi``, an httpx handler that answers the
three endpoints the runtime uses the way vLLM 0.32 does (same statuses, same error
messages, as checked against the real server by tests/integration/test_weaver_lora.py,
which runs the same scenarios for real). Every runtime test runs twice
(``tests.unit.http_fakes``): through the runtime's transport seam
(``httpx.MockTransport``) and with the same handler served on a loopback socket.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.http_fakes import WAYS, Served, serve
from weaver.adapters import AdapterInfo, adapter_digest, describe_adapter
from weaver.errors import (
    AdapterBusy,
    AdapterInvalid,
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
from weaver.lora import LoraRuntime, server_root


def write_adapter(folder: Path, *, rank: int = 8, weights: bytes = b"w" * 100,
                  **config: Any) -> Path:
    folder.mkdir(parents=True)
    body = {"peft_type": "LORA", "r": rank, "base_model_name_or_path": "/models/tiny", **config}
    (folder / "adapter_config.json").write_text(json.dumps(body))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    (folder / "README.md").write_text("written by peft; not part of the identity")
    return folder


class FakeLoraApi:
    """vLLM's LoRA endpoints as they answer, with ``--max-lora-rank`` = ``max_rank``."""

    def __init__(self, *, max_rank: int = 16, base: str = "tiny") -> None:
        self.max_rank = max_rank
        self.base = base
        self.loras: dict[str, str] = {}
        self.lie = False  # answer 200 to a load without loading
        self.disabled = False  # no runtime-update routes, as without the env variable
        self.silent = False  # answer nothing (the runtime's timeout fires)
        self.calls: list[str] = []
        self.headers: list[httpx.Headers] = []
        self.lock = threading.Lock()
        self.served: Served | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.headers.append(request.headers)
        if self.silent:
            raise httpx.ReadTimeout("the fake says nothing", request=request)
        if request.method == "GET":
            self.calls.append(f"GET {path}")
            cards = [{"id": self.base, "root": "/models/tiny", "parent": None}]
            cards += [{"id": n, "root": p, "parent": self.base} for n, p in self.loras.items()]
            return self.reply(200, {"object": "list", "data": cards})
        body = json.loads(request.content)
        self.calls.append(f"POST {path} {body.get('lora_name')}")
        if self.disabled:
            return self.reply(404, {"detail": "Not Found"})
        if path == "/v1/load_lora_adapter":
            return self.reply(*self.load(body["lora_name"], body["lora_path"]))
        if path == "/v1/unload_lora_adapter":
            return self.reply(*self.unload(body["lora_name"]))
        return self.reply(404, {"detail": "Not Found"})

    @staticmethod
    def reply(status: int, payload: Any) -> httpx.Response:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        return httpx.Response(status, content=data)

    @property
    def url(self) -> str:
        assert self.served is not None
        return f"{self.served.url}/v1"

    def runtime(self, **settings: Any) -> LoraRuntime:
        """A runtime that reaches this fake (through the seam, or over the socket)."""
        assert self.served is not None
        return LoraRuntime(self.url, transport=self.served.transport, **settings)

    @staticmethod
    def error(message: str, kind: str, code: int) -> tuple[int, dict[str, Any]]:
        return code, {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def load(self, name: str, path: str) -> tuple[int, Any]:
        if name == self.base:
            return self.error(f"The lora adapter '{name}' conflicts with a served base model.",
                              "InvalidUserInput", 400)
        if name in self.loras:
            return self.error(f"The lora adapter '{name}' has already been loaded. If you want "
                              "to load the adapter in place, set 'load_inplace' to True.",
                              "InvalidUserInput", 400)
        config = Path(path) / "adapter_config.json"
        if not config.is_file():
            return self.error(f"Loading lora {name} failed: No adapter found for <path>",
                              "NotFoundError", 404)
        rank = json.loads(config.read_text())["r"]
        if rank > self.max_rank:
            return self.error(f"Call to add_lora method failed: Worker failed with error 'LoRA "
                              f"rank {rank} is greater than max_lora_rank {self.max_rank}.'",
                              "InternalServerError", 500)
        if not self.lie:
            self.loras[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."

    def unload(self, name: str) -> tuple[int, Any]:
        if name not in self.loras:
            return self.error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
        del self.loras[name]
        return 200, f"Success: LoRA adapter '{name}' removed successfully."



@pytest.fixture(params=WAYS)
def api(request: pytest.FixtureRequest) -> Iterator[FakeLoraApi]:
    fake = FakeLoraApi()
    fake.served = serve(fake, request.param)
    try:
        yield fake
    finally:
        fake.served.close()


@pytest.fixture
def infos(tmp_path) -> list[AdapterInfo]:
    return [
        describe_adapter(write_adapter(tmp_path / f"ad{i}", weights=bytes([i]) * 100),
                         facet="persona")
        for i in range(3)
    ]


# -- identity ------------------------------------------------------------------------


def test_name_is_facet_and_content_hash(tmp_path):
    info = describe_adapter(write_adapter(tmp_path / "a"), facet="code-gen")
    assert info.name == f"code-gen-{info.digest[:12]}"
    assert info.digest == adapter_digest(tmp_path / "a")
    assert (info.rank, info.base_model, info.facet) == (8, "/models/tiny", "code-gen")
    assert info.size_bytes == sum(
        (tmp_path / "a" / f).stat().st_size
        for f in ("adapter_config.json", "adapter_model.safetensors")
    )
    assert info.path == str((tmp_path / "a").resolve())


def test_same_files_same_name_different_weights_different_name(tmp_path):
    first = describe_adapter(write_adapter(tmp_path / "a"), facet="code")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    (tmp_path / "copy" / "README.md").write_text("another readme")
    assert describe_adapter(tmp_path / "copy", facet="code").name == first.name
    retrained = describe_adapter(write_adapter(tmp_path / "b", weights=b"x" * 100), facet="code")
    assert retrained.name != first.name


def test_rank_is_the_largest_of_rank_pattern(tmp_path):
    folder = write_adapter(tmp_path / "a", rank=8, rank_pattern={"q_proj": 24, "v_proj": 4})
    assert describe_adapter(folder).rank == 24


def test_registry_entry_round_trips_as_json(tmp_path):
    info = describe_adapter(write_adapter(tmp_path / "a"), facet="code", data_digest="d" * 64,
                            eval_scores={"loss": 1.5, "schema_valid": 0.75})
    again = AdapterInfo.model_validate(json.loads(json.dumps(info.model_dump(mode="json"))))
    assert again == info


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: None, "not a folder"),
        (lambda p: p.mkdir(), "no adapter_config.json"),
        (lambda p: (p.mkdir(), (p / "adapter_config.json").write_text("{}")), "no adapter weights"),
        (lambda p: write_adapter(p, peft_type="IA3"), "IA3 adapter, not LORA"),
        (lambda p: write_adapter(p, rank=0), "no LoRA rank"),
    ],
)
def test_invalid_adapter_folders(tmp_path, setup, match):
    folder = tmp_path / "bad"
    setup(folder)
    with pytest.raises(AdapterInvalid, match=match):
        describe_adapter(folder)


def test_facet_must_be_name_safe(tmp_path):
    with pytest.raises(ValueError, match="facet"):
        describe_adapter(write_adapter(tmp_path / "a"), facet="Code Gen/../x")


# -- the runtime ---------------------------------------------------------------------


def test_server_root_accepts_v1_or_not():
    assert server_root("http://h:1/v1/") == server_root("http://h:1") == "http://h:1"
    with pytest.raises(ValueError, match="http"):
        server_root("h:1")


def test_lru_under_a_budget_of_two(api, infos):
    runtime = api.runtime(max_adapters=2)
    a, b, c = infos
    runtime.ensure(a)
    runtime.ensure(b)
    runtime.ensure(a)
    runtime.ensure(c)
    assert set(api.loras) == {a.name, c.name}
    assert runtime.lru() == [a.name, c.name]
    calls = len(api.calls)
    runtime.ensure(c)  # loaded already: no server round trip
    assert len(api.calls) == calls


def test_byte_budget(api, infos, tmp_path):
    a, b, _ = infos
    runtime = api.runtime(max_adapters=5, max_bytes=a.size_bytes + 10)
    runtime.ensure(a)
    runtime.ensure(b)
    assert list(api.loras) == [b.name]
    big = describe_adapter(write_adapter(tmp_path / "big", weights=b"z" * 10_000))
    with pytest.raises(AdapterTooLarge, match="budget"):
        runtime.ensure(big)


def test_rank_refused_before_the_server_is_asked(api, tmp_path):
    wide = describe_adapter(write_adapter(tmp_path / "wide", rank=32))
    with pytest.raises(AdapterRankTooLarge, match="--max-lora-rank 32"):
        api.runtime(max_rank=16).ensure(wide)
    assert not [c for c in api.calls if c.startswith("POST")]
    with pytest.raises(AdapterRankTooLarge, match="vLLM said"):
        api.runtime(max_rank=64).ensure(wide)


def test_server_errors_become_ours(api, infos, tmp_path):
    runtime = api.runtime(max_adapters=2)
    a = infos[0]
    ghost = a.model_copy(update={"name": "ghost-1", "path": str(tmp_path / "none")})
    with pytest.raises(AdapterNotFound, match="none"):
        runtime.ensure(ghost)
    runtime.load(a)
    with pytest.raises(AdapterNameConflict, match="already been loaded"):
        runtime.load(a)
    with pytest.raises(AdapterNameConflict, match="base model"):
        runtime.load(a.model_copy(update={"name": "tiny"}))
    with pytest.raises(AdapterNotLoaded, match="nobody"):
        runtime.unload("nobody")
    api.lie = True
    with pytest.raises(AdapterLoadFailed, match="/v1/models"):
        runtime.load(infos[1])
    api.disabled = True
    with pytest.raises(LoraUpdatesDisabled, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        runtime.load(infos[2])


def test_adopts_an_adapter_already_loaded_under_its_name(api, infos):
    a = infos[0]
    api.runtime().load(a)
    fresh = api.runtime(max_adapters=2)
    assert fresh.ensure(a) == a.name
    assert fresh.lru() == [a.name]
    assert not [c for c in api.calls if c.startswith("POST") and c.endswith(a.name)][1:]


def test_sync_forgets_what_the_server_lost(api, infos):
    runtime = api.runtime(max_adapters=2)
    runtime.ensure(infos[0])
    runtime.ensure(infos[1])
    api.loras.pop(infos[0].name)  # e.g. the server restarted with one reloaded by hand
    assert runtime.sync() == [infos[0].name]
    assert runtime.lru() == [infos[1].name]


def test_pinned_adapters_are_not_evicted(api, infos):
    a, b, _ = infos
    runtime = api.runtime(max_adapters=1, busy_timeout=0.2)
    with runtime.use(a) as name:
        assert name == a.name
        with pytest.raises(AdapterBusy, match="in use"):
            runtime.ensure(b)
        assert list(api.loras) == [a.name]
    runtime.ensure(b)
    assert list(api.loras) == [b.name]


def test_a_waiting_ensure_proceeds_when_the_pin_is_released(api, infos):
    a, b, _ = infos
    runtime = api.runtime(max_adapters=1, busy_timeout=30)
    loaded = threading.Event()
    results: list[str] = []

    def other() -> None:
        results.append(runtime.ensure(b))
        loaded.set()

    with runtime.use(a):
        worker = threading.Thread(target=other)
        worker.start()
        assert not loaded.wait(0.2)  # blocked while a is pinned
    assert loaded.wait(10)
    worker.join(10)
    assert results == [b.name]
    assert list(api.loras) == [b.name]


def test_concurrent_ensures_keep_the_budget(api, infos):
    runtime = api.runtime(max_adapters=2)
    errors: list[Exception] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                with runtime.use(infos[(i + j) % 3]):
                    assert len(api.loras) <= 2
        except Exception as exc:  # reported below, in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert set(api.loras) == set(runtime.lru())
    assert len(api.loras) <= 2


def test_the_api_key_goes_with_every_request(api, infos):
    api.runtime(api_key="sekrit").ensure(infos[0])
    assert api.headers
    assert all(h["authorization"] == "Bearer sekrit" for h in api.headers)
    api.headers.clear()
    api.runtime().loaded()
    assert "authorization" not in api.headers[0]


def test_a_silent_server_is_mind_timeout(api, infos):
    api.silent = True
    with pytest.raises(MindTimeout, match="did not answer within") as info:
        api.runtime(timeout=0.3).ensure(infos[0])
    assert isinstance(info.value, MindUnavailable)
    assert len(api.headers) == 1  # asked once, never again
    assert not api.calls


def test_no_server_is_mind_unavailable():
    with socket.socket() as sock:  # bound, not listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        runtime = LoraRuntime(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", timeout=5)
        with pytest.raises(MindUnavailable, match="cannot be reached.*is the server running"):
            runtime.loaded()


def test_one_runtime_keeps_one_connection_until_closed(infos):
    fake = FakeLoraApi()
    fake.served = serve(fake, "loopback")
    try:
        with fake.runtime(max_adapters=2) as runtime:
            runtime.ensure(infos[0])  # models, load, models: three requests
        assert fake.served.loopback is not None
        peers = fake.served.loopback.peers
        assert len(peers) == 3
        assert len(set(peers)) == 1
        runtime.loaded()  # after close: a new connection
        assert len(set(peers)) == 2
        runtime.close()
    finally:
        fake.served.close()
