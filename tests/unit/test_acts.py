"""autopoietic_acts: schema, atomic application, errors that name the act and field."""

from __future__ import annotations

import pytest

from uvm import DoesNotUnderstand, InvalidAct

COUNTER_ACTS = [
    {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "counter", "name": "counter",
     "slots": {"n": 0}},
    {"action": "DEFINE_METHOD", "target": "@counter", "selector": "increment",
     "source": "def increment(self):\n    self.n = self.n + 1\n    return self.n\n",
     "reason": "count things"},
    {"action": "ADD_SLOT", "target": "@counter", "slot": "owner", "value": {"$ref": "genesis"}},
    {"action": "CLONE_PROTOTYPE", "target": "@counter", "label": "second"},
    {"action": "SET_PARENT", "target": "@second", "parents": ["@counter", "traits"]},
    {"action": "REGISTER_NAME", "target": "@second", "name": "counter2"},
]


def test_a_list_of_acts_builds_a_working_object(kernel):
    summary = kernel.send("genesis", "applyActs:", [COUNTER_ACTS])
    assert summary["applied"] == len(COUNTER_ACTS)
    assert set(summary["created"]) == {"counter", "second"}
    assert kernel.send("counter", "increment") == 1
    assert kernel.send("counter", "owner") == {"$ref": kernel.send("genesis", "uuid")}
    assert kernel.send("counter2", "n") == 0
    history = kernel.send("counter", "methodHistory:", ["increment"])
    assert history[0]["reason"] == "count things"


def test_remove_slot_and_rollback_method(kernel):
    kernel.send("genesis", "applyActs:", [COUNTER_ACTS[:2]])
    kernel.send("counter", "applyActs:", [[
        {"action": "DEFINE_METHOD", "selector": "increment",
         "source": "def increment(self):\n    return -1\n"},
        {"action": "ROLLBACK_METHOD", "selector": "increment", "version": 1},
        {"action": "REMOVE_SLOT", "slot": "n"},
    ]])
    with pytest.raises(DoesNotUnderstand, match="'n'"):  # n is gone: the restored method fails
        kernel.send("counter", "increment")
    assert len(kernel.send("counter", "methodHistory:", ["increment"])) == 3


@pytest.mark.parametrize(
    ("bad_act", "field", "text"),
    [
        ({"action": "TELEPORT"}, "", "does not match any of the expected tags|TELEPORT"),
        ({"action": "ADD_SLOT", "target": "genesis"}, "slot", "Field required"),
        ({"action": "ADD_SLOT", "target": "genesis", "slot": "x", "colour": 1}, "colour", "Extra"),
        ({"action": "ROLLBACK_METHOD", "selector": "f", "version": 0}, "version", "greater than"),
        ({"action": "ADD_SLOT", "target": "nobody", "slot": "x", "value": 1}, "target", "nobody"),
        ({"action": "ADD_SLOT", "target": "@nolabel", "slot": "x"}, "target", "label"),
        ({"action": "DEFINE_METHOD", "target": "genesis", "selector": "f", "source": "x ="},
         "source", "does not parse"),
        ({"action": "REMOVE_SLOT", "target": "genesis", "slot": "absent"}, "slot", "no own slot"),
        ({"action": "SET_PARENT", "target": "genesis", "parents": "ghost"}, "parents", "ghost"),
        ({"action": "ROLLBACK_METHOD", "target": "genesis", "selector": "clone", "version": 1},
         "selector", "not an own method"),
        ({"action": "REGISTER_NAME", "target": "genesis", "name": "9 bad"}, "name", "not a valid name"),
        # strict: a field takes exactly its type
        ({"action": "ROLLBACK_METHOD", "target": "genesis", "selector": "clone", "version": True},
         "version", "valid integer"),
        ({"action": "ROLLBACK_METHOD", "target": "genesis", "selector": "clone", "version": 1.0},
         "version", "valid integer"),
        ({"action": "ADD_SLOT", "target": "genesis", "slot": b"x", "value": 1}, "slot", "valid string"),
        ({"action": "DEFINE_METHOD", "target": "genesis", "selector": "f", "source": "def f(s): 1",
          "reason": 1}, "reason", "valid string"),
        ({"action": "REGISTER_NAME", "target": "genesis", "name": 7}, "name", "valid string"),
        # slot names are checked after NFKC: a fullwidth '_' normalises to '_'
        ({"action": "ADD_SLOT", "target": "genesis", "slot": "\uff3fslots", "value": 1},
         "slot", "NFKC"),
        ({"action": "ADD_SLOT", "target": "genesis", "slot": "\ufb01le", "value": 1},
         "slot", "NFKC"),
        ({"action": "CLONE_PROTOTYPE", "target": "genesis", "slots": {"\uff3fp_jar": 1}},
         "[key]", "NFKC"),
    ],
)
def test_one_invalid_act_rejects_the_whole_list(kernel, db, bad_act, field, text):
    before = db.storage.lastTransaction()
    acts = [*COUNTER_ACTS[:3], bad_act]
    with pytest.raises(InvalidAct, match=text) as info:
        kernel.send("genesis", "applyActs:", [acts])
    assert info.value.index == 3
    assert info.value.field.endswith(field)
    assert "act 3" in str(info.value)
    assert db.storage.lastTransaction() == before
    with pytest.raises(Exception, match="counter"):
        kernel.send("counter", "n")


def test_a_rollback_with_a_bool_version_changes_nothing(kernel):
    kernel.send("genesis", "applyActs:", [COUNTER_ACTS[:2]])
    with pytest.raises(InvalidAct, match="version"):
        kernel.send("counter", "applyActs:", [[
            {"action": "DEFINE_METHOD", "selector": "increment", "source": "def increment(self):\n    return -1\n"},
            {"action": "ROLLBACK_METHOD", "selector": "increment", "version": True}]])
    assert kernel.send("counter", "increment") == 1
    assert len(kernel.send("counter", "methodHistory:", ["increment"])) == 1


def test_acts_from_method_code_may_hold_image_containers(kernel):
    kernel.send("genesis", "applyActs:", [COUNTER_ACTS[:1]])
    kernel.send("counter", "defineMethod:source:", ["keep", (
        "def keep(self):\n"
        "    self.plan = [{'action': 'CLONE_PROTOTYPE', 'label': 'c', 'slots': {'k': 1}},\n"
        "                 {'action': 'SET_PARENT', 'target': '@c', 'parents': ['traits']}]\n"
        "    return apply_acts(self, self.plan)['applied']\n")])
    assert kernel.send("counter", "keep") == 2


def test_acts_must_be_a_list(kernel):
    with pytest.raises(InvalidAct, match="takes a list"):
        kernel.send("genesis", "applyActs:", [{"action": "ADD_SLOT"}])


def test_a_method_catching_the_error_still_gets_nothing_applied(kernel):
    # applyActs: rolls back its savepoint itself, so a caller that swallows the error
    # cannot commit half a list.
    kernel.send("genesis", "defineMethod:source:", [
        "tryActs:",
        "def tryActs(self, acts):\n"
        "    try:\n"
        "        apply_acts(self, acts)\n"
        "    except Exception as exc:\n"
        "        return 'rejected'\n"
        "    return 'applied'\n",
    ])
    acts = [{"action": "ADD_SLOT", "slot": "partial", "value": 1},
            {"action": "REMOVE_SLOT", "slot": "absent"}]
    assert kernel.send("genesis", "tryActs:", [acts]) == "rejected"
    with pytest.raises(DoesNotUnderstand):
        kernel.send("genesis", "partial")
