"""The inquiry loop's decisions and ordering, with fakes at its own seams.

The image is a ``FakeWeaver`` answering the five weaver messages and ``entropy``; the
trainer writes a small PEFT-shaped folder and answers scripted scores; the review is
the real ``crucible.adapters`` reviewer. The same loop runs against a real image, real
training and a real vLLM server in tests/integration/test_inquiry.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from crucible.adapters import adapter_reviewer, review_adapter
from weaver.inquiry import InquiryBusy, InquiryConfig, InquiryError, InquiryLoop, facet_slug
from weaver.train_env import TrainingFailed

FACET = "persona response"


class FakeWeaver:
    def __init__(self, cem: float = 0.1) -> None:
        self.cem = cem
        self.adapters: dict[str, dict] = {}
        self.facets: dict[str, str] = {}
        self.cycles: list[dict] = []
        self.sent: list[tuple[str, str]] = []

    def send(self, target: str, selector: str, args: list[Any]) -> Any:
        self.sent.append((target, selector))
        if selector == "entropy":
            return {"cem": self.cem, "h_cog": 0.0, "structure": 0.2, "novelty": 0.0}
        assert target == "weaver"
        if selector == "registerAdapter:":
            self.adapters[args[0]["name"]] = args[0]
            return args[0]["name"]
        if selector == "facetFor:":
            return self.facets.get(args[0])
        if selector == "switchFacet:to:":
            assert args[1] in self.adapters, "switched to an unregistered adapter"
            previous, self.facets[args[0]] = self.facets.get(args[0]), args[1]
            return previous
        if selector == "recordCycle:":
            json.dumps(args[0])  # plain data only
            self.cycles.append(args[0])
            return len(self.cycles)
        raise AssertionError(f"unexpected {selector}")


class FakeTrainer:
    """Writes a LoRA-shaped folder; answers ``scores`` (new loss, current loss)."""

    def __init__(self, new_loss: float = 2.0, old_loss: float = 3.0, *, fail: Exception | None = None,
                 gate: threading.Event | None = None) -> None:
        self.new_loss, self.old_loss, self.fail, self.gate = new_loss, old_loss, fail, gate
        self.calls: list[tuple] = []
        self.n = 0

    def train(self, data, out, *, facet, steps, timeout, on_event=None):
        self.calls.append(("train", steps, timeout))
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise self.fail
        self.n += 1
        out.mkdir(parents=True)
        digest = json.loads((data / "manifest.json").read_text())["data_digest"]
        (out / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "r": 8, "base_model_name_or_path": "/models/tiny",
            "target_modules": ["q_proj"], "modules_to_save": None}))
        (out / "adapter_model.safetensors").write_bytes(b"w" * (100 + self.n))
        (out / "batos_adapter.json").write_text(json.dumps({"data_digest": digest}))
        if on_event:
            on_event({"event": "step", "step": 1, "steps": steps, "loss": 1.0})
        return {"steps": steps, "final_loss": 1.0, "seconds": 0.1, "cpu_seconds": 0.1}

    def evaluate(self, data, adapter, against, *, timeout):
        self.calls.append(("evaluate", against))
        score = {"loss": self.new_loss, "schema_valid_share": 0.0, "rows": 2}
        return {"adapter": score, "against": {**score, "loss": self.old_loss},
                "better": self.new_loss < self.old_loss, "held_out_rows": 2}


@pytest.fixture
def events():
    return []


def make_loop(tmp_path: Path, weaver: FakeWeaver, trainer: FakeTrainer, events: list, **config):
    loaded: list[str] = []
    loop = InquiryLoop(
        send=weaver.send, export=lambda: {}, trainer=trainer,
        review=adapter_reviewer(max_rank=16, base_model="/models/tiny"),
        load=lambda info: loaded.append(info.name) or info.name,
        work_dir=tmp_path / "inquiry", adapters_dir=tmp_path / "adapters",
        publish=lambda kind, **data: events.append((kind, data)),
        config=InquiryConfig.merged({"idle_seconds": 10, "min_interval": 100, "threshold": 0.5,
                                     "max_steps": 3, "budget_seconds": 60, "facet": FACET}, config),
        clock=lambda: 1000.0)
    loop.loaded = loaded
    loop.idle_since = 0.0
    return loop


def test_should_run_checks_each_condition(tmp_path, events):
    weaver = FakeWeaver(cem=0.1)
    loop = make_loop(tmp_path, weaver, FakeTrainer(), events)
    assert loop.should_run(1000.0) == (True, "idle 1000s and CEM 0.100 < 0.500")
    loop.touch(995.0)
    ok, why = loop.should_run(1000.0)
    assert not ok
    assert "not idle" in why
    loop.touch(0.0)
    weaver.cem = 0.7
    ok, why = loop.should_run(1000.0)
    assert not ok
    assert "CEM 0.700 is not below" in why
    weaver.cem = 0.1
    loop.last_cycle_at = 950.0
    ok, why = loop.should_run(1000.0)
    assert not ok
    assert "min_interval" in why
    loop.last_cycle_at = 850.0
    assert loop.should_run(1000.0)[0]
    loop.config.enabled = False
    assert loop.should_run(1000.0) == (False, "the inquiry loop is switched off (enabled = false)")


def test_the_image_is_not_asked_when_a_cheap_check_says_no(tmp_path, events):
    weaver = FakeWeaver()
    loop = make_loop(tmp_path, weaver, FakeTrainer(), events, enabled=False)
    assert loop.maybe_run(1000.0) is None
    loop.config.enabled = True
    loop.touch(999.0)
    assert loop.maybe_run(1000.0) is None
    assert weaver.sent == []


def test_a_better_adapter_is_registered_loaded_and_switched_in_order(tmp_path, events):
    weaver, trainer = FakeWeaver(), FakeTrainer(new_loss=2.0, old_loss=3.0)
    loop = make_loop(tmp_path, weaver, trainer, events)
    record = loop.maybe_run(1000.0)
    assert record["outcome"] == "switched", record
    name = record["adapter"]
    assert name.startswith(facet_slug(FACET) + "-")
    assert weaver.facets[FACET] == name
    assert weaver.adapters[name]["facet"] == FACET
    assert loop.loaded == [name]
    assert (tmp_path / "adapters" / name / "adapter_config.json").is_file()
    assert weaver.adapters[name]["path"] == str((tmp_path / "adapters" / name).resolve())
    assert set(weaver.adapters[name]) == {"name", "path", "base_model", "rank", "size_bytes", "digest",
                                          "facet", "data_digest", "eval_scores", "created"}
    # the messages, in order: CEM, current facet, register, switch, record
    assert [s for _, s in weaver.sent] == ["entropy", "facetFor:", "registerAdapter:",
                                           "switchFacet:to:", "recordCycle:"]
    kinds = [k for k, _ in events if k != "image.inquiry.progress"]
    assert kinds == [f"image.inquiry.{p}" for p in ("start", "dataset", "train", "evaluate",
                                                    "review", "register", "load", "switch", "done")]
    assert trainer.calls[0][:2] == ("train", 3)
    assert trainer.calls[0][2] <= 60
    assert trainer.calls[1] == ("evaluate", None)  # no current adapter: the base model
    (cycle,) = weaver.cycles
    assert set(cycle["phases"]) == {"dataset", "train", "evaluate", "review", "register", "load",
                                    "switch"}
    assert cycle["outcome"] == "switched"
    assert cycle["verdict"]["approved"]
    assert loop.last_cycle_at == 1000.0


def test_the_next_cycle_compares_against_the_current_adapter(tmp_path, events):
    weaver, trainer = FakeWeaver(), FakeTrainer()
    loop = make_loop(tmp_path, weaver, trainer, events)
    first = loop.run_cycle()["adapter"]
    second = loop.run_cycle()
    assert trainer.calls[3] == ("evaluate", tmp_path / "adapters" / first)
    assert second["previous"] == first
    assert weaver.facets[FACET] == second["adapter"]


def test_an_adapter_that_does_not_beat_the_current_one_is_discarded(tmp_path, events):
    weaver = FakeWeaver()
    loop = make_loop(tmp_path, weaver, FakeTrainer(new_loss=3.0, old_loss=3.0), events)
    record = loop.run_cycle()
    assert record["outcome"] == "discarded"
    assert any("does not beat" in r for r in record["verdict"]["reasons"])
    assert weaver.adapters == {}
    assert weaver.facets == {}
    assert loop.loaded == []
    kept = Path(record["adapter_path"])
    assert kept.parent == tmp_path / "inquiry" / "discarded"
    assert (kept / "adapter_config.json").is_file()
    assert json.loads((kept / "discarded.json").read_text())["verdict"]["approved"] is False
    assert not (tmp_path / "adapters").exists()
    assert weaver.cycles[0]["outcome"] == "discarded"
    assert "discard" in weaver.cycles[0]["phases"]
    assert "image.inquiry.discard" in [k for k, _ in events]


def test_training_past_the_budget_is_recorded_as_over_budget(tmp_path, events):
    weaver = FakeWeaver()
    trainer = FakeTrainer(fail=TrainingFailed("weaver.training ran past 60s"))
    record = make_loop(tmp_path, weaver, trainer, events).run_cycle()
    assert record["outcome"] == "over_budget"
    assert record["failed_phase"] == "train"
    assert weaver.cycles[0]["error"]["type"] == "TrainingFailed"
    assert weaver.adapters == {}
    done = [d for k, d in events if k == "image.inquiry.done"]
    assert done[0]["outcome"] == "over_budget"


def test_a_failing_phase_is_recorded_and_never_raises(tmp_path, events):
    weaver = FakeWeaver()
    record = make_loop(tmp_path, weaver, FakeTrainer(fail=RuntimeError("boom")), events).run_cycle()
    assert record["outcome"] == "failed"
    assert record["error"] == {"type": "RuntimeError",
                                                                 "message": "boom"}
    assert len(weaver.cycles) == 1


def test_one_cycle_at_a_time(tmp_path, events):
    gate = threading.Event()
    weaver = FakeWeaver()
    loop = make_loop(tmp_path, weaver, FakeTrainer(gate=gate), events)
    worker = threading.Thread(target=loop.run_cycle)
    worker.start()
    try:
        from tests.conftest import wait_until

        wait_until(lambda: loop.running)
        with pytest.raises(InquiryBusy):
            loop.run_cycle()
        assert loop.should_run(1000.0) == (False, "a cycle is already running")
    finally:
        gate.set()
        worker.join(10)
    assert not loop.running
    assert len(weaver.cycles) == 1


def test_config_merges_layers_and_rejects_nonsense():
    c = InquiryConfig.merged({"threshold": "0.3", "max_steps": 5}, {"max_steps": 7, "junk": 1})
    assert c.threshold == 0.3
    assert c.max_steps == 7
    assert c.enabled
    with pytest.raises(InquiryError, match="budget_seconds"):
        InquiryConfig.merged({"budget_seconds": 0})


def test_review_rejects_an_insane_config(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 64, "modules_to_save": ["lm_head"],
         "base_model_name_or_path": "/other"}))
    verdict = review_adapter({"adapter": {"path": str(folder), "size_bytes": 10},
                              "new_scores": {"loss": 1.0, "schema_valid_share": 0.0},
                              "current_scores": {"loss": 2.0, "schema_valid_share": 0.5},
                              "held_out_rows": 3}, max_rank=16, base_model="/models/tiny")
    assert not verdict.approved
    text = " ".join(verdict.reasons)
    for expected in ("rank 64", "modules", "/other", "no adapter weights", "below the current"):
        assert expected in text
    assert verdict.stage("evaluation").passed


def test_root_settings_layer_the_operator_table_over_the_image():
    from batos.root.inquiry import config_from_env, settings

    image = {"enabled": True, "idle_seconds": 300, "threshold": 0.35, "max_steps": 20}
    c = settings(image, {"max_steps": 4, "facet": "code generation", "lr": 0.1})
    assert (c.enabled, c.max_steps, c.idle_seconds, c.facet) == (True, 4, 300.0, "code generation")
    # either side switches the loop off
    assert not settings({**image, "enabled": False}, {"enabled": True}).enabled
    assert not settings(image, {"enabled": False}).enabled
    assert config_from_env({"BATOS_INQUIRY_CONFIG": '{"interval": 5}'}) == {"interval": 5}
    assert config_from_env({}) == {}
    with pytest.raises(Exception, match="BATOS_INQUIRY_CONFIG"):
        config_from_env({"BATOS_INQUIRY_CONFIG": "[1]"})


def test_cli_once_without_force_says_why_the_loop_would_not_run(tmp_path, capsys):
    import argparse

    from batos import inquiry as inquiry_cli

    parser = argparse.ArgumentParser()
    inquiry_cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(["inquiry", "once", "--home", str(tmp_path),
                              "--image", str(tmp_path / "img.fs")])
    assert args.func(args) == 2  # a new image has the loop switched off; nothing was started
    assert "switched off" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()
    status = parser.parse_args(["inquiry", "status", "--image", str(tmp_path / "img.fs"), "--json"])
    assert status.func(status) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["enabled"] is False
    assert shown["cycles"] == []
    assert "cem" in shown["entropy"]


def test_start_inquiry_checks_in_the_background_and_stops(kernel, tmp_path):
    from batos.root.inquiry import start_inquiry
    from tests.conftest import wait_until
    from weaver.lora import LoraRuntime

    handle = start_inquiry(kernel, publish=None, home=tmp_path, base_model=tmp_path / "model",
                           lora=LoraRuntime("http://127.0.0.1:9"), table={}, interval=0.01)
    try:
        wait_until(lambda: handle.checks >= 2)
        assert "switched off" in handle.last_reason  # the image's default: off
        kernel.send("weaver", "setInquiry:to:", ["enabled", True])
        handle.touch()
        wait_until(lambda: "not idle" in handle.last_reason)
    finally:
        assert handle.stop(timeout=10)
    assert not handle.thread.is_alive()
