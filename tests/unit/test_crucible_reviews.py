"""The persona reviews, with a reviewer object at our own seam (the duck-typed chat backend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from crucible import Crucible, Policy, Proposal
from crucible.reviews import PERSONAS, REVIEW_SCHEMA, review_persona

GOOD = "def double(self, x):\n    return 2 * x\n"


@dataclass
class Answer:
    parsed: Any


class Reviewer:
    """Answers each persona from a table; records what it was asked."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any], str]] = []

    def chat(self, messages, *, schema, schema_name, **options):
        self.calls.append((messages, schema, schema_name))
        system = messages[0]["content"]
        persona = next(p for p, text in PERSONAS.items() if system.startswith(text))
        answer = self.answers[persona]
        if isinstance(answer, Exception):
            raise answer
        return Answer(answer)


def all_required() -> Policy:
    return Policy(trial="off", reviews={p: "required" for p in PERSONAS})


def test_three_approvals_approve_and_each_persona_is_asked_with_the_schema():
    reviewer = Reviewer({p: {"approve": True, "reasons": ["fine"]} for p in PERSONAS})
    with Crucible(policy=all_required(), reviewer=reviewer) as c:
        verdict = c.review(Proposal(thought="double it", source=GOOD), receiver="genesis",
                           selector="double:", args=[21], context="a calculator")
    assert verdict.approved, verdict.reasons
    assert [s.status for s in verdict.stages[2:]] == ["pass"] * 3
    assert len(reviewer.calls) == 3
    messages, schema, name = reviewer.calls[0]
    assert schema == REVIEW_SCHEMA
    assert name == "crucible_review"
    assert "<proposal>" in messages[1]["content"]
    assert GOOD in messages[1]["content"]
    assert "double:" in messages[1]["content"]


def test_a_required_rejection_rejects_with_its_reasons():
    reviewer = Reviewer({"logic": {"approve": False, "reasons": ["off by one"]},
                         "ethics": {"approve": True, "reasons": []},
                         "utility": {"approve": True, "reasons": []}})
    with Crucible(policy=all_required(), reviewer=reviewer) as c:
        verdict = c.review(GOOD, receiver="genesis", selector="double:")
    assert not verdict.approved
    assert verdict.reasons == ["review:logic: off by one"]


def test_advisory_failures_are_recorded_but_do_not_block():
    reviewer = Reviewer({"logic": {"approve": False, "reasons": ["style"]}})
    policy = Policy(trial="off", reviews={"logic": "advisory"})
    with Crucible(policy=policy, reviewer=reviewer) as c:
        verdict = c.review(GOOD, receiver="genesis", selector="double:")
    assert verdict.approved
    logic = verdict.stage("review:logic")
    assert (logic.status, logic.required, logic.reasons) == ("fail", False, ["style"])
    assert verdict.stage("review:ethics").status == "off"


@pytest.mark.parametrize("answer", [
    None, "not json", {"approve": "yes", "reasons": []}, {"approve": True},
    {"approve": True, "reasons": [], "extra": 1}, ["approve"], {"approve": 1, "reasons": []},
])
def test_an_answer_off_the_schema_is_a_fail_naming_the_mismatch(answer):
    verdict = review_persona(Reviewer({"ethics": answer}), "ethics", Proposal(source=GOOD),
                             mode="required", receiver="g", selector="double:", args=[])
    assert verdict.status == "fail"
    assert "does not match the verdict schema" in verdict.reasons[0]


def test_a_json_string_answer_is_parsed():
    verdict = review_persona(Reviewer({"utility": '{"approve": true, "reasons": ["ok"]}'}),
                             "utility", Proposal(source=GOOD), mode="required", receiver="g",
                             selector="double:", args=[])
    assert verdict.status == "pass"
    assert verdict.detail["notes"] == ["ok"]


def test_a_reviewer_that_raises_is_an_error_and_blocks_when_required():
    reviewer = Reviewer({"logic": ConnectionError("server down")})
    with Crucible(policy=Policy(trial="off", reviews={"logic": "required"}), reviewer=reviewer) as c:
        verdict = c.review(GOOD, receiver="genesis", selector="double:")
    assert not verdict.approved
    logic = verdict.stage("review:logic")
    assert logic.status == "error"
    assert "ConnectionError: server down" in logic.reasons[0]


def test_no_reviewer_configured_is_an_error_not_a_pass():
    with Crucible(policy=Policy(trial="off", reviews={"utility": "required"})) as c:
        verdict = c.review(GOOD, receiver="genesis", selector="double:")
    assert verdict.stage("review:utility").status == "error"
    assert not verdict.approved


def test_off_is_recorded_as_off():
    verdict = review_persona(None, "logic", Proposal(source=GOOD), mode="off", receiver="g",
                             selector="double:", args=[])
    assert (verdict.status, verdict.required) == ("off", False)
