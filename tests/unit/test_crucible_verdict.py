"""Proposals, verdicts and the policy: the crucible's vocabulary, without processes."""

from __future__ import annotations

import json

import pytest

import crucible
from crucible import Crucible, InvalidProposal, Policy, Proposal, proposal_schema
from crucible.proposal import coerce
from crucible.verdict import StageVerdict, decide

GOOD = "def double(self, x):\n    return 2 * x\n"


def stage(name: str, status: str, required: bool = True, reasons=()) -> StageVerdict:
    return StageVerdict(stage=name, status=status, required=required, reasons=list(reasons))


def test_proposal_holds_exactly_one_of_source_or_acts():
    assert Proposal(source=GOOD).kind == "source"
    assert Proposal(acts=[{"action": "ADD_SLOT", "slot": "x", "value": 1}]).kind == "acts"
    with pytest.raises(ValueError, match="exactly one"):
        Proposal()
    with pytest.raises(ValueError, match="exactly one"):
        Proposal(source=GOOD, acts=[])
    with pytest.raises(ValueError, match="extra"):
        Proposal(source=GOOD, extra=1)
    with pytest.raises(ValueError, match="4000"):
        Proposal(source=GOOD, thought="x" * 4001)


def test_coerce_accepts_models_dicts_json_and_bare_source():
    assert coerce(GOOD).source == GOOD
    assert coerce({"source": GOOD}).source == GOOD
    assert coerce(json.dumps({"thought": "t", "source": GOOD})).thought == "t"
    with pytest.raises(InvalidProposal, match="exactly one"):
        coerce({"thought": "nothing"})
    with pytest.raises(InvalidProposal, match="does not parse"):
        coerce("{not json")
    with pytest.raises(InvalidProposal):
        coerce(42)


def test_proposal_schema_is_flat_and_json():
    schema = proposal_schema()
    assert "$defs" not in json.dumps(schema)
    assert set(schema["properties"]) == {"thought", "source", "acts"}
    assert schema["additionalProperties"] is False


def test_approved_only_when_every_required_stage_passed():
    assert decide([stage("static", "pass"), stage("trial", "pass")]).approved
    verdict = decide([stage("static", "pass"), stage("trial", "fail", reasons=["boom"]),
                      stage("review:logic", "fail", required=False, reasons=["meh"])])
    assert not verdict.approved
    assert verdict.reasons == ["trial: boom"]
    assert decide([stage("static", "pass"), stage("review:logic", "fail", False)]).approved


@pytest.mark.parametrize("status", ["off", "error", "fail"])
def test_a_required_stage_that_did_not_pass_rejects(status):
    verdict = decide([stage("static", "pass"), stage("trial", status, reasons=["why"])])
    assert not verdict.approved
    assert verdict.reasons == ["trial: why"]


def test_to_plain_is_json():
    verdict = decide([stage("static", "pass")])
    assert json.loads(json.dumps(verdict.to_plain())) == verdict.to_plain()
    assert verdict.stage("static").status == "pass"


def test_policy_defaults_and_validation():
    policy = Policy()
    assert (policy.static, policy.trial) == ("required", "required")
    assert policy.reviews == {"logic": "off", "ethics": "off", "utility": "off"}
    assert policy.limits.cpu_seconds == 2.0
    with pytest.raises(ValueError, match="required"):
        Policy(static="maybe")
    with pytest.raises(ValueError, match="bogus"):
        Policy(bogus=1)


def test_without_an_image_the_trial_is_off_never_a_pass():
    with Crucible() as c:
        verdict = c.review(GOOD, receiver="genesis", selector="double:", args=[2])
    trial = verdict.stage("trial")
    assert trial.status == "off"
    assert not verdict.approved
    assert "no image" in verdict.reasons[0]
    with Crucible(policy=Policy(trial="off")) as c:
        verdict = c.review(GOOD, receiver="genesis", selector="double:")
    assert verdict.approved
    assert verdict.stage("trial").status == "off"


def test_static_failure_skips_later_stages():
    with Crucible(policy=Policy(trial="off", reviews={"logic": "required"})) as c:
        verdict = c.review("def double(self, x):\n    import os\n", receiver="g", selector="double:")
    assert not verdict.approved
    logic = verdict.stage("review:logic")
    assert logic.status == "off"
    assert logic.detail["skipped"]
    assert all(r.startswith("static:") for r in verdict.reasons)


def test_module_level_review_reads_the_selector_from_the_function():
    verdict = crucible.review(GOOD, "genesis", [1], policy=Policy(trial="off"))
    assert verdict.approved
    with pytest.raises(ValueError, match="selector"):
        crucible.review({"acts": [{"action": "ADD_SLOT", "slot": "x"}]}, "genesis")


def test_public_api_is_pinned():
    assert sorted(crucible.__all__) == sorted([
        "Crucible", "CrucibleError", "ImageRef", "InvalidProposal", "Mode", "Policy", "Proposal",
        "ReviewerUnavailable", "StageVerdict", "Status", "TransientError", "TrialLimits",
        "TrialRunner", "TrialUnavailable", "Verdict", "check_ui_source", "proposal_schema",
        "review",
    ])
    for name in crucible.__all__:
        assert hasattr(crucible, name)
    for err in (crucible.InvalidProposal, crucible.TrialUnavailable, crucible.ReviewerUnavailable):
        assert issubclass(err, crucible.CrucibleError)
