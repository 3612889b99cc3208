"""The adapter runtime against the real vLLM server: LRU under a budget, errors, outputs.

The session's server (tests/integration/vllm_fixtures.py) runs with
``--max-loras 2 --max-lora-rank 16``. Adapters are small random PEFT LoRAs on the
tiny model, with non-zero B weights (``init_lora_weights=False``) so they change what
the model says; one has rank 32 for the rank error. Every test leaves the server
without the adapters it loaded.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from weaver.adapters import AdapterInfo, describe_adapter
from weaver.errors import (
    AdapterNameConflict,
    AdapterNotFound,
    AdapterNotLoaded,
    AdapterRankTooLarge,
    MindUnavailable,
)
from weaver.lora import LoraRuntime
from weaver.vllm_server import free_port

pytestmark = pytest.mark.vllm

PROMPT = "def greet(self, name):\n    return"
STEPS = 4


def make_adapter(base: Path, out: Path, *, rank: int, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(vllm_server, tmp_path_factory) -> dict[str, AdapterInfo]:
    pytest.importorskip("peft")
    folder = tmp_path_factory.mktemp("adapters")
    specs = {"a": (8, 1), "b": (8, 2), "c": (8, 3), "wide": (32, 4)}
    return {
        key: describe_adapter(
            make_adapter(vllm_server.model_path, folder / key, rank=rank, seed=seed),
            facet="persona" if key != "a" else "code",
        )
        for key, (rank, seed) in specs.items()
    }


@pytest.fixture
def runtime(vllm_server):
    runtime = LoraRuntime.for_server(vllm_server)
    before = set(runtime.loaded())
    yield runtime
    for name in set(runtime.loaded()) - before:
        runtime.unload(name)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def test_names_are_content_hashes(adapters):
    a, b = adapters["a"], adapters["b"]
    assert a.name.startswith("code-")
    assert len(a.name) == len("code-") + 12
    assert a.name != b.name
    assert (a.rank, adapters["wide"].rank) == (8, 32)
    assert a.size_bytes > 0


def test_budget_of_two_loads_uses_and_evicts_least_recently_used(runtime, adapters, vllm_server):
    a, b, c = adapters["a"], adapters["b"], adapters["c"]
    assert runtime.max_adapters == vllm_server.max_loras == 2
    assert runtime.ensure(a) == a.name
    assert runtime.ensure(b) == b.name
    served = runtime.loaded()
    assert {a.name, b.name} <= set(served)
    assert served[a.name] == a.path
    runtime.ensure(a)  # a is now the most recently used; b goes next
    runtime.ensure(c)
    served = runtime.loaded()
    assert a.name in served
    assert c.name in served
    assert b.name not in served
    assert runtime.lru() == [a.name, c.name]
    # The parent of each LoRA card is the served base model.
    cards = {m["id"]: m for m in vllm_server.models()}
    assert cards[c.name]["parent"] == vllm_server.model
    # A loaded adapter answers completions under its name.
    reply = post(
        f"{vllm_server.base_url}/completions",
        {"model": c.name, "prompt": PROMPT, "max_tokens": 3, "temperature": 0},
    )
    assert reply["model"] == c.name
    assert reply["usage"]["completion_tokens"] == 3


def test_rank_above_the_maximum_is_refused_before_asking(runtime, adapters):
    before = runtime.loaded()
    with pytest.raises(AdapterRankTooLarge, match="--max-lora-rank 32"):
        runtime.ensure(adapters["wide"])
    assert runtime.loaded() == before


def test_rank_error_from_the_server_is_translated(vllm_server, adapters):
    # A runtime told the wrong maximum asks the server, which refuses.
    runtime = LoraRuntime(vllm_server.base_url, max_adapters=2, max_rank=64)
    with pytest.raises(AdapterRankTooLarge, match="vLLM said"):
        runtime.ensure(adapters["wide"])
    assert adapters["wide"].name not in runtime.loaded()


def test_missing_path(runtime, adapters, tmp_path):
    ghost = adapters["a"].model_copy(update={"path": str(tmp_path / "gone"), "name": "ghost-0"})
    with pytest.raises(AdapterNotFound, match="gone"):
        runtime.ensure(ghost)
    assert "ghost-0" not in runtime.loaded()


def test_duplicate_name(runtime, adapters, vllm_server):
    a = adapters["a"]
    runtime.load(a)
    with pytest.raises(AdapterNameConflict, match="already been loaded"):
        runtime.load(a)
    # A fresh runtime adopts what is loaded under a content-hashed name.
    other = LoraRuntime.for_server(vllm_server)
    assert other.ensure(a) == a.name
    assert other.lru() == [a.name]
    base = a.model_copy(update={"name": vllm_server.model})
    with pytest.raises(AdapterNameConflict, match="base model"):
        runtime.load(base)


def test_unknown_adapter_on_unload(runtime):
    with pytest.raises(AdapterNotLoaded, match="no adapter named nobody-000000000000"):
        runtime.unload("nobody-000000000000")


def test_unreachable_server():
    runtime = LoraRuntime(f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with pytest.raises(MindUnavailable, match="cannot be reached"):
        runtime.loaded()


def greedy_vllm(vllm_server, model: str, ids: list[int]) -> tuple[list[int], list[dict]]:
    reply = post(
        f"{vllm_server.base_url}/completions",
        {
            "model": model,
            "prompt": ids,
            "max_tokens": STEPS,
            "temperature": 0,
            "logprobs": 5,
            "return_tokens_as_token_ids": True,
        },
    )
    logprobs = reply["choices"][0]["logprobs"]
    tokens = [int(t.removeprefix("token_id:")) for t in logprobs["tokens"]]
    top = [{int(k.removeprefix("token_id:")): v for k, v in step.items()}
           for step in logprobs["top_logprobs"]]
    return tokens, top


def test_completion_with_adapter_matches_transformers_and_peft(runtime, adapters, vllm_server):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = adapters["b"]
    tokenizer = AutoTokenizer.from_pretrained(vllm_server.model_path)
    ids = tokenizer(PROMPT)["input_ids"]

    base = AutoModelForCausalLM.from_pretrained(vllm_server.model_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, info.path).merge_and_unload().eval()
    expected: list[int] = []
    expected_top: list[dict[int, float]] = []
    context = list(ids)
    with torch.no_grad():
        for _ in range(STEPS):
            logits = merged(torch.tensor([context])).logits[0, -1]
            logprobs = torch.log_softmax(logits, dim=-1)
            values, indices = logprobs.topk(5)
            expected_top.append(dict(zip(indices.tolist(), values.tolist(), strict=True)))
            expected.append(int(indices[0]))
            context.append(int(indices[0]))

    with runtime.use(info) as name:
        got, got_top = greedy_vllm(vllm_server, name, ids)
    plain, _ = greedy_vllm(vllm_server, vllm_server.model, ids)

    assert got == expected, (got, expected)
    for step, (theirs, ours) in enumerate(zip(got_top, expected_top, strict=True)):
        assert list(theirs)[0] == list(ours)[0], step
        assert abs(theirs[got[step]] - ours[expected[step]]) < 1e-3, step
    assert plain != got, "the adapter should change the model's greedy tokens"
