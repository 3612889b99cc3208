"""The real vLLM CPU server serving the locally built tiny model, through its HTTP API.

Tests marked ``vllm`` share the session's ``vllm_server`` (tests/integration/
vllm_fixtures.py). The tiny model writes noise, so structured output is checked
with a schema whose every value is bounded (enums, booleans, small integers): the
grammar then forces a short, valid document whatever the weights say.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.integration.vllm_fixtures import CONTEXT
from weaver.vllm_server import VllmNotInstalled, VllmServer, VllmStartFailed, find_vllm_python


def post(url: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["method", "acts", "none"]
    approved: bool
    score: int = Field(ge=0, le=9)


@pytest.mark.vllm
def test_server_lists_the_served_model(vllm_server):
    models = {m["id"]: m for m in vllm_server.models()}
    assert vllm_server.model in models
    assert models[vllm_server.model]["root"] == str(vllm_server.model_path)
    assert models[vllm_server.model]["max_model_len"] == CONTEXT


@pytest.mark.vllm
def test_chat_completion_answers(vllm_server):
    began = time.monotonic()
    reply = post(
        f"{vllm_server.base_url}/chat/completions",
        {
            "model": vllm_server.model,
            "messages": [{"role": "user", "content": "Say something."}],
            "max_tokens": 8,
            "temperature": 0,
        },
    )
    elapsed = time.monotonic() - began
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in {"length", "stop"}
    assert 0 < reply["usage"]["completion_tokens"] <= 8
    # The ChatML template was applied: the prompt is more than the bare words.
    assert reply["usage"]["prompt_tokens"] > 8
    print(f"chat completion, 8 tokens: {elapsed * 1000:.0f} ms")


@pytest.mark.vllm
def test_structured_output_is_schema_valid_json(vllm_server):
    schema = Verdict.model_json_schema()
    for seed in range(3):
        reply = post(
            f"{vllm_server.base_url}/chat/completions",
            {
                "model": vllm_server.model,
                "messages": [{"role": "user", "content": "Judge this method."}],
                "max_tokens": 64,
                "temperature": 1.0,
                "seed": seed,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "verdict", "schema": schema},
                },
            },
        )
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        verdict = Verdict.model_validate_json(choice["message"]["content"])
        assert verdict.kind in {"method", "acts", "none"}


def test_find_vllm_python_names_the_install_script(tmp_path, monkeypatch):
    monkeypatch.setenv("BATOS_VLLM_VENV", str(tmp_path / "nowhere"))
    with pytest.raises(VllmNotInstalled, match="scripts/install-vllm"):
        find_vllm_python()
    (tmp_path / "empty" / "bin").mkdir(parents=True)
    (tmp_path / "empty" / "bin" / "python").symlink_to(sys.executable)
    with pytest.raises(VllmNotInstalled, match="without vLLM"):
        find_vllm_python(tmp_path / "empty")


def test_server_that_exits_fails_fast_with_its_log(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    # This Python has no vLLM: the child dies at once, and start() must say so.
    server = VllmServer(model, python=sys.executable, log_path=tmp_path / "vllm.log",
                        startup_timeout=60)
    began = time.monotonic()
    with pytest.raises(VllmStartFailed, match="exited with status") as info:
        server.start()
    assert time.monotonic() - began < 30
    assert "vllm" in str(info.value)  # the log's tail: No module named 'vllm...'
    assert not server.alive()


def test_tiny_model_is_deterministic_and_reused(tmp_path):
    pytest.importorskip("transformers")
    from weaver.tinymodel import build_tiny_model

    corpus = ["def greet(self, name):\n    return f'hello {name}'\n" * 50]
    small = {"hidden_size": 64, "heads": 2, "layers": 1, "vocab_size": 400, "corpus": corpus}
    first = build_tiny_model(tmp_path / "a", **small)
    second = build_tiny_model(tmp_path / "b", **small)
    names = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    config = json.loads((first / "config.json").read_text())
    assert config["max_position_embeddings"] >= 2048
    tokenizer_config = json.loads((first / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tokenizer_config["chat_template"]

    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tmp_path / "a", **small) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    with pytest.raises(FileExistsError, match="choose another path"):
        build_tiny_model(tmp_path / "a", **{**small, "seed": 1})


def test_tiny_model_answers_chat_in_transformers(tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from weaver.tinymodel import build_tiny_model

    folder: Path = build_tiny_model(
        tmp_path / "m", hidden_size=64, heads=2, layers=1, vocab_size=400,
        corpus=["the image keeps its objects while it changes itself. " * 40],
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )["input_ids"]
    assert tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4 or tokenizer.eos_token_id in out[0].tolist()
