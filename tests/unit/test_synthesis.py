"""doesNotUnderstand: -> mind -> crucible -> installed method, against a real image.

The mind here is a scripted chat backend and, where the crucible's verdict is
the point, a scripted crucible: both are our own seams (``Synthesizer`` takes
them duck-typed). The same path runs against the real crucible and the replay
backend in tests/integration/test_mind.py, and against a real vLLM server in
tests/integration/test_mind_vllm.py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import transaction

from tests.conftest import wait_until
from uvm import DoesNotUnderstand, Kernel, MethodFailed, bootstrap, open_db
from uvm.errors import NoMind, SynthesisFailed
from uvm.records import SynthesisLog, export_records
from uvm.synthesis import Synthesizer
from weaver.chat import Answer

GREET = 'def greet(self, who):\n    return "hello " + who + " from " + self.name\n'


class ScriptedChat:
    """Answers each chat with the next proposal in ``proposals``; records what it was asked."""

    model = "scripted"

    def __init__(self, *proposals: Any, gate: threading.Event | None = None) -> None:
        self.proposals = list(proposals)
        self.asked: list[list[dict[str, str]]] = []
        self.gate = gate

    def chat(self, messages, **kw):
        self.asked.append(list(messages))
        if self.gate is not None:
            assert self.gate.wait(30)
        proposal = self.proposals[min(len(self.asked), len(self.proposals)) - 1]
        return Answer(text=str(proposal), parsed=proposal, model="scripted", structured=True,
                      elapsed=0.0)


@dataclass
class FakeVerdict:
    approved: bool
    reasons: list[str]

    def to_plain(self):
        return {"approved": self.approved, "reasons": self.reasons,
                "stages": [{"stage": "scripted", "status": "pass" if self.approved else "fail"}]}


class ScriptedCrucible:
    def __init__(self, *verdicts: bool) -> None:
        self.verdicts = list(verdicts)
        self.calls = 0

    def review(self, proposal, **kw):
        self.calls += 1
        ok = self.verdicts[min(self.calls, len(self.verdicts)) - 1]
        return FakeVerdict(ok, [] if ok else ["static: the function must be named greet"])


def mind_kernel(db, chat, crucible=None, **kw) -> Kernel:
    return Kernel(db, mind=Synthesizer(chat, crucible, **kw))


def state(db) -> dict:
    """Every object's slots (names and method versions) and the synthesis log's size."""
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        out = {}
        for uuid, obj in root["batos.objects"].items():
            out[uuid] = sorted(
                (k, getattr(v, "version", repr(v))) for k, v in obj._slots.items()
                if k != "parent*"
            )
        return {"objects": out, "records": len(SynthesisLog(root, create=False))}
    finally:
        tm.abort()
        conn.close()


def test_without_a_mind_the_error_says_how_to_configure_one(kernel, db):
    before = state(db)
    with pytest.raises(NoMind, match="BATOS_MIND_URL") as info:
        kernel.send("genesis", "greet:", ["you"])
    assert isinstance(info.value, DoesNotUnderstand)
    assert state(db) == before


def test_a_missing_selector_becomes_a_method_and_the_message_answers(db, image_path):
    chat = ScriptedChat({"thought": "say hello", "source": GREET})
    k = mind_kernel(db, chat, ScriptedCrucible(True))
    assert k.send("genesis", "greet:", ["you"]) == "hello you from genesis"
    # the prompt named the selector, the function and the receiver's slots
    prompt = "\n".join(m["content"] for m in chat.asked[0])
    assert "greet:" in prompt
    assert "def greet" not in prompt
    assert "method greet " in prompt
    assert "description" in prompt
    # installed: the second send does not ask the mind
    assert k.send("genesis", "greet:", ["me"]) == "hello me from genesis"
    assert len(chat.asked) == 1
    history = k.send("genesis", "methodHistory:", ["greet:"])
    assert [v["author"] for v in history] == ["mind"]
    meta = history[0]["meta"]
    assert meta["model"] == "scripted"
    assert meta["verdict"]["approved"] is True
    assert len(meta["prompt_digest"]) == 64
    # persisted, with its record, across a reopen of the storage
    db.close()
    again = open_db(image_path)
    try:
        other = Kernel(again)
        assert other.send("genesis", "greet:", ["later"]) == "hello later from genesis"
        records = export_records(again)["synthesis"]
        assert len(records) == 1
        rec = records[0]
        assert rec["id"] == meta["record"]
        assert rec["outcome"] == "installed"
        assert rec["selector"] == "greet:"
        assert rec["prompt"][1]["role"] == "user"
        assert rec["attempts"][0]["verdict"]["approved"] is True
        assert rec["result"] == '"hello you from genesis"'
    finally:
        again.close()


def test_the_method_and_the_messages_effects_commit_together(db):
    source = "def stamp(self, value):\n    self.stamped = value\n    return value * 2\n"
    k = mind_kernel(db, ScriptedChat({"source": source}), ScriptedCrucible(True))
    obj = k.send("genesis", "clone", [])
    assert k.send(obj, "stamp:", [21]) == 42
    assert k.send(obj, "stamped", []) == 21


def test_a_method_that_fails_for_real_installs_nothing_and_is_recorded(db):
    source = "def explode(self):\n    return 1 // 0\n"
    k = mind_kernel(db, ScriptedChat({"source": source}), ScriptedCrucible(True))
    before = state(db)
    with pytest.raises(MethodFailed, match="ZeroDivisionError"):
        k.send("genesis", "explode", [])
    after = state(db)
    assert after["objects"] == before["objects"]
    assert after["records"] == before["records"] + 1
    (rec,) = export_records(db)["synthesis"]
    assert rec["outcome"] == "error"
    assert rec["error"]["type"] == "MethodFailed"


def test_a_rejected_proposal_is_sent_back_with_the_reasons(db):
    chat = ScriptedChat({"source": "def wrong(self, who):\n    return who\n"}, {"source": GREET})
    k = mind_kernel(db, chat, ScriptedCrucible(False, True), attempts=2)
    assert k.send("genesis", "greet:", ["x"]) == "hello x from genesis"
    repair = chat.asked[1]
    assert repair[-2]["role"] == "assistant"
    assert "must be named greet" in repair[-1]["content"]
    (rec,) = export_records(db)["synthesis"]
    assert [a["verdict"]["approved"] for a in rec["attempts"]] == [False, True]


def test_after_the_last_rejection_the_client_gets_synthesis_failed(db):
    chat = ScriptedChat({"source": "def wrong(self, who):\n    return who\n"})
    k = mind_kernel(db, chat, ScriptedCrucible(False), attempts=2)
    before = state(db)
    with pytest.raises(SynthesisFailed, match="must be named greet") as info:
        k.send("genesis", "greet:", ["x"])
    assert info.value.reasons == ["static: the function must be named greet"]
    assert len(chat.asked) == 2
    after = state(db)
    assert after["objects"] == before["objects"]  # nothing installed
    (rec,) = export_records(db)["synthesis"]
    assert rec["outcome"] == "rejected"
    assert rec["id"] == info.value.record


def test_an_answer_that_is_no_proposal_is_rejected_cleanly(db):
    chat = ScriptedChat("gibberish", {"thought": "nothing"})
    k = mind_kernel(db, chat, ScriptedCrucible(True), attempts=2)
    with pytest.raises(SynthesisFailed, match="neither a non-empty 'source'"):
        k.send("genesis", "greet:", ["x"])
    (rec,) = export_records(db)["synthesis"]
    assert "expected a JSON object" in rec["attempts"][0]["error"]
    assert rec["outcome"] == "rejected"


def test_an_acts_proposal_is_applied(db):
    acts = [{"action": "DEFINE_METHOD", "selector": "answer",
             "source": "def answer(self):\n    return 42\n"}]
    k = mind_kernel(db, ScriptedChat({"acts": acts}), ScriptedCrucible(True))
    assert k.send("genesis", "answer", []) == 42


def test_the_same_missing_selector_asked_concurrently_is_synthesized_once(db):
    gate = threading.Event()
    chat = ScriptedChat({"source": GREET}, gate=gate)
    k = mind_kernel(db, chat, ScriptedCrucible(True))
    results: list[Any] = []

    def ask(i: int) -> None:
        results.append(k.send("genesis", "greet:", [str(i)]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(chat.asked) == 1 and sum(
        f.waiters for f in list(k._flights.values())) == 3)
    gate.set()
    for t in threads:
        t.join(30)
    assert sorted(results) == [f"hello {i} from genesis" for i in range(4)]
    assert len(chat.asked) == 1
    assert len(export_records(db)["synthesis"]) == 1


def test_a_missing_slot_inside_a_method_is_not_synthesized(db):
    chat = ScriptedChat({"source": GREET})
    k = mind_kernel(db, chat, ScriptedCrucible(True))
    k.send("genesis", "defineMethod:source:", ["callsMissing",
           "def callsMissing(self):\n    return self.nothingHere()\n"])
    with pytest.raises(DoesNotUnderstand, match="nothingHere"):
        k.send("genesis", "callsMissing", [])
    assert chat.asked == []


def test_become_swaps_state_for_every_reference_and_abort_restores_both(kernel, db):
    a = kernel.send("genesis", "clone", [])
    b = kernel.send("genesis", "clone", [])
    holder = kernel.send("genesis", "clone", [])
    kernel.send(a, "setSlot:value:", ["version", 1])
    kernel.send(b, "setSlot:value:", ["version", 2])
    kernel.send(holder, "setSlot:value:", ["ref", a])
    kernel.send(a, "registerAs:", ["service"])
    kernel.send(a, "become:", [b])
    assert kernel.send(a, "version", []) == 2
    assert kernel.send(b, "version", []) == 1
    assert kernel.send("service", "version", []) == 2
    kernel.send(holder, "defineMethod:source:", ["refVersion",
                "def refVersion(self):\n    return self.ref.version\n"])
    assert kernel.send(holder, "refVersion", []) == 2
    # uuids stay with their references
    assert kernel.send(a, "uuid", []) == a["$ref"]
    # a failing message that swapped first leaves both as they were
    kernel.send(holder, "defineMethod:source:", ["swapThenFail:with:",
                "def swapThenFail_with(self, x, y):\n    x.become(y)\n    return 1 // 0\n"])
    with pytest.raises(MethodFailed):
        kernel.send(holder, "swapThenFail:with:", [a, b])
    assert kernel.send(a, "version", []) == 2
    assert kernel.send(b, "version", []) == 1


def test_bootstrap_upgrades_the_old_default_does_not_understand(tmp_path):
    from uvm import genesis

    db = open_db(tmp_path / "old.fs")
    try:
        bootstrap(db)
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        traits = conn.root()["batos.objects"][conn.root()["batos.names"]["traits"]]
        method = traits._slots["doesNotUnderstand"]
        old = genesis.SUPERSEDED[("traits", "doesNotUnderstand")][0]
        method.versions[-1] = dict(method.versions[-1], source=old)
        method._v_function = None
        tm.commit()
        conn.close()
        report = bootstrap(db)
        assert "traits.doesNotUnderstand (upgraded)" in report.added_slots
        with pytest.raises(NoMind):
            Kernel(db).send("genesis", "greet:", ["x"])
        assert not bootstrap(db).changed
    finally:
        db.close()


def test_a_mind_written_method_rolls_back_by_message(db):
    k = mind_kernel(db, ScriptedChat({"source": GREET}), ScriptedCrucible(True))
    k.send("genesis", "greet:", ["a"])
    k.send("genesis", "defineMethod:source:", ["greet:",
           'def greet(self, who):\n    return "hi " + who\n'])
    assert k.send("genesis", "greet:", ["b"]) == "hi b"
    assert k.send("genesis", "rollbackMethod:to:", ["greet:", 1]) == 3
    assert k.send("genesis", "greet:", ["c"]) == "hello c from genesis"
    authors = [v["author"] for v in k.send("genesis", "methodHistory:", ["greet:"])]
    assert authors == ["mind", "architect", "architect"]


def test_a_mind_config_with_the_servers_lora_budget_builds_a_facet_loader():
    from batos.root.mind import build_mind, close_mind

    mind = build_mind({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                       "max_loras": 3, "max_lora_rank": 32, "attempts": 3}, env={})
    try:
        assert mind is not None
        assert mind.attempts == 3
        assert mind.load_adapter is not None
    finally:
        close_mind(mind)
    assert build_mind({}, env={}) is None
