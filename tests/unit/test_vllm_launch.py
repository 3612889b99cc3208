"""envs.vllm: the one vLLM launch description, and both of its callers taking theirs from it.

The supervisor's ``[vllm]`` child (``supervisor.vllm.VllmConfig``) and the weaver's
``weaver.vllm_server.VllmServer`` describe the same server the same way; the real
server is in tests/integration/test_vllm_server.py and test_supervisor_vllm.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from envs import vllm
from envs.vllm import VllmLaunch
from supervisor.vllm import VllmConfig
from tests.unit.http_fakes import WAYS, Served, serve
from weaver.vllm_server import VllmServer


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def python(tmp_path: Path) -> Path:
    path = tmp_path / "venv" / "bin" / "python"
    path.parent.mkdir(parents=True)
    path.write_text("")
    return path


def both(model: Path, python: Path, **same: object) -> tuple[VllmConfig, VllmServer]:
    config = VllmConfig(enabled=True, model=str(model), python=str(python), port=8011,
                        served_model_name="tiny", **same)
    server = VllmServer(model, python=python, port=8011, served_model_name="tiny", **same)
    return config, server


def test_the_supervisor_and_the_weaver_describe_the_same_server(model: Path, python: Path):
    config, server = both(model, python, dtype="float32", max_loras=3, max_lora_rank=8,
                          kv_cache_gib=2, max_model_len=4096, extra_args=["--enforce-eager"])
    assert config.describe() == server.describe()
    assert config.argv() == server.command() == config.describe().argv()
    base = {"PATH": "/bin"}
    assert config.environment(base) == server.describe().environment(base)
    plain_config, plain_server = both(model, python, enable_lora=False)
    assert plain_config.argv() == plain_server.command()
    assert "--enable-lora" not in plain_server.command()


def test_both_callers_take_their_argv_from_envs_vllm(model: Path, python: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    config, server = both(model, python)
    monkeypatch.setattr(VllmLaunch, "argv", lambda self: ["from envs.vllm", self.served_name])
    assert config.argv() == ["from envs.vllm", "tiny"]
    assert server.command() == ["from envs.vllm", "tiny"]


def test_the_launch_argv_and_environment(python: Path, model: Path):
    launch = VllmLaunch(python=python, model=model, served_name="m", port=9000,
                        compact_json=True, api_key="k", extra_args=("--x",),
                        extra_env={"VLLM_LOGGING_LEVEL": "DEBUG"})
    argv = launch.argv()
    assert argv[:3] == [str(python), "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(argv[3:17:2], argv[4:17:2], strict=True))
    assert pairs == {"--model": str(model), "--served-model-name": "m", "--host": "127.0.0.1",
                     "--port": "9000", "--max-model-len": "2048", "--dtype": "auto",
                     "--max-num-seqs": "4"}
    assert argv[17:] == ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "2",
                         "--structured-outputs-config",
                         json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
                         "--api-key", "k", "--x"]
    env = launch.environment({"PATH": "/bin", "VLLM_LOGGING_LEVEL": "WARNING"})
    assert env == {"PATH": "/bin", "VLLM_LOGGING_LEVEL": "DEBUG", "VLLM_CPU_KVCACHE_SPACE": "1",
                   "PYTHONUNBUFFERED": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    assert launch.base_url == "http://127.0.0.1:9000/v1"


def test_default_venv_follows_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("BATOS_VLLM_VENV", str(tmp_path / "v"))
    assert vllm.default_venv() == tmp_path / "v"
    monkeypatch.delenv("BATOS_VLLM_VENV")
    assert vllm.default_venv() == Path.home() / ".cache" / "batos" / "vllm-venv"


def _models(request: httpx.Request) -> httpx.Response:
    """vLLM's ``GET /v1/models`` behind ``--api-key secret``; ``/broken/`` answers nonsense."""
    if request.url.path == "/broken/v1/models":
        return httpx.Response(200, json={"data": "not a list"})
    if request.url.path != "/v1/models":
        return httpx.Response(404)
    if request.headers.get("Authorization") != "Bearer secret":
        return httpx.Response(401, json={"error": "Unauthorized"})
    return httpx.Response(200, json={"data": [{"id": "tiny"}]})


@pytest.fixture(params=WAYS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    where = serve(_models, request.param)
    try:
        yield where
    finally:
        where.close()


def test_the_readiness_check_asks_for_the_model_list(served: Served):
    base_url, seam = f"{served.url}/v1", served.transport
    assert vllm.ready(base_url, api_key="secret", transport=seam)
    assert vllm.models(base_url, api_key="secret", transport=seam) == [{"id": "tiny"}]
    assert not vllm.ready(base_url, transport=seam)  # refused without the key
    with pytest.raises(OSError, match="HTTP 401"):
        vllm.models(base_url, transport=seam)
    assert not vllm.ready(f"{served.url}/broken/v1", api_key="secret", transport=seam)
    with pytest.raises(ValueError, match="'data' list"):
        vllm.models(f"{served.url}/broken/v1", transport=seam)


def test_the_readiness_check_when_nobody_answers():
    with socket.socket() as sock:  # bound, not listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        assert not vllm.ready(base_url)
        with pytest.raises(ConnectionError, match=base_url):
            vllm.models(base_url)

    def silent(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(TimeoutError, match="within 2s"):
        vllm.models("http://127.0.0.1:9/v1", timeout=2, transport=httpx.MockTransport(silent))
    assert not vllm.ready("http://127.0.0.1:9/v1", transport=httpx.MockTransport(silent))


def test_the_readiness_check_never_goes_through_a_proxy(monkeypatch: pytest.MonkeyPatch):
    where = serve(_models, "loopback")
    try:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, "http://127.0.0.1:9")  # nobody there
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        assert vllm.ready(f"{where.url}/v1", api_key="secret")
    finally:
        where.close()
