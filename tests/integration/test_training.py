"""Real training on CPU: LoRA and 4-bit QLoRA in the uv training env, then evaluation.

The training env is built once per spec under ``$BATOS_TRAIN_ENVS`` (default
``~/.cache/batos/train-envs``) and reused across runs; the first build takes a minute.
"""

from __future__ import annotations

import argparse
import json
import subprocess

import pytest

from batos import train as train_cli
from weaver import dataset, train_env

pytestmark = pytest.mark.integration

STEPS = 4


@pytest.fixture(scope="session")
def env():
    return train_env.ensure_env(train_env.default_root())


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from weaver.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("narrative")
    dataset.build(out, dataset.collect({}, [], with_templates="all"))
    return out


def _cli(argv, capsys):
    parser = argparse.ArgumentParser()
    train_cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    rc = args.func(args)
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def _train(tmp_path_factory, data, tiny, qlora):
    out = tmp_path_factory.mktemp("adapters") / ("qlora" if qlora else "lora")
    events = []
    done = train_env.run_module(
        train_env.ensure_env(train_env.default_root()), "weaver.training",
        ["--data", str(data), "--base", str(tiny), "--out", str(out), "--steps", str(STEPS),
         "--max-length", "384", "--facet", "code"] + (["--qlora"] if qlora else []),
        on_event=events.append, log_path=out.parent / "train.log", timeout=900)
    return out, done["summary"], events


@pytest.fixture(scope="session")
def lora(env, tmp_path_factory, data, tiny):
    return _train(tmp_path_factory, data, tiny, qlora=False)


@pytest.fixture(scope="session")
def qlora(env, tmp_path_factory, data, tiny):
    return _train(tmp_path_factory, data, tiny, qlora=True)


def _check_adapter(out, summary, tiny, data):
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny.resolve())
    assert not config.get("modules_to_save")
    assert config["r"] == 8 <= 16  # within the test server's --max-lora-rank
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    record = json.loads((out / "batos_adapter.json").read_text())
    manifest = json.loads((data / dataset.MANIFEST_FILE).read_text())
    assert record["data_digest"] == manifest["data_digest"] == summary["data_digest"]
    assert record["facet"] == "code"
    assert summary["steps"] == STEPS
    print(f"\n{'QLoRA' if summary['qlora'] else 'LoRA'}: {summary['steps_per_s']} steps/s "
          f"({summary['seconds']}s for {summary['steps']} steps), loss {summary['final_loss']:.3f}")


PEFT_CHECK = """
import sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base, adapter = sys.argv[1], sys.argv[2]
ids = torch.tensor([[1, 5, 9, 13, 21, 34]])
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
with torch.no_grad():
    before = model(ids).logits
    tuned = PeftModel.from_pretrained(model, adapter).eval()
    after = tuned(ids).logits
print(float((after - before).abs().max()))
"""


def _logit_change(env, tiny, adapter) -> float:
    proc = subprocess.run([str(env.python), "-c", PEFT_CHECK, str(tiny), str(adapter)],
                          capture_output=True, text=True, timeout=300,
                          env={**train_env.CHILD_ENV, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.strip().splitlines()[-1])


def test_lora_trains_and_changes_the_logits(env, lora, tiny, data):
    out, summary, events = lora
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, STEPS + 1))
    assert all({"loss", "lr", "eta"} <= set(e) for e in steps)
    _check_adapter(out, summary, tiny, data)
    assert _logit_change(env, tiny, out) > 0


def test_qlora_trains_4bit_on_cpu(env, qlora, tiny, data):
    out, summary, _ = qlora
    assert summary["qlora"]
    assert summary["linear4bit_modules"] > 0
    _check_adapter(out, summary, tiny, data)
    assert _logit_change(env, tiny, out) > 0


def test_evaluate_scores_both_adapters(env, lora, qlora, tiny, data, capsys):
    rc, out = _cli(["evaluate", "--data", str(data), "--base", str(tiny), "--adapter", str(lora[0]),
                    "--against", str(qlora[0]), "--max-length", "384", "--max-new-tokens", "32",
                    "--json"], capsys)
    assert rc == 0
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith('{"adapter"')))
    for side in ("adapter", "against"):
        s = result[side]
        assert s["rows"] >= 1
        assert s["loss"] > 0
        assert 0 <= s["schema_valid_share"] <= 1
    assert result["against_kind"] == "adapter"
    assert isinstance(result["better"], bool)


def test_train_command_reports_a_bad_dataset(env, tiny, tmp_path, capsys):
    bad = tmp_path / "bad"
    dataset.build(bad, dataset.collect({}, [], with_templates="all"))
    (bad / dataset.CHATML_FILE).write_text('{"messages": []}\n')
    rc, out = _cli(["train", "--data", str(bad), "--base", str(tiny), "--out", str(tmp_path / "a"),
                  "--steps", "1", "--json"], capsys)
    assert rc == 1
    assert "changed since the manifest" in out


@pytest.mark.vllm
def test_vllm_loads_the_trained_lora_and_qlora_adapters(vllm_server, lora, qlora):
    import urllib.request

    from weaver.adapters import describe_adapter
    from weaver.lora import LoraRuntime

    runtime = LoraRuntime.for_server(vllm_server)
    for out, _summary, _events in (lora, qlora):
        info = describe_adapter(out, facet="code")
        name = runtime.ensure(info)
        try:
            assert name in runtime.loaded()
            body = json.dumps({"model": name, "prompt": "def double(self, x):",
                               "max_tokens": 4, "temperature": 0}).encode()
            request = urllib.request.Request(
                vllm_server.base_url + "/completions", data=body,
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as reply:
                answer = json.load(reply)
            assert answer["model"] == name
            assert answer["choices"][0]["text"] is not None
        finally:
            runtime.unload(name)
