"""The Grand Narrative builder: scripted records in, validated ordered files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uvm import Kernel, bootstrap, open_db
from weaver import dataset
from weaver.narrative import CURRICULUM, DidacticRecord, order_key, parse_assistant

RECEIVER = "0b9c6f3e-0000-4000-8000-000000000001"


def _attempt(source=None, acts=None, approved=True, reasons=()):
    return {"raw": "...", "proposal": {"thought": "think first", "source": source, "acts": acts},
            "verdict": {"approved": approved, "stages": [], "reasons": list(reasons)}, "error": None}


def _synthesis(sid, ts, selector, attempts, outcome="installed", name="genesis", version=1):
    return {"id": sid, "timestamp": ts, "receiver": RECEIVER, "receiver_name": name,
            "selector": selector, "arguments": ["x"], "facet": "code", "model": "tiny",
            "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": f"please {selector}"}],
            "prompt_digest": "d", "attempts": attempts, "outcome": outcome,
            "method": {"selector": selector, "version": version} if outcome == "installed" else None,
            "result": None, "error": None}


GREET = "def greet(self, name):\n    return 'hi ' + name\n"
EXPORT = {
    "synthesis": [
        _synthesis("200.0-b", 200.0, "greet:", [
            _attempt("def greet(self):\n    import os\n", approved=False, reasons=["imports os"]),
            _attempt(GREET)]),
        _synthesis("100.0-a", 100.0, "and:", [_attempt(acts=[
            {"action": "DEFINE_METHOD", "target": "true", "selector": "and:",
             "source": "def and_(self, o):\n    return o\n"}])], name="true"),
        _synthesis("300.0-c", 300.0, "boom", [], outcome="error"),                # skipped
        _synthesis("400.0-d", 400.0, "bad", [_attempt(acts=[{"action": "EXPLODE"}])]),  # skipped
        {"id": "500.0-e"},                                                        # skipped
        "not a record",                                                           # skipped
    ],
    "methods": [
        {"object": RECEIVER, "object_name": "genesis", "selector": "greet:",
         "versions": [{"version": 1, "source": GREET, "author": "mind", "timestamp": 200.0,
                       "reason": "", "digest": "x", "meta": {}},
                      {"version": 2, "source": GREET, "author": "architect", "timestamp": 250.0,
                       "reason": "rollback to version 1", "digest": "x", "meta": {}}]},
        {"object": "u2", "object_name": "traits", "selector": "clone",
         "versions": [{"version": 1, "source": "def clone(self):\n    return self\n",
                       "author": "genesis", "timestamp": 1.0, "reason": "genesis bootstrap",
                       "digest": "y", "meta": {}}]},
        {"object": "u3", "object_name": "x", "selector": "y", "versions": None},     # skipped
    ],
    "objects": 3,
}
HANDOVERS = [
    {"handover": "h-1", "kind": "evolve", "started": 900.0, "add": ["six==1.16.0"], "remove": [],
     "outcome": "completed", "phases": {"build": 2.0, "validate": 1.0}, "reason": None},
    {"handover": "h-2", "kind": "evolve", "started": 950.0, "outcome": "in progress"},  # skipped
]


@pytest.fixture
def built(tmp_path):
    narrative = dataset.collect(EXPORT, HANDOVERS)
    manifest = dataset.build(tmp_path, narrative, held_out_percent=15)
    return tmp_path, narrative, manifest


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_bad_records_are_reported_with_reasons_and_skipped(built):
    _, narrative, manifest = built
    reasons = {s["source"]: s["reason"] for s in manifest["skipped"]}
    assert "error" in reasons["synthesis:300.0-c"]
    assert "EXPLODE" in reasons["synthesis:400.0-d"] or "action" in reasons["synthesis:400.0-d"]
    assert "missing field" in reasons["synthesis:500.0-e"]
    assert "synthesis:<str>" in reasons
    assert "in progress" in reasons["handover:h-2"]
    assert "no versions" in reasons["method:y"]
    kept = {r.metadata.source for r in narrative.records}
    assert not kept & set(reasons)


def test_every_line_validates_and_follows_the_curriculum(built):
    out, narrative, _ = built
    rows = _lines(out / dataset.DATASET_FILE)
    records = [DidacticRecord.checked(r) for r in rows]
    assert records == sorted(records, key=order_key)
    chapters = [r.metadata.chapter for r in records]
    assert chapters == sorted(chapters)
    by_source = {r.metadata.source: r for r in records}
    assert by_source["synthesis:100.0-a"].metadata.chapter == 2        # control flow
    assert by_source["synthesis:200.0-b"].metadata.chapter == 1        # doesNotUnderstand:
    assert by_source["synthesis:200.0-b#attempt0"].metadata.chapter == 4  # crucible review
    assert by_source["synthesis:200.0-b#attempt0"].autopoietic_act == []
    assert by_source[f"method:{RECEIVER}/greet:/v2"].autopoietic_act[0]["action"] == "ROLLBACK_METHOD"
    assert by_source["method:u2/clone/v1"].metadata.chapter == 2
    assert by_source["handover:h-1"].metadata.chapter == 8
    # the synthesis already told greet: v1; the method history does not tell it twice
    assert f"method:{RECEIVER}/greet:/v1" not in by_source
    # chapters no record reached come from templates; lived chapters do not
    templated = {r.metadata.chapter for r in records if r.metadata.timestamp is None}
    assert templated == {3, 5, 6}
    assert {c.number for c in CURRICULUM} == set(chapters)


def test_chatml_split_and_manifest(built):
    out, narrative, manifest = built
    train, held = _lines(out / dataset.CHATML_FILE), _lines(out / dataset.HELDOUT_FILE)
    assert len(train) + len(held) == len(narrative.records) == manifest["turns"]
    assert held
    assert train
    for row in train + held:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        parse_assistant(row["messages"][2]["content"])
    assert manifest["data_digest"] == dataset.sha256_file(out / dataset.CHATML_FILE)
    assert sum(c["turns"] for c in manifest["chapters"].values()) == manifest["turns"]
    again = dataset.build(out / "again", dataset.collect(EXPORT, HANDOVERS))
    assert again["data_digest"] == manifest["data_digest"]  # deterministic


def test_too_little_to_build_is_an_error(tmp_path):
    with pytest.raises(dataset.DatasetError, match="at least 2"):
        dataset.build(tmp_path, dataset.collect({}, [], with_templates="none"))


def test_a_real_image_exports_into_the_narrative(tmp_path):
    from uvm.records import export_records

    db = open_db(tmp_path / "image.fs")
    try:
        bootstrap(db)
        Kernel(db).send("genesis", "defineMethod:source:", ["greet:",
                        "def greet(self, name):\n    return 'hello ' + name\n"])
        narrative = dataset.collect(export_records(db))
    finally:
        db.close()
    assert not narrative.skipped, narrative.skipped
    sources = {r.metadata.source: r for r in narrative.records}
    greet = [r for s, r in sources.items() if s.endswith("/greet/v1") or s.endswith("/greet:/v1")]
    assert greet
    assert greet[0].metadata.chapter == 1
    assert greet[0].autopoietic_act[0]["action"] == "DEFINE_METHOD"
    assert any(r.metadata.chapter == 2 and r.metadata.timestamp for r in narrative.records)
    manifest = dataset.build(tmp_path / "ds", narrative)
    assert manifest["held_out"] >= 1
