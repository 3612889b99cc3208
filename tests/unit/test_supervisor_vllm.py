"""The supervisor's vLLM child: the ``[vllm]`` table, its argv and env, and the state machine.

The state machine runs against a fake process at its own seam (``launch``/``probe``); the
clock is explicit. The real server is in tests/integration/test_supervisor_vllm.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from supervisor.config import Config, Home, load_config
from supervisor.errors import ConfigError
from supervisor.incarnations import inquiry_config, mind_config
from supervisor.vllm import VllmChild, VllmConfig, default_python
from tests.conftest import wait_until


class FakeHandle:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.killed = False
        self.reaped = False
        self.stopped_with: float | None = None

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.killed = True
        self.code = -9

    def reap(self) -> None:
        self.reaped = True

    def stop(self, grace: float) -> int | None:
        self.stopped_with = grace
        if self.code is None:
            self.code = 0
        return self.code


class FakeServer:
    """The seam: ``launch`` hands out FakeHandles, ``probe`` answers ``up``."""

    def __init__(self) -> None:
        self.launched: list[tuple[list[str], dict[str, str], FakeHandle]] = []
        self.up = threading.Event()

    def launch(self, argv: list[str], env: dict[str, str], log_file: Path) -> FakeHandle:
        handle = FakeHandle(1000 + len(self.launched))
        self.launched.append((argv, env, handle))
        return handle

    def probe(self, base_url: str) -> bool:
        return self.up.is_set()

    @property
    def handle(self) -> FakeHandle:
        return self.launched[-1][2]


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


def make(model: Path, python: Path, server: FakeServer, **options: object) -> VllmChild:
    config = VllmConfig(enabled=True, model=str(model), python=str(python), **options)
    child = VllmChild(config, model.parent / "vllm.log", degraded_retry=100.0,
                      launch=server.launch, probe=server.probe)
    return child


# --- configuration -------------------------------------------------------------------


def test_off_by_default_and_strict():
    assert Config().vllm.enabled is False
    with pytest.raises(ValidationError, match="extra"):
        VllmConfig(modle="x")
    with pytest.raises(ValidationError, match="needs model"):
        VllmConfig(enabled=True)


def test_a_vllm_table_in_the_config_file(tmp_path: Path):
    file = tmp_path / "config.toml"
    file.write_text('[vllm]\nenabled = true\nmodel = "/models/tiny"\nport = 8123\n')
    config = load_config(file, Home.at(tmp_path))
    assert config.vllm.port == 8123
    assert config.vllm.served_name == "tiny"
    file.write_text("[vllm]\nenabled = true\n")
    with pytest.raises(ConfigError, match="vllm"):
        load_config(file, Home.at(tmp_path))


def test_argv_and_environment(model: Path, python: Path):
    config = VllmConfig(enabled=True, model=str(model), python=str(python), port=8001,
                        served_model_name="tiny-llama", dtype="float32", max_loras=3,
                        extra_args=["--enforce-eager"], kv_cache_gib=2)
    argv = config.argv()
    assert argv[:3] == [str(python), "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--model"] == str(model)
    assert pairs["--served-model-name"] == "tiny-llama"
    assert pairs["--host"] == "127.0.0.1"
    assert pairs["--port"] == "8001"
    assert pairs["--dtype"] == "float32"
    assert argv[-6:] == ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "3",
                         "--enforce-eager"]
    env = config.environment({"PATH": "/bin"})
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["PATH"] == "/bin"
    plain = config.model_copy(update={"enable_lora": False})
    assert "--enable-lora" not in plain.argv()
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in plain.environment({})


def test_default_python_follows_the_venv_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("BATOS_VLLM_VENV", str(tmp_path / "v"))
    assert default_python() == tmp_path / "v" / "bin" / "python"
    monkeypatch.delenv("BATOS_VLLM_VENV")
    assert default_python() == Path.home() / ".cache" / "batos" / "vllm-venv" / "bin" / "python"


def test_incarnations_get_a_mind_pointed_at_the_server(model: Path):
    on = VllmConfig(enabled=True, model=str(model), port=8002, served_model_name="m")
    assert mind_config(Config(vllm=on)) == {
        "backend": "openai", "base_url": "http://127.0.0.1:8002/v1", "model": "m",
        "max_loras": 2, "max_lora_rank": 16}
    assert mind_config(Config(vllm=on, mind={"backend": "replay"})) == {"backend": "replay"}
    assert mind_config(Config()) == {}


def test_incarnations_get_the_inquiry_loop_pointed_at_the_server(model: Path, tmp_path: Path):
    home = Home.at(tmp_path / "home")
    assert inquiry_config(Config(), home) == {}
    on = VllmConfig(enabled=True, model=str(model), port=8002, max_loras=3)
    table = inquiry_config(Config(vllm=on, inquiry={"interval": 5}), home)
    assert table["base_model"] == str(model)
    assert table["vllm_url"] == "http://127.0.0.1:8002/v1"
    assert table["max_loras"] == 3
    assert table["interval"] == 5
    assert table["home"] == str(home.root)
    mine = inquiry_config(Config(vllm=on, inquiry={"base_model": "/other"}), home)
    assert mine["base_model"] == "/other"


def test_port_zero_is_fixed_once(model: Path, python: Path):
    child = make(model, python, FakeServer())
    assert child.config.port > 0
    assert child.status()["base_url"] == f"http://127.0.0.1:{child.config.port}/v1"


# --- the state machine -------------------------------------------------------------------


def test_starting_then_ready_once_the_server_answers(model: Path, python: Path):
    server = FakeServer()
    child = make(model, python, server)
    [(kind, data)] = child.start(0.0)
    assert kind == "vllm.starting"
    assert data["pid"] == 1000
    assert server.launched[0][1]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert child.step(1.0) == []
    assert child.state == "starting"
    server.up.set()
    events = wait_until(lambda: child.step(2.0), timeout=5)
    assert events[0][0] == "vllm.ready"
    assert child.status()["state"] == "ready"
    child.stop()
    assert server.handle.stopped_with == child.config.stop_grace
    assert child.state == "stopped"
    assert child.pid is None


def test_an_exit_is_restarted_after_a_backoff_on_the_same_port(model: Path, python: Path):
    server = FakeServer()
    server.up.set()
    child = make(model, python, server)
    child.start(0.0)
    wait_until(lambda: child.step(1.0), timeout=5)
    port = child.config.port
    server.handle.code = -9
    [(kind, data)] = child.step(5.0)
    assert kind == "vllm.exited"
    assert data == {"pid": 1000, "exit_code": -9, "restarts": 0, "delay": 1.0}
    assert server.handle.reaped  # its leftovers are killed at once
    assert child.state == "restarting"
    assert child.step(5.5) == []
    [(kind, data)] = child.step(6.0)
    assert (kind, data["pid"]) == ("vllm.starting", 1001)
    assert child.restarts == 1
    assert server.launched[1][0] == server.launched[0][0]
    assert child.config.port == port
    child.stop()


def test_a_server_that_never_answers_is_killed(model: Path, python: Path):
    server = FakeServer()
    child = make(model, python, server, startup_timeout=30)
    child.start(0.0)
    assert child.step(29.0) == []
    child.step(31.0)
    assert server.handle.killed
    [(kind, _)] = child.step(31.1)
    assert kind == "vllm.exited"
    assert child.state == "restarting"
    child.stop()


def test_too_many_exits_fail_then_retry_later(model: Path, python: Path):
    server = FakeServer()
    child = make(model, python, server, max_restarts=1)
    now = 0.0
    child.start(now)
    server.handle.code = 1
    child.step(now := now + 1)
    child.step(now := now + 1)  # restarted after 1 s
    server.handle.code = 1
    events = child.step(now := now + 1)
    assert [k for k, _ in events] == ["vllm.exited"]
    assert child.state == "failed"
    assert "2 exits" in child.reason
    assert child.step(now + 50) == []
    [(kind, _)] = child.step(now + 100)
    assert kind == "vllm.starting"
    child.stop()


def test_nothing_to_start_fails_with_what_to_do(model: Path, tmp_path: Path):
    server = FakeServer()
    child = make(model, tmp_path / "nowhere" / "python", server)
    [(kind, data)] = child.start(0.0)
    assert kind == "vllm.failed"
    assert "scripts/install-vllm" in data["reason"]
    assert server.launched == []
    assert child.status()["state"] == "failed"
