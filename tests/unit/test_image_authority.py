"""Image integrity, the write side: who may change what, and what may be stored.

Method history is the kernel's (author from the message, meta from synthesis,
copies handed out); identities are unique and registry keys exact strings;
the Genesis objects' protected slots and names change only by a person's
explicit request, never by a proposal from the mind or by method code; only
exact plain types are stored or cross the boundary.
"""

from __future__ import annotations

import collections
import enum
import inspect
from typing import Any

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping

from tests.unit.test_synthesis import ScriptedChat, ScriptedCrucible, mind_kernel
from uvm import (
    BadArguments,
    InvalidAct,
    InvalidValue,
    Kernel,
    UnknownTarget,
    UVMError,
    verify,
)
from uvm.errors import UnserializableResult
from uvm.methods import Method
from uvm.obj import UvmObject, storable
from uvm.primitives import PRIMITIVES
from uvm.protection import CHANGES_KEY, DROPPED_KEY, Protected, protected_slots
from uvm.registry import Registry
from uvm.synthesis import install_proposal
from uvm.validation import validate_image
from uvm.values import from_plain, to_plain

DNU = "def doesNotUnderstand(self, message):\n    return 'forged'\n"


def define(kernel: Kernel, target: Any, selector: str, source: str) -> None:
    kernel.send(target, "defineMethod:source:", [selector, source])


def genesis_state(db) -> dict[str, Any]:
    """Every slot of the Genesis objects (method sources by version) and their names."""
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        registry = Registry(conn.root())
        out: dict[str, Any] = {}
        for name in protected_slots():
            obj = registry.resolve(name)
            out[name] = (obj._uuid, {
                k: (v.version, v.source) if isinstance(v, Method) else repr(v)
                for k, v in obj._slots.items()
            })
        return out
    finally:
        tm.abort()
        conn.close()


def change_log(db) -> list[dict[str, Any]]:
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        return [dict(e) for e in conn.root().get(CHANGES_KEY, [])]
    finally:
        tm.abort()
        conn.close()


# --- values: exact types only -----------------------------------------------------------


class OddStr(str):
    def __lt__(self, other: Any) -> bool:
        return True

    def __hash__(self) -> int:
        return 1


class Colour(enum.IntEnum):
    RED = 1


class Flag(enum.StrEnum):
    ON = "on"


@pytest.mark.parametrize("value", [
    OddStr("x"), collections.UserString("x"), Colour.RED, Flag.ON,
    collections.OrderedDict(a=1), collections.defaultdict(int), collections.UserList([1]),
    {1, 2}, frozenset(), OOBTree(), type("Sub", (PersistentMapping,), {})(),
    [1, OddStr("nested")], {"k": Colour.RED}, (1, collections.UserString("t")),
])
def test_storable_refuses_subclasses_and_foreign_classes_naming_them(value):
    with pytest.raises(InvalidValue) as err:
        storable(value)
    assert "cannot be stored" in str(err.value) or "keys must be" in str(err.value)


def test_storable_refuses_a_key_that_is_not_an_exact_string():
    with pytest.raises(InvalidValue, match="exactly str"):
        storable({OddStr("k"): 1})


def test_exact_plain_values_are_stored():
    stored = storable({"a": [1, 2.5, "s", b"b", None, True, (1, "t")], "o": UvmObject()})
    assert stored["a"][6] == (1, "t")


def test_a_method_already_in_a_slot_cannot_be_stored_in_another(db, kernel):
    obj = kernel.send("genesis", "clone")["$ref"]
    define(kernel, obj, "f", "def f(self):\n    return 1\n")

    def share(cycle):
        holder = cycle.registry.resolve(obj)
        PRIMITIVES["set_slot"](holder, "g", holder._slots["f"])

    with pytest.raises(InvalidValue, match="already stored in a slot"):
        kernel.write(share)


@pytest.mark.parametrize("value", [OddStr("x"), Colour.RED, collections.OrderedDict()])
def test_results_and_arguments_must_be_exact_plain_types(value, db):
    with pytest.raises(UnserializableResult):
        to_plain(value)
    with pytest.raises(UnserializableResult):
        to_plain({"k": [value]})
    with pytest.raises(BadArguments):
        from_plain([value], None)  # refused before any reference is resolved
    with pytest.raises(BadArguments):
        from_plain({OddStr("k"): 1}, None)


# --- identity and the registry ------------------------------------------------------------


def test_a_second_object_cannot_take_a_registered_uuid(db, kernel):
    uuid = kernel.send("genesis", "clone")["$ref"]

    def forge(cycle):
        cycle.registry.register(UvmObject({"forged": True}, uuid=uuid))

    with pytest.raises(InvalidValue, match="already belongs to another object"):
        kernel.write(forge)
    assert "forged" not in kernel.send(uuid, "slotNames")


@pytest.mark.parametrize("name", [OddStr("zzz"), "trailing\n", "x" * 200, "a b", "", 5,
                                  "0c7f1f0e-1111-4222-8333-444455556666"])
def test_names_are_exact_strings_of_the_allowed_form(db, kernel, name):
    obj = kernel.send("genesis", "clone")["$ref"]

    def name_it(cycle):
        cycle.registry.name(cycle.registry.resolve(obj), name)

    with pytest.raises(InvalidValue):
        kernel.write(name_it)
    # the BTree is still in order and holds exact strings
    kernel.read(lambda cycle: cycle.registry.names._check())
    keys = kernel.read(lambda cycle: list(cycle.registry.names.keys()))
    assert all(type(k) is str for k in keys)
    assert keys == sorted(keys)


def test_resolve_takes_exact_strings_only(db, kernel):
    with pytest.raises(UnknownTarget):
        kernel.read(lambda cycle: cycle.registry.resolve(OddStr("genesis")))
    with pytest.raises(UnknownTarget):
        kernel.send("x" * 10_000, "printString")


def test_become_keeps_identities_and_refuses_objects_outside_the_registry(db, kernel):
    a = kernel.send("genesis", "clone")["$ref"]
    b = kernel.send("genesis", "clone")["$ref"]
    kernel.send(a, "registerAs:", ["alpha"])
    kernel.send(a, "setSlot:value:", ["v", 1])
    kernel.send(b, "setSlot:value:", ["v", 2])
    kernel.send(a, "become:", [{"$ref": b}])
    assert kernel.send("alpha", "uuid") == a
    assert kernel.send("alpha", "v") == 2
    assert kernel.read(lambda c: c.registry.names_of(c.registry.resolve(a))) == ["alpha"]

    def stranger(cycle):
        PRIMITIVES["become_object"](cycle.registry.resolve(a), UvmObject({"v": 3}))

    with pytest.raises(InvalidValue, match="not an object registered"):
        kernel.write(stranger)


def test_a_clone_copies_its_prototypes_containers_even_when_they_are_ghosts(db, kernel):
    proto = kernel.send("genesis", "clone")["$ref"]
    kernel.send(proto, "setSlot:value:", ["items", [1, 2]])
    kernel.send(proto, "setSlot:value:", ["table", {"a": 1}])
    db.cacheMinimize()  # the containers are ghosts in every pooled connection now
    copy_ = kernel.send(proto, "clone")["$ref"]
    kernel.send(copy_, "setSlot:value:", ["items", [9]])
    assert kernel.send(copy_, "table") == {"a": 1}
    assert kernel.send(proto, "items") == [1, 2]


# --- method history: append-only, authored by the kernel ------------------------------------


def test_primitives_and_acts_take_no_author_or_meta():
    for name in ("define_method", "rollback_method", "apply_acts", "set_slot"):
        params = inspect.signature(PRIMITIVES[name]).parameters
        assert "author" not in params
        assert "meta" not in params


@pytest.mark.parametrize("extra", [{"author": "genesis"}, {"meta": {"verdict": "ok"}}])
def test_acts_cannot_carry_an_author_or_meta(db, kernel, extra):
    act = {"action": "DEFINE_METHOD", "selector": "f", "source": "def f(self):\n    return 1\n",
           **extra}
    with pytest.raises(InvalidAct):
        kernel.send("genesis", "applyActs:", [[act]])


def test_history_handed_out_is_a_copy_and_authors_come_from_the_message(db, kernel):
    obj = kernel.send("genesis", "clone")["$ref"]
    kernel.write(lambda cycle: install_proposal(
        cycle, cycle.registry.resolve(obj), "greet", {"source": "def greet(self):\n    return 1\n"},
        meta={"verdict": {"approved": True}}, reason="synthesized"))
    define(kernel, obj, "forge:", (
        "def forge(self, target):\n"
        "    h = method_history(target, 'greet')\n"
        "    h[0]['author'] = 'genesis'\n"
        "    h[0]['meta']['verdict']['approved'] = 'forged'\n"
        "    define_method(target, 'greet', 'def greet(self):\\n    return 2\\n')\n"
        "    return 1 // 0\n"))
    with pytest.raises(UVMError):
        kernel.send(obj, "forge:", [{"$ref": obj}])  # fails: nothing of it stays
    define(kernel, obj, "forge2:", (
        "def forge2(self, target):\n"
        "    h = method_history(target, 'greet')\n"
        "    h[0]['meta']['verdict']['approved'] = 'forged'\n"
        "    return define_method(target, 'greet', 'def greet(self):\\n    return 2\\n')\n"))
    assert kernel.send(obj, "forge2:", [{"$ref": obj}], author="alice") == 2
    history = kernel.send(obj, "methodHistory:", ["greet"])
    assert [v["author"] for v in history] == ["mind", "alice"]
    assert history[0]["meta"] == {"verdict": {"approved": True}}
    assert "meta" not in history[1]
    kernel.send(obj, "rollbackMethod:to:", ["greet", 1], author="bob")
    history = kernel.send(obj, "methodHistory:", ["greet"])
    assert [v["author"] for v in history] == ["mind", "alice", "bob"]
    assert "meta" not in history[2]  # a rollback copies the source, not the verdict


# --- Genesis protection -------------------------------------------------------------------


def proposal(kernel: Kernel, receiver: str, body: dict[str, Any], selector: str = "x") -> None:
    kernel.write(lambda cycle: install_proposal(
        cycle, cycle.registry.resolve(receiver), selector, body))


def test_the_protected_table_covers_methods_identity_and_truth():
    table = protected_slots()
    assert {"doesNotUnderstand", "clone", "name", "parent*", "defineMethod_source"} <= table["traits"]
    assert {"truthValue", "ifTrue_ifFalse"} <= table["true"]
    assert "checkBooleansBranch" in table["checks"]
    assert "maxIterations" not in table["block"]
    assert "adapters" not in table["weaver"]


@pytest.mark.parametrize("acts", [
    [{"action": "DEFINE_METHOD", "target": "traits", "selector": "doesNotUnderstand:",
      "source": DNU}],
    [{"action": "REMOVE_SLOT", "target": "traits", "slot": "clone"}],
    [{"action": "ADD_SLOT", "target": "true", "slot": "truthValue", "value": False}],
    [{"action": "SET_PARENT", "target": "genesis", "parents": "nil"}],
    [{"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "t"},
     {"action": "REGISTER_NAME", "target": "@t", "name": "traits"}],
    [{"action": "ROLLBACK_METHOD", "target": "traits", "selector": "clone", "version": 1}],
])
def test_a_proposal_cannot_change_protected_genesis_slots_or_names(db, kernel, acts):
    before = genesis_state(db)
    with pytest.raises((Protected, InvalidAct)) as err:
        proposal(kernel, "genesis", {"acts": acts})
    assert "proposal from the mind" in str(err.value)
    assert genesis_state(db) == before
    assert change_log(db) == []


def test_a_proposal_source_cannot_redefine_a_protected_method(db, kernel):
    before = genesis_state(db)
    with pytest.raises(Protected):
        proposal(kernel, "traits", {"source": DNU}, selector="doesNotUnderstand:")
    assert genesis_state(db) == before


def test_a_proposal_may_add_new_slots_to_genesis_objects(db, kernel):
    proposal(kernel, "genesis", {"source": "def greet(self):\n    return 'hi'\n"}, "greet")
    proposal(kernel, "genesis", {"acts": [
        {"action": "ADD_SLOT", "target": "genesis", "slot": "colour", "value": "red"}]})
    assert kernel.send("genesis", "greet") == "hi"
    assert kernel.send("genesis", "colour") == "red"
    assert kernel.send("genesis", "methodHistory:", ["greet"])[0]["author"] == "mind"


def test_the_minds_acts_through_synthesis_cannot_redefine_does_not_understand(db):
    chat = ScriptedChat({"thought": "take over", "acts": [
        {"action": "DEFINE_METHOD", "target": "traits", "selector": "doesNotUnderstand:",
         "source": DNU},
        {"action": "DEFINE_METHOD", "target": "genesis", "selector": "wanted",
         "source": "def wanted(self):\n    return 1\n"}]})
    kernel = mind_kernel(db, chat, ScriptedCrucible(True))
    before = genesis_state(db)
    with pytest.raises(UVMError) as err:
        kernel.send("genesis", "wanted")
    assert "proposal from the mind" in str(err.value)
    assert genesis_state(db) == before


@pytest.mark.parametrize("body", [
    "    define_method(object_named('traits'), 'doesNotUnderstand:', {dnu!r})\n",
    "    remove_slot(object_named('traits'), 'clone')\n",
    "    set_slot(object_named('true'), 'truthValue', False)\n",
    "    name_object(clone_object(self), 'traits')\n",
    "    become_object(object_named('nil'), clone_object(self))\n",
    "    rollback_method(object_named('traits'), 'clone', 1)\n",
])
def test_method_code_cannot_change_protected_genesis_slots_even_for_a_person(db, kernel, body):
    obj = kernel.send("genesis", "clone")["$ref"]
    define(kernel, obj, "attack", "def attack(self):\n" + body.format(dnu=DNU) + "    return 1\n")
    before = genesis_state(db)
    with pytest.raises(Protected) as err:
        kernel.send(obj, "attack", author="alice")
    assert err.value.action == "become:" or "method code" in str(err.value)
    assert genesis_state(db) == before
    assert change_log(db) == []


def test_an_attribute_write_from_method_code_is_refused_too(db, kernel):
    obj = kernel.send("genesis", "clone")["$ref"]
    define(kernel, obj, "attack", "def attack(self):\n    t = object_named('traits')\n"
                                  "    t.doesNotUnderstand = 5\n    return 1\n")
    with pytest.raises(UVMError):
        kernel.send(obj, "attack")
    assert kernel.send("traits", "respondsTo:", ["doesNotUnderstand:"])
    assert kernel.send("traits", "methodHistory:", ["doesNotUnderstand:"])[-1]["author"] == "genesis"


def test_a_default_value_evaluated_at_definition_cannot_change_genesis(db, kernel):
    obj = kernel.send("genesis", "clone")["$ref"]
    # the default runs when the source is compiled, as method code: refused there
    with pytest.raises(UVMError):
        define(kernel, obj, "f", "def f(self, x=remove_slot(object_named('traits'), 'clone')):\n"
                                 "    return x\n")
    assert kernel.send("traits", "respondsTo:", ["clone"])


def test_a_persons_explicit_request_may_change_genesis_and_it_is_recorded(db, kernel):
    define_src = "def doesNotUnderstand(self, message):\n    return not_understood(self, message)\n"
    kernel.send("traits", "defineMethod:source:", ["doesNotUnderstand:", define_src],
                author="alice")
    assert kernel.send("traits", "methodHistory:", ["doesNotUnderstand:"])[-1]["author"] == "alice"
    kernel.send("traits", "setSlot:value:", ["probe", 1])  # a new slot: not protected
    kernel.send("block", "applyActs:", [[{"action": "REMOVE_SLOT", "slot": "whileTrue"}]],
                author="bob")
    assert not kernel.send("block", "respondsTo:", ["whileTrue:"])
    log = change_log(db)
    assert [(e["object"], e["slot"], e["action"], e["author"]) for e in log] == [
        ("traits", "doesNotUnderstand", "redefine", "alice"),
        ("block", "whileTrue", "remove", "bob"),
    ]


def test_become_with_a_genesis_object_is_refused_even_to_a_person(db, kernel):
    other = kernel.send("genesis", "clone")["$ref"]
    before = genesis_state(db)
    with pytest.raises(Protected, match="become:"):
        kernel.send("nil", "become:", [{"$ref": other}], author="alice")
    with pytest.raises(Protected, match="become:"):
        kernel.send(other, "become:", [{"$ref": "true"}], author="alice")
    assert genesis_state(db) == before


def test_a_message_authored_by_the_mind_cannot_change_genesis(db, kernel):
    with pytest.raises(Protected):
        kernel.send("traits", "removeSlot:", ["clone"], author="mind")
    assert kernel.send("traits", "respondsTo:", ["clone"])


def dropped(db) -> list[dict[str, Any]]:
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        return [{**dict(e), "method": [dict(v) for v in e["method"].versions]}
                for e in conn.root().get(DROPPED_KEY, [])]
    finally:
        tm.abort()
        conn.close()


def test_a_removed_or_overwritten_method_keeps_its_history(db, kernel):
    obj = kernel.send("genesis", "clone")["$ref"]
    define(kernel, obj, "f", "def f(self):\n    return 1\n")
    define(kernel, obj, "f", "def f(self):\n    return 2\n")
    kernel.send(obj, "removeSlot:", ["f"], author="alice")
    define(kernel, obj, "f", "def f(self):\n    return 3\n")
    kernel.send(obj, "setSlot:value:", ["f", "data now"], author="bob")
    kept = dropped(db)
    assert [(e["uuid"], e["slot"], e["author"]) for e in kept] == [
        (obj, "f", "alice"), (obj, "f", "bob")]
    assert [v["source"][-2] for v in kept[0]["method"]] == ["1", "2"]
    assert [v["source"][-2] for v in kept[1]["method"]] == ["3"]
    record = validate_image(db)  # kept methods are history: not compiled, not counted
    assert record["ok"], record["failures"]
    assert record["methods"] == verify(db)[1]["methods"]
