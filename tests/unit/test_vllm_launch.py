"""envs.vllm: the one vLLM launch description, and both of its callers taking theirs from it.

The supervisor's ``[vllm]`` child (``supervisor.vllm.VllmConfig``) and the weaver's
``weaver.vllm_server.VllmServer`` describe the same server the same way; the real
server is in tests/integration/test_vllm_server.py and test_supervisor_vllm.py.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from envs import vllm
from envs.vllm import VllmLaunch
from supervisor.vllm import VllmConfig
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


class _Models(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        if self.path != "/v1/models":
            self.send_error(404)
            return
        if self.headers.get("Authorization") != "Bearer secret":
            self.send_error(401)
            return
        body = json.dumps({"data": [{"id": "tiny"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_readiness_check_asks_for_the_model_list():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        assert vllm.ready(base_url, api_key="secret")
        assert vllm.models(base_url, api_key="secret") == [{"id": "tiny"}]
        assert not vllm.ready(base_url)  # refused without the key
        assert not vllm.ready(f"http://127.0.0.1:{vllm.free_port()}/v1")  # nobody listens
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
