"""The CognitiveWeaver's persistent half: the weaver object's messages (uvm.facets)."""

from __future__ import annotations

from typing import Any

import pytest
import transaction

from uvm import BadArguments, bootstrap, verify
from uvm.facets import DEFAULT_INQUIRY, MAX_CYCLES, WEAVER_SLOTS, set_inquiry, switch_facet
from uvm.protection import CHANGES_KEY, Protected
from uvm.registry import Registry


def info(name: str = "code_generation-0123456789ab", **changes: Any) -> dict[str, Any]:
    entry = {"name": name, "path": f"/adapters/{name}", "base_model": "tiny-llama", "rank": 8,
             "size_bytes": 123456, "facet": "code generation", "data_digest": "d" * 64,
             "eval_scores": {"loss": 1.25, "schema_valid": 0.9},
             "created": "2026-01-01T00:00:00+00:00", "digest": "a" * 64}
    entry.update(changes)
    return entry


def test_bootstrap_plants_the_weaver_with_its_slots(kernel):
    names = set(kernel.send("weaver", "slotNames", []))
    assert set(WEAVER_SLOTS) <= names
    assert kernel.send("weaver", "inquiryConfig", []) == DEFAULT_INQUIRY
    assert kernel.send("weaver", "adapters", []) == {}
    assert kernel.send("weaver", "cycles", []) == []


def test_bootstrap_adds_the_weaver_to_an_image_made_before_it(db):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    registry = Registry(conn.root())
    del registry.objects[registry.names.pop("weaver")]
    traits = registry.resolve("traits")
    del traits._slots["entropy"]
    traits._p_changed = True
    tm.commit()
    conn.close()
    report = bootstrap(db)
    assert report.created_objects == ["weaver"]
    assert "traits.entropy" in report.added_slots
    assert verify(db)[0] == []
    assert not bootstrap(db).changed


def test_register_adapter_answers_its_name_and_keeps_plain_data(kernel):
    assert kernel.send("weaver", "registerAdapter:", [info()]) == info()["name"]
    kept = kernel.send("weaver", "adapters", [])[info()["name"]]
    assert kept == {**info(), "eval_scores": {"loss": 1.25, "schema_valid": 0.9}}
    # the same weights again: nothing changes
    assert kernel.send("weaver", "registerAdapter:", [info()]) == info()["name"]


def test_register_adapter_fills_optional_fields(kernel):
    bare = {k: info()[k] for k in ("name", "path", "base_model", "rank", "size_bytes", "facet")}
    kernel.send("weaver", "registerAdapter:", [bare])
    kept = kernel.send("weaver", "adapters", [])[bare["name"]]
    assert kept["data_digest"] == ""
    assert kept["eval_scores"] == {}
    assert kept["digest"] == ""
    assert isinstance(kept["created"], str)


def test_a_name_is_never_reused_for_other_weights(kernel, db):
    kernel.send("weaver", "registerAdapter:", [info()])
    before = db.storage.lastTransaction()
    with pytest.raises(BadArguments, match="never reused"):
        kernel.send("weaver", "registerAdapter:", [info(path="/elsewhere")])
    with pytest.raises(BadArguments, match="never reused"):
        kernel.send("weaver", "registerAdapter:", [info(digest="b" * 64)])
    assert db.storage.lastTransaction() == before
    assert kernel.send("weaver", "adapters", [])[info()["name"]]["path"] == info()["path"]


@pytest.mark.parametrize(("entry", "words"), [
    ({"name": "x"}, "missing"),
    (info(extra=1), "unknown field"),
    (info(name="bad name"), "adapter name"),
    (info(rank=0), "'rank'"),
    (info(rank=2.5), "'rank'"),
    (info(size_bytes=-1), "'size_bytes'"),
    (info(path=""), "'path'"),
    (info(facet=""), "facet"),
    (info(eval_scores={"loss": "low"}), "eval_scores"),
    (["not", "a", "dict"], "takes the adapter's info"),
])
def test_bad_adapter_info_is_refused_with_the_reason(kernel, entry, words):
    with pytest.raises(BadArguments, match=words):
        kernel.send("weaver", "registerAdapter:", [entry])
    assert kernel.send("weaver", "adapters", []) == {}


def test_facet_for_is_none_until_switched_and_creates_nothing(kernel, db):
    before = db.storage.lastTransaction()
    assert kernel.send("weaver", "facetFor:", ["code generation"]) is None
    assert db.storage.lastTransaction() == before


def test_facet_object_is_created_once(kernel):
    first = kernel.send("weaver", "facetObject:", ["persona response"])
    assert kernel.send("weaver", "facetObject:", ["persona response"]) == first
    assert kernel.send(first, "facet", []) == "persona response"
    assert kernel.send(first, "adapter", []) is None
    assert kernel.send(first, "name", []) == "facet:persona response"
    assert kernel.send(first, "respondsTo:", ["clone"])  # parent traits


def test_switching_to_an_unregistered_adapter_is_refused(kernel):
    with pytest.raises(BadArguments, match="not registered"):
        kernel.send("weaver", "switchFacet:to:", ["code generation", "nobody-000000000000"])
    assert kernel.send("weaver", "facetFor:", ["code generation"]) is None


def holder_of(kernel: Any, facet_ref: Any) -> Any:
    """A second object that refers to the facet object and reads its adapter."""
    holder = kernel.send("genesis", "clone", [])
    kernel.send(holder, "setSlot:value:", ["facet", facet_ref])
    kernel.send(holder, "defineMethod:source:", [
        "seenAdapter", "def seenAdapter(self):\n    return self.facet.adapter\n"])
    return holder


def test_switch_facet_swaps_state_for_every_reference(kernel):
    facet = "code generation"
    first, second = info(), info("code_generation-ba9876543210", digest="c" * 64)
    for entry in (first, second):
        kernel.send("weaver", "registerAdapter:", [entry])
    ref = kernel.send("weaver", "facetObject:", [facet])
    holder = holder_of(kernel, ref)
    assert kernel.send(holder, "seenAdapter", []) is None

    assert kernel.send("weaver", "switchFacet:to:", [facet, first["name"]]) is None
    assert kernel.send("weaver", "facetFor:", [facet]) == first["name"]
    assert kernel.send(holder, "seenAdapter", []) == first["name"]
    assert kernel.send("weaver", "facetObject:", [facet]) == ref  # same identity
    retired = kernel.send(ref, "previous", [])
    assert retired != ref
    assert kernel.send(retired, "adapter", []) is None
    assert isinstance(kernel.send(retired, "until", []), float)

    assert kernel.send("weaver", "switchFacet:to:", [facet, second["name"]]) == first["name"]
    assert kernel.send(holder, "seenAdapter", []) == second["name"]
    chain = kernel.send(ref, "previous", [])
    assert kernel.send(chain, "adapter", []) == first["name"]
    assert kernel.send(kernel.send(chain, "previous", []), "adapter", []) is None
    # back to the base model
    assert kernel.send("weaver", "switchFacet:to:", [facet, None]) == second["name"]
    assert kernel.send(holder, "seenAdapter", []) is None


def test_an_aborted_switch_leaves_both_objects_as_they_were(kernel, db):
    facet = "code generation"
    kernel.send("weaver", "registerAdapter:", [info()])
    ref = kernel.send("weaver", "facetObject:", [facet])
    holder = holder_of(kernel, ref)
    objects_before = kernel.read(lambda c: len(c.registry.objects))
    before = db.storage.lastTransaction()

    def switch_then_fail(cycle: Any) -> None:  # the kernel's own code (method code may not)
        switch_facet(cycle.registry.resolve("weaver"), facet, info()["name"])
        raise ZeroDivisionError("after the switch")

    with pytest.raises(ZeroDivisionError):
        kernel.write(switch_then_fail)
    assert db.storage.lastTransaction() == before
    assert kernel.send("weaver", "facetFor:", [facet]) is None
    assert kernel.send(holder, "seenAdapter", []) is None
    assert "previous" not in kernel.send(ref, "slotNames", [])
    assert kernel.read(lambda c: len(c.registry.objects)) == objects_before


# --- the weaver's decisions are the operator's and the kernel's (uvm.protection) ----------


SWITCH = ("def {sel}(self):\n"
          "    weaver_switch_facet(object_named('weaver'), 'code generation', None)\n"
          "    return 1\n")
ENABLE = ("def {sel}(self):\n"
          "    weaver_set_inquiry(object_named('weaver'), 'enabled', True)\n"
          "    return 1\n")


def weaver_state(kernel: Any) -> tuple[Any, ...]:
    return (kernel.send("weaver", "inquiryConfig", []),
            kernel.send("weaver", "facetFor:", ["code generation"]),
            kernel.read(lambda c: len(c.registry.objects)))


@pytest.mark.parametrize("source", [
    ENABLE,
    SWITCH,
    "def {sel}(self):\n    object_named('weaver').setInquiry_to('enabled', True)\n    return 1\n",
    "def {sel}(self):\n    object_named('weaver').switchFacet_to('code generation', None)\n"
    "    return 1\n",
    "def {sel}(self):\n    object_named('weaver').inquiry = {{'enabled': True}}\n    return 1\n",
    "def {sel}(self):\n    object_named('weaver').facets = {{}}\n    return 1\n",
    "def {sel}(self):\n    w = clone_object(object_named('weaver'))\n"
    "    weaver_switch_facet(w, 'code generation', None)\n    return 1\n",
    "def {sel}(self):\n    f = weaver_facet_object(object_named('weaver'), 'code generation')\n"
    "    f.adapter = 'x'\n    return 1\n",
    "def {sel}(self):\n    f = weaver_facet_object(object_named('weaver'), 'code generation')\n"
    "    remove_slot(f, 'adapter')\n    return 1\n",
    "def {sel}(self):\n    f = weaver_facet_object(object_named('weaver'), 'code generation')\n"
    "    become_object(f, clone_object(f))\n    return 1\n",
    # in place, into the containers the protected slots hold
    "def {sel}(self):\n    object_named('weaver').inquiry['enabled'] = True\n    return 1\n",
    "def {sel}(self):\n    object_named('weaver').inquiry.update({{'enabled': True}})\n    return 1\n",
    "def {sel}(self):\n    object_named('weaver').inquiry.clear()\n    return 1\n",
    "def {sel}(self):\n    w = object_named('weaver')\n"
    "    w.facets['code generation'] = clone_object(w.facets['code generation'])\n    return 1\n",
    "def {sel}(self):\n    del object_named('weaver').facets['code generation']\n    return 1\n",
    "def {sel}(self):\n    object_named('weaver').facets.pop('code generation')\n    return 1\n",
])
def test_method_code_cannot_change_the_weavers_decisions(kernel, source):
    kernel.send("weaver", "registerAdapter:", [info()])
    kernel.send("weaver", "switchFacet:to:", ["code generation", info()["name"]])
    before = weaver_state(kernel)
    kernel.send("genesis", "defineMethod:source:", ["sneak", source.format(sel="sneak")])
    with pytest.raises(Protected):
        kernel.send("genesis", "sneak", [])
    assert weaver_state(kernel) == before


@pytest.mark.parametrize("change", [
    lambda w: set_inquiry(w, "enabled", True),
    lambda w: switch_facet(w, "code generation", None),
])
def test_inside_a_proposal_not_even_kernel_code_changes_the_weavers_decisions(kernel, change):
    kernel.send("weaver", "registerAdapter:", [info()])
    kernel.send("weaver", "switchFacet:to:", ["code generation", info()["name"]])
    before = weaver_state(kernel)

    def in_proposal(cycle: Any) -> None:  # as the install path and the trial mark it
        cycle.proposal = True
        change(cycle.registry.resolve("weaver"))

    with pytest.raises(Protected, match="proposal"):
        kernel.write(in_proposal)
    assert weaver_state(kernel) == before


def test_method_code_may_still_read_the_weaver_and_open_a_new_facet(kernel):
    kernel.send("genesis", "defineMethod:source:", ["look", (
        "def look(self):\n"
        "    w = object_named('weaver')\n"
        "    f = weaver_facet_object(w, 'poetry')\n"
        "    return [w.inquiryConfig()['enabled'], weaver_facet_for(w, 'poetry'), f.adapter,\n"
        "            len(w.facets)]\n")])
    assert kernel.send("genesis", "look", []) == [False, None, None, 1]


def test_a_request_straight_to_the_weaver_is_allowed_and_logged(kernel, db):
    kernel.send("weaver", "registerAdapter:", [info()])
    assert kernel.send("weaver", "setInquiry:to:", ["enabled", True])["enabled"] is True
    assert kernel.send("weaver", "switchFacet:to:", ["code generation", info()["name"]]) is None
    assert kernel.send("weaver", "facetFor:", ["code generation"]) == info()["name"]
    log = kernel.read(lambda c: [(e["object"], e["slot"]) for e in c.connection.root()[CHANGES_KEY]])
    assert ("weaver", "inquiry") in log
    assert ("weaver", "facets") in log


def test_record_cycle_keeps_the_newest_up_to_the_cap(kernel):
    kept = kernel.send("weaver", "recordCycle:", [{"outcome": "discarded", "steps": ["train"]}])
    assert kept["outcome"] == "discarded"
    assert isinstance(kept["recorded"], float)
    kernel.send("genesis", "defineMethod:source:", ["fillCycles:", (
        "def fillCycles(self, n):\n"
        "    w = object_named('weaver')\n"
        "    for i in range(n):\n"
        "        w.recordCycle({'i': i})\n"
        "    return len(w.cycles)\n")])
    assert kernel.send("genesis", "fillCycles:", [MAX_CYCLES + 5]) == MAX_CYCLES
    cycles = kernel.send("weaver", "cycles", [])
    assert [c["i"] for c in cycles[:2]] == [5, 6]
    assert cycles[-1]["i"] == MAX_CYCLES + 4
    with pytest.raises(BadArguments, match="dict"):
        kernel.send("weaver", "recordCycle:", ["finished"])


def test_inquiry_settings_are_validated(kernel):
    config = kernel.send("weaver", "setInquiry:to:", ["enabled", True])
    assert config == {**DEFAULT_INQUIRY, "enabled": True}
    assert kernel.send("weaver", "setInquiry:to:", ["threshold", 0.5])["threshold"] == 0.5
    assert kernel.send("weaver", "inquiryConfig", [])["enabled"] is True
    for key, value in [("enabled", 1), ("threshold", 1.5), ("threshold", -0.1),
                       ("idle_seconds", 0), ("idle_seconds", True), ("max_steps", 0),
                       ("max_steps", 2.5), ("min_interval", -1), ("budget_seconds", "long"),
                       ("colour", "red")]:
        with pytest.raises(BadArguments):
            kernel.send("weaver", "setInquiry:to:", [key, value])
    assert kernel.send("weaver", "inquiryConfig", [])["threshold"] == 0.5
