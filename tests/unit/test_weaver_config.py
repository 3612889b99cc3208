"""Choosing a mind from configuration keys and from BATOS_MIND_* variables; NoMind."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import weaver
from weaver import (
    BadMindConfig,
    MindConfig,
    NoMind,
    OpenAIClient,
    Recorder,
    ReplayBackend,
    WeaverError,
    mind_from_config,
    mind_from_env,
)


def test_nothing_set_is_none():
    assert mind_from_env({}) is None
    assert mind_from_env({"BATOS_MIND_URL": "  ", "OTHER": "x"}) is None


def test_no_mind_says_how_to_configure_one():
    message = str(NoMind())
    for hint in ("BATOS_MIND_URL", "BATOS_MIND_MODEL", "BATOS_MIND_LOCAL", "BATOS_MIND_REPLAY",
                 "BATOS_MIND_RECORD", "BATOS_MIND_API_KEY", '"backend"'):
        assert hint in message
    assert isinstance(NoMind(), WeaverError)
    assert NoMind().to_dict()["type"] == "NoMind"


def test_openai_from_env():
    mind = mind_from_env({"BATOS_MIND_URL": "http://127.0.0.1:8000", "BATOS_MIND_MODEL": "tiny",
                          "BATOS_MIND_TIMEOUT": "5", "BATOS_MIND_RETRIES": "0",
                          "BATOS_MIND_STRUCTURED": "off"})
    assert isinstance(mind, OpenAIClient)
    assert (mind.base_url, mind.model, mind.timeout, mind.retries, mind.structured) == (
        "http://127.0.0.1:8000/v1", "tiny", 5.0, 0, False)


def test_replay_and_record_from_env(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    replay = mind_from_env({"BATOS_MIND_REPLAY": str(path)})
    assert isinstance(replay, ReplayBackend)
    assert replay.path == path
    record = mind_from_env({"BATOS_MIND_RECORD": str(tmp_path / "new.jsonl"),
                            "BATOS_MIND_URL": "http://h:1/v1", "BATOS_MIND_MODEL": "m"})
    assert isinstance(record, Recorder)
    assert isinstance(record.backend, OpenAIClient)
    assert (tmp_path / "new.jsonl").exists()


@pytest.mark.parametrize(("env", "complaint"), [
    ({"BATOS_MIND_URL": "http://h:1"}, "BATOS_MIND_MODEL is not set"),
    ({"BATOS_MIND_MODEL": "m"}, "BATOS_MIND_URL is not set"),
    ({"BATOS_MIND_RECORD": "x.jsonl"}, "BATOS_MIND_URL is not set"),
    ({"BATOS_MIND_URL": "http://h:1", "BATOS_MIND_MODEL": "m", "BATOS_MIND_REPLAY": "r"},
     "both set"),
    ({"BATOS_MIND_LOCAL": "d", "BATOS_MIND_REPLAY": "r"}, "both set"),
    ({"BATOS_MIND_URL": "h:1", "BATOS_MIND_MODEL": "m"}, "not an http"),
    ({"BATOS_MIND_URL": "http://h:1", "BATOS_MIND_MODEL": "m", "BATOS_MIND_TIMEOUT": "soon"},
     "not a float"),
    ({"BATOS_MIND_URL": "http://h:1", "BATOS_MIND_MODEL": "m", "BATOS_MIND_STRUCTURED": "maybe"},
     "use 1, 0 or auto"),
    ({"BATOS_MIND_LOCAL": "/nonexistent/model"}, "no config.json"),
])
def test_bad_env_is_bad_mind_config(env, complaint):
    with pytest.raises(BadMindConfig, match=complaint) as info:
        mind_from_env(env)
    assert isinstance(info.value, NoMind)


def test_config_dict_and_model():
    mind = mind_from_config({"backend": "openai", "base_url": "http://h:1/v1/", "model": "m",
                             "api_key_env": "NOPE_NOT_SET", "structured": True, "retries": 5})
    assert isinstance(mind, OpenAIClient)
    assert (mind.base_url, mind.structured, mind.retries) == ("http://h:1/v1", True, 5)
    cfg = MindConfig(backend="openai", base_url="http://h:1", model="m")
    assert isinstance(mind_from_config(cfg), OpenAIClient)


@pytest.mark.parametrize(("cfg", "complaint"), [
    ({"backend": "openai", "model": "m"}, "needs base_url"),
    ({"backend": "record", "base_url": "http://h:1", "model": "m"}, "needs path"),
    ({"backend": "transformers"}, "needs path"),
    ({"backend": "oracle"}, "backend"),
    ({"backend": "replay", "path": "x", "colour": "red"}, "colour"),
    ({"backend": "openai", "base_url": "http://h", "model": "m", "timeout": 0}, "timeout"),
])
def test_bad_config_is_bad_mind_config(cfg, complaint):
    with pytest.raises(BadMindConfig, match=complaint):
        mind_from_config(cfg)


def test_public_api_is_pinned():
    assert sorted(weaver.__all__) == sorted([
        "Answer", "BadAnswer", "BadMindConfig", "ChatBackend", "MindConfig", "MindProtocolError",
        "MindRejected", "MindTimeout", "MindUnavailable", "NoMind", "OpenAIClient", "Recorder",
        "ReplayBackend", "ReplayMiss", "TransformersBackend", "TransientError", "WeaverError",
        "extract_code", "extract_json", "mind_from_config", "mind_from_env", "request_key",
    ])


def test_error_tree():
    assert issubclass(weaver.MindTimeout, weaver.MindUnavailable)
    assert issubclass(weaver.MindUnavailable, weaver.TransientError)
    assert not issubclass(weaver.MindRejected, weaver.TransientError)
    for name in ("NoMind", "MindUnavailable", "MindRejected", "MindProtocolError", "BadAnswer",
                 "ReplayMiss"):
        assert issubclass(getattr(weaver, name), WeaverError)


CLIENT_MODULES = ["__init__", "errors", "chat", "openai", "local", "replay", "extract", "config"]


@pytest.mark.parametrize("name", CLIENT_MODULES)
def test_client_layer_imports_only_stdlib_and_pydantic_at_module_level(name):
    # torch/transformers come with the train extra; importing weaver must not need them.
    path = Path(weaver.__file__).parent / f"{name}.py"
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    # lexicon, the shared floor, is itself the standard library and pydantic only; httpx
    # (the mind's HTTP) is a base dependency of batos, not an extra
    assert found - set(sys.stdlib_module_names) <= {"weaver", "lexicon", "pydantic", "httpx"}, \
        found
