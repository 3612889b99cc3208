"""The Characterological Inquiry Loop end to end on CPU: real image, training, crucible, vLLM.

An image lives a scripted history (three methods synthesized by a scripted mind, so
the synthesis log has records), then the loop, wired by ``batos.root.inquiry.build_loop``
exactly as an incarnation wires it, sees it idle with a CEM below the threshold and
runs a cycle: dataset -> LoRA training (a few steps) in the uv training env ->
held-out evaluation against the base model -> the crucible's adapter review ->
registerAdapter: -> loaded on the session's vLLM server -> switchFacet:to: (become:).
A completion with ``model=<adapter>`` then answers.

The negative case runs a second cycle with learning rate 0: its adapter is the base
model again, which cannot beat the adapter now serving the facet; it is recorded and
discarded (kept under ``inquiry/discarded/``), and the facet is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batos.root.inquiry import build_loop, refresh
from tests.unit.test_synthesis import ScriptedChat, ScriptedCrucible
from uvm import Kernel, bootstrap, open_db
from uvm.synthesis import Synthesizer
from weaver.lora import LoraRuntime
from weaver.openai import OpenAIClient
from weaver.train_env import default_root

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.timeout(1800)]

FACET = "persona response"
METHODS = {
    "greet:": 'def greet(self, who):\n    return "hello " + who\n',
    "double:": "def double(self, x):\n    return 2 * x\n",
    "shout:": "def shout(self, text):\n    return text.upper() + '!'\n",
}
TABLE = {"lr": 1e-3, "max_steps": 6, "budget_seconds": 1500, "max_length": 384,
         "eval_limit": 3, "eval_max_new_tokens": 16, "facet": FACET}


def live(db: Any) -> None:
    """The scripted history: each selector is missing, the mind writes it, it answers."""
    for selector, source in METHODS.items():
        chat = ScriptedChat({"thought": f"{selector} is missing; write it", "source": source})
        Kernel(db, mind=Synthesizer(chat, ScriptedCrucible(True))).send("genesis", selector, ["a"])


class World:
    def __init__(self, root: Path, server: Any) -> None:
        self.db = open_db(root / "live_image.fs")
        bootstrap(self.db)
        live(self.db)
        self.kernel = Kernel(self.db)
        self.events: list[tuple[str, dict]] = []
        self.lora = LoraRuntime.for_server(server)
        self.server = server
        self.loop = build_loop(self.kernel, home=root, base_model=server.model_path,
                               lora=self.lora, table=TABLE, env_root=default_root(),
                               publish=lambda kind, **d: self.events.append((kind, d)))
        for key, value in (("enabled", True), ("idle_seconds", 60), ("threshold", 0.9),
                           ("min_interval", 0)):
            self.kernel.send("weaver", "setInquiry:to:", [key, value])
        refresh(self.loop, self.kernel, TABLE)

    def close(self) -> None:
        for name in self.lora.lru():
            self.lora.evict(name)
        self.db.close()


@pytest.fixture(scope="module")
def world(vllm_server, tmp_path_factory):
    w = World(tmp_path_factory.mktemp("inquiry"), vllm_server)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def first(world):
    loop = world.loop
    loop.touch(loop.clock())
    ok, why = loop.should_run()
    assert not ok
    assert "not idle" in why
    loop.touch(loop.clock() - 120)  # no client request for two minutes
    ok, why = loop.should_run()
    assert ok, why
    return loop.maybe_run()


def test_idle_low_cem_cycle_trains_and_switches_the_facet(world, first):
    record = first
    assert record["outcome"] == "switched", json.dumps(record, default=str)[:3000]
    name = record["adapter"]
    k = world.kernel
    assert k.send("weaver", "facetFor:", [FACET]) == name
    assert name in k.send("weaver", "adapters", [])
    assert record["dataset"]["turns"] > len(METHODS)
    assert record["scores"]["against"] == "base"
    assert record["scores"]["new"]["loss"] < record["scores"]["current"]["loss"]
    assert record["verdict"]["approved"]
    assert set(record["phases"]) >= {"dataset", "train", "evaluate", "review", "register",
                                     "load", "switch"}
    (cycle,) = k.send("weaver", "cycles", [])
    assert cycle["outcome"] == "switched"
    assert cycle["adapter"] == name
    kinds = [kind for kind, _ in world.events if kind != "image.inquiry.progress"]
    assert kinds[0] == "image.inquiry.start"
    assert kinds[-1] == "image.inquiry.done"
    # in use: vLLM lists it and answers with it
    assert name in world.lora.loaded()
    answer = OpenAIClient(world.server.base_url, model=name, retries=0, timeout=120).chat(
        [{"role": "user", "content": "who are you?"}], max_tokens=8)
    assert answer.model == name
    assert isinstance(answer.text, str)


def test_an_adapter_that_does_not_beat_the_current_one_is_discarded(world, first):
    current = first["adapter"]
    loop = world.loop
    loop.trainer.lr = 0.0  # the new adapter is the base model again: it cannot win
    loop.config.max_steps = 1
    record = loop.run_cycle()
    assert record["outcome"] == "discarded", json.dumps(record, default=str)[:3000]
    assert record["scores"]["against"] == current
    assert not record["verdict"]["approved"]
    assert any("does not beat" in r for r in record["verdict"]["reasons"])
    k = world.kernel
    assert k.send("weaver", "facetFor:", [FACET]) == current
    assert record["adapter"] not in k.send("weaver", "adapters", [])
    kept = Path(record["adapter_path"])
    assert kept.parent.name == "discarded"
    assert (kept / "discarded.json").is_file()
    assert (kept / "adapter_config.json").is_file()
    assert record["adapter"] not in world.lora.loaded()
    cycles = k.send("weaver", "cycles", [])
    assert [c["outcome"] for c in cycles] == ["switched", "discarded"]
