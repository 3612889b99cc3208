"""The didactic schema, its acts (the shared schema), the curriculum map and the ChatML form."""

from __future__ import annotations

import json

import pytest

from weaver import curriculum, narrative
from weaver.narrative import DidacticRecord, InvalidRecord


@pytest.mark.parametrize(("acts", "message"), [
    # the shared schema is strict and checks slot names, as the image does
    ([{"action": "ROLLBACK_METHOD", "selector": "f", "version": True}], r"\[0\.ROLLBACK_METHOD\.version\]"),
    ([{"action": "ADD_SLOT", "slot": "\uff3fslots", "value": 1}], "NFKC"),
    ([{"action": "ADD_SLOT", "slot": "_p_jar", "value": 1}], "does not start with '_'"),
    ([{"action": "ADD_SLOT", "slot": "x"}] * 1001, "holds at most 1000 acts, got 1001"),
    (({"action": "ADD_SLOT", "slot": "x"},), "must be a JSON list"),
])
def test_acts_are_checked_by_the_shared_schema(acts, message):
    with pytest.raises(InvalidRecord, match=message):
        narrative.parse_acts(acts)
    assert not narrative.acts_valid(acts)


def test_curriculum_map_is_the_seeds():
    assert [c.number for c in narrative.CURRICULUM] == list(range(1, 9))
    assert [c.act for c in narrative.CURRICULUM] == ["I"] * 4 + ["II"] * 2 + ["III"] * 2
    assert narrative.chapter(8).title == "Ship of Theseus Protocol"
    with pytest.raises(InvalidRecord, match="chapters 1-8"):
        narrative.chapter(9)


def test_every_template_validates_and_every_chapter_has_one():
    records = [DidacticRecord.checked(t) for t in curriculum.templates()]
    assert {r.metadata.chapter for r in records} == set(range(1, 9))
    for rec in records:
        assert json.loads(rec.line())["turn_id"] == rec.turn_id


def _good() -> dict:
    return curriculum.templates([1])[0]


@pytest.mark.parametrize(("change", "message"), [
    ({"turn_id": ""}, "turn_id"),
    ({"user_utterance": ""}, "user_utterance"),
    ({"autopoietic_act": [{"action": "EXPLODE"}]}, "autopoietic_act"),
    ({"autopoietic_act": [{"action": "ADD_SLOT", "target": "x"}]}, "slot"),
    ({"autopoietic_act": {"action": "ADD_SLOT"}}, "list"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_records_name_the_field(change, message):
    with pytest.raises(InvalidRecord, match=message):
        DidacticRecord.checked({**_good(), **change})


def test_metadata_chapter_must_belong_to_its_act():
    bad = _good()
    bad["metadata"] = {**bad["metadata"], "act": "II"}
    with pytest.raises(InvalidRecord, match="belongs to act I"):
        DidacticRecord.checked(bad)


def test_order_is_act_then_chapter_then_time():
    def rec(tid, ch, ts):
        r = curriculum.templates([ch])[0]
        r["turn_id"], r["metadata"]["timestamp"] = tid, ts
        return DidacticRecord.checked(r)
    got = sorted([rec("c", 8, 1.0), rec("b", 2, 5.0), rec("a", 2, 3.0), rec("t", 2, None),
                  rec("d", 5, 0.0)], key=narrative.order_key)
    assert [r.turn_id for r in got] == ["t", "a", "b", "d", "c"]


def test_chatml_form_round_trips_through_parse_assistant():
    rec = DidacticRecord.checked(_good())
    chat = narrative.to_chatml(rec)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    body = narrative.parse_assistant(chat["messages"][2]["content"] + "<trailing noise")
    assert list(json.loads(chat["messages"][2]["content"])) == list(narrative.ASSISTANT_KEYS)
    assert body["autopoietic_act"] == rec.autopoietic_act
    assert narrative.acts_valid(body["autopoietic_act"])


@pytest.mark.parametrize("text", ["no json here", "{not json", "[1, 2]",
                                  '{"internal_monologue": "x", "persona_response": "y"}',
                                  '{"internal_monologue": "x", "persona_response": "y", '
                                  '"autopoietic_act": [{"action": "NOPE"}]}'])
def test_parse_assistant_refuses_what_is_not_the_layout(text):
    with pytest.raises(InvalidRecord):
        narrative.parse_assistant(text)


def test_held_out_split_is_deterministic():
    ids = [f"t-{i}" for i in range(200)]
    first = [i for i in ids if narrative.is_held_out(i, 15)]
    assert first == [i for i in ids if narrative.is_held_out(i, 15)]
    assert 10 < len(first) < 50
