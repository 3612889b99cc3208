"""doesNotUnderstand: against a real vLLM server (CPU build) serving a tiny random model.

The model's weights are random, so what it writes is garbage; the tests use that:

* a round trip through the real HTTP API that *succeeds*: the proposal schema
  given to the server pins ``source`` to one working method (an ``enum``), so
  vLLM's structured-output decoding must produce exactly it, whatever the
  weights; the kernel installs it through the real crucible and answers;
* the structured-output path with the real proposal schema (strings bounded so a
  random model must close them) returns JSON that validates against it;
* with the real, unconstrained schema the random model's answers are rejected
  cleanly: ``SynthesisFailed`` with reasons, nothing installed, a record kept.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from crucible import Crucible, ImageRef, Policy, proposal_schema
from uvm import Kernel, SynthesisFailed, bootstrap, open_db
from uvm.records import export_records
from uvm.synthesis import Synthesizer
from weaver.openai import OpenAIClient

pytestmark = [pytest.mark.vllm, pytest.mark.integration]

DOUBLE = "def double(self, x):\n    return x * 2\n"


@pytest.fixture
def image(tmp_path: Path) -> Any:
    path = tmp_path / "live_image.fs"
    db = open_db(path)
    bootstrap(db)
    crucible = Crucible(policy=Policy(), image=ImageRef(path=str(path)))
    try:
        yield db, crucible
    finally:
        crucible.close()
        db.close()


def client(vllm_server: Any) -> OpenAIClient:
    return OpenAIClient(vllm_server.base_url, vllm_server.model, timeout=120, retries=1)


def test_a_round_trip_through_the_real_server_installs_a_method(vllm_server, image):
    db, crucible = image
    schema = {
        "type": "object",
        "properties": {
            "thought": {"type": "string", "enum": ["double the argument"]},
            "source": {"type": "string", "enum": [DOUBLE]},
        },
        "required": ["thought", "source"],
        "additionalProperties": False,
    }
    mind = Synthesizer(client(vllm_server), crucible, schema=schema, attempts=1, max_tokens=128)
    kernel = Kernel(db, mind=mind)
    assert kernel.send("genesis", "double:", [21]) == 42
    (record,) = export_records(db)["synthesis"]
    assert record["outcome"] == "installed"
    assert record["model"] == vllm_server.model
    assert record["attempts"][0]["proposal"]["source"] == DOUBLE
    history = kernel.send("genesis", "methodHistory:", ["double:"])
    assert history[0]["author"] == "mind"
    assert history[0]["meta"]["verdict"]["stages"]["trial"] == "pass"


def test_structured_output_returns_schema_valid_json(vllm_server):
    schema = copy.deepcopy(proposal_schema())
    for name in ("thought", "source"):
        schema["properties"][name]["maxLength"] = 40
    schema["properties"]["acts"]["maxItems"] = 0
    answer = client(vllm_server).chat(
        [{"role": "user", "content": "Write the method double."}],
        schema=schema, schema_name="proposal", max_tokens=400,
    )
    assert answer.structured is True
    parsed = answer.parsed
    assert set(parsed) == {"thought", "source", "acts"}
    assert isinstance(parsed["thought"], str)
    assert len(parsed["thought"]) <= 40
    assert parsed["source"] is None or len(parsed["source"]) <= 40
    assert parsed["acts"] in (None, [])


def test_a_random_models_garbage_is_rejected_cleanly(vllm_server, image):
    db, crucible = image
    mind = Synthesizer(client(vllm_server), crucible, schema=proposal_schema(), attempts=2,
                       max_tokens=200)
    kernel = Kernel(db, mind=mind)
    before = kernel.send("genesis", "describe", [])
    with pytest.raises(SynthesisFailed) as info:
        kernel.send("genesis", "double:", [21])
    assert info.value.reasons
    assert kernel.send("genesis", "describe", []) == before
    (record,) = export_records(db)["synthesis"]
    assert record["outcome"] == "rejected"
    assert len(record["attempts"]) == 2
    assert all(a["raw"] or a["error"] for a in record["attempts"])


def test_the_facets_adapter_answers_the_synthesis(vllm_server, image, tmp_path):
    pytest.importorskip("peft")
    from tests.integration.test_weaver_lora import make_adapter
    from weaver.adapters import describe_adapter
    from weaver.lora import LoraRuntime

    db, crucible = image
    folder = make_adapter(Path(vllm_server.model_path), tmp_path / "adapter", rank=8, seed=7)
    info = describe_adapter(folder, facet="code_generation")
    plain = Kernel(db)
    plain.send("weaver", "registerAdapter:", [info.model_dump(mode="json")])
    assert plain.send("weaver", "switchFacet:to:", ["code_generation", info.name]) is None
    runtime = LoraRuntime.for_server(vllm_server)
    schema = {"type": "object", "properties": {"source": {"type": "string", "enum": [DOUBLE]}},
              "required": ["source"], "additionalProperties": False}
    mind = Synthesizer(client(vllm_server), crucible, schema=schema, attempts=1, max_tokens=64,
                       load_adapter=lambda plain_info: runtime.ensure(
                           type(info).model_validate(plain_info)))
    try:
        assert Kernel(db, mind=mind).send("genesis", "double:", [4]) == 8
        (record,) = export_records(db)["synthesis"]
        assert record["model"] == info.name
        assert record["facet_note"] == f"adapter {info.name}"
        assert info.name in runtime.loaded()
    finally:
        runtime.unload(info.name)


def test_the_persona_reviews_ask_the_real_server_and_record_a_verdict_each(vllm_server, image):
    db, _ = image
    path = db.storage.getName()
    policy = Policy(reviews={"logic": "advisory", "ethics": "advisory", "utility": "advisory"})
    with Crucible(policy=policy, image=ImageRef(path=path), reviewer=client(vllm_server)) as c:
        verdict = c.review(DOUBLE, receiver="genesis", selector="double:", args=[21])
    reviews = [s for s in verdict.stages if s.stage.startswith("review:")]
    assert [s.stage for s in reviews] == ["review:logic", "review:ethics", "review:utility"]
    # a random model approves or rejects at random, but inside the schema: a verdict each,
    # never "could not be asked"; advisory reviews do not block the approval
    assert all(s.status in ("pass", "fail") for s in reviews), [s.reasons for s in reviews]
    assert verdict.approved is True
