"""UvmObject: slots, delegation through parent*, change tracking, selectors."""

from __future__ import annotations

import pytest
import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from ZODB import DB
from ZODB.MappingStorage import MappingStorage

from uvm import DoesNotUnderstand, InvalidValue, UvmObject, find_slot, selector_for, slot_name
from uvm.obj import PARENT_SLOT


def chain(depth: int) -> tuple[UvmObject, UvmObject]:
    top = UvmObject({"x": "top"})
    obj = top
    for _ in range(depth):
        obj = UvmObject({PARENT_SLOT: obj})
    return obj, top


def test_write_and_read_own_slot():
    obj = UvmObject()
    obj.colour = "red"
    assert obj.colour == "red"
    assert obj._slots == {"colour": "red"}
    assert "colour" not in obj.__dict__


@pytest.mark.parametrize("depth", [1, 5, 20, 100])
def test_lookup_delegates_up_the_chain(depth):
    leaf, top = chain(depth)
    assert leaf.x == "top"
    assert find_slot(leaf, "x") == (top, "top")


def test_own_slot_shadows_parent():
    leaf, _top = chain(3)
    leaf.x = "mine"
    assert leaf.x == "mine"


def test_multiple_parents_searched_in_order_depth_first():
    a_parent = UvmObject({"x": "from a's parent"})
    a = UvmObject({PARENT_SLOT: a_parent})
    b = UvmObject({"x": "from b", "y": "only b"})
    child = UvmObject({PARENT_SLOT: [a, b]})
    assert child.x == "from a's parent"
    assert child.y == "only b"


def test_cycle_in_parents_is_harmless():
    a = UvmObject()
    b = UvmObject({PARENT_SLOT: a})
    a.__setattr__(PARENT_SLOT, [b])
    with pytest.raises(DoesNotUnderstand) as info:
        a.missing  # noqa: B018 - the lookup is the test
    assert isinstance(info.value, AttributeError)
    assert info.value.selector == "missing"


def test_long_single_parent_cycle_terminates():
    objs = [UvmObject() for _ in range(200)]
    for i, o in enumerate(objs):
        o._slots[PARENT_SLOT] = objs[(i + 1) % len(objs)]
    objs[150].deep = 1
    assert objs[0].deep == 1
    with pytest.raises(DoesNotUnderstand):
        objs[0].nowhere  # noqa: B018


def test_missing_slot_raises_does_not_understand_and_getattr_default_works():
    obj = UvmObject()
    with pytest.raises(DoesNotUnderstand, match="does not understand 'nothing'"):
        obj.nothing  # noqa: B018
    assert getattr(obj, "nothing", 42) == 42
    assert not hasattr(obj, "nothing")


def test_underscore_names_are_machinery_not_slots():
    obj = UvmObject()
    with pytest.raises(AttributeError):
        obj._private  # noqa: B018
    with pytest.raises(InvalidValue):
        obj.__setattr__("", 1)


@pytest.mark.parametrize("name", ["\uff3fslots", "\uff3f\uff3fclass\uff3f\uff3f", "\ufb01le", "\uff58"])
def test_slot_names_not_in_nfkc_form_are_refused(name):
    obj = UvmObject()
    with pytest.raises(InvalidValue, match="NFKC"):
        setattr(obj, name, 1)
    with pytest.raises(InvalidValue, match="NFKC"):
        UvmObject({name: 1})
    assert obj._slots == {}
    obj.__setattr__("caf\u00e9", 1)  # a non-ASCII name already in NFKC form is fine
    assert obj._slots == {"caf\u00e9": 1}


def test_values_are_converted_to_tracked_containers():
    obj = UvmObject({"items": [1, [2, 3]], "map": {"a": {"b": 1}}})
    from uvm.obj import ImageList, ImageMapping

    assert type(obj.items) is ImageList
    assert type(obj.items[1]) is ImageList
    assert type(obj.map) is ImageMapping
    assert type(obj.map["a"]) is ImageMapping


@pytest.mark.parametrize("bad", [object(), {1: "int key"}, lambda: 1, {1, 2}])
def test_unstorable_values_are_rejected_with_a_clear_error(bad):
    obj = UvmObject()
    with pytest.raises(InvalidValue, match="cannot be stored|keys must be strings"):
        obj.bad = bad
    assert obj._slots == {}


def test_parent_slot_takes_only_objects():
    with pytest.raises(InvalidValue, match="takes objects"):
        UvmObject({PARENT_SLOT: "traits"})


def test_slot_write_marks_object_changed_and_persists():
    db = DB(MappingStorage())
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        conn.root()["o"] = obj = UvmObject({"n": 1})
        tm.commit()
        assert obj._p_changed is False
        obj.n = 2
        assert obj._p_changed is True
        tm.commit()
        conn.close()

        tm2 = transaction.TransactionManager()
        conn2 = db.open(transaction_manager=tm2)
        again = conn2.root()["o"]
        assert again.n == 2
        assert again._uuid == obj._uuid
        conn2.close()
    finally:
        db.close()


def test_selector_mapping_both_ways():
    assert slot_name("setSlot:value:") == "setSlot_value"
    assert slot_name("setSlot_value") == "setSlot_value"
    assert slot_name("value:") == "value"
    assert slot_name("printString") == "printString"
    assert selector_for("setSlot_value", 2) == "setSlot:value:"
    assert selector_for("printString", 0) == "printString"
    assert selector_for("parent*", 0) == "parent*"
    with pytest.raises(ValueError, match="non-empty"):
        slot_name("")


# --- property: lookup over random parent graphs, cycles included -------------------------


def reference_lookup(objs: list[UvmObject], start: int, name: str) -> int | None:
    """Independent statement of the rule: preorder DFS, parents in order, each node once."""
    order: list[int] = []
    index = {id(o): i for i, o in enumerate(objs)}

    def visit(i: int) -> None:
        if i in order:
            return
        order.append(i)
        parents = objs[i]._slots.get(PARENT_SLOT)
        if parents is None:
            return
        for p in [parents] if isinstance(parents, UvmObject) else list(parents):
            visit(index[id(p)])

    visit(start)
    for i in order:
        if name in objs[i]._slots:
            return i
    return None


graphs = st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(st.lists(st.integers(0, n - 1), max_size=3), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.integers(0, n - 1),
    )
)


@settings(max_examples=300, deadline=None)
@given(graphs)
def test_lookup_matches_reference_on_random_graphs(graph):
    n, parent_lists, holds, start = graph
    objs = [UvmObject() for _ in range(n)]
    for i, (parents, has) in enumerate(zip(parent_lists, holds, strict=True)):
        if has:
            objs[i]._slots["x"] = i
        if len(parents) == 1:
            objs[i]._slots[PARENT_SLOT] = objs[parents[0]]
        elif parents:
            objs[i]._slots[PARENT_SLOT] = [objs[p] for p in parents]
    expected = reference_lookup(objs, start, "x")
    if expected is None:
        with pytest.raises(DoesNotUnderstand):
            find_slot(objs[start], "x")
    else:
        holder, value = find_slot(objs[start], "x")
        assert value == expected
        assert holder is objs[expected]


@pytest.mark.parametrize("wrap", [
    lambda m: [m], lambda m: {"m": m}, lambda m: (1, m), lambda m: [{"deep": (m,)}],
])
def test_a_method_is_storable_only_as_a_slot_value_never_inside_a_container(wrap):
    from uvm.methods import Method

    obj = UvmObject()
    with pytest.raises(InvalidValue, match="only as a slot's own value"):
        obj.bad = wrap(Method("def f(self):\n    return 1\n", author="test"))
    assert obj._slots == {}
    obj.f = Method("def f(self):\n    return 1\n", author="test")  # the primitives' way
    assert obj.f() == 1


def test_a_method_written_into_an_image_container_in_place_is_refused():
    from uvm.guards import guarded_getattr, guarded_write
    from uvm.methods import Method

    obj = UvmObject({"l": [], "m": {}})
    method = Method("def f(self):\n    return 1\n", author="test")
    with pytest.raises(InvalidValue, match="only as a slot's own value"):
        guarded_getattr(obj.l, "append")(method)
    with pytest.raises(InvalidValue, match="only as a slot's own value"):
        guarded_write(obj.m)["k"] = method
    assert list(obj.l) == []
    assert dict(obj.m) == {}


@pytest.mark.parametrize("make", [
    lambda: __import__("persistent").Persistent(),
    lambda: __import__("BTrees.OOBTree", fromlist=["OOBTree"]).OOBTree(),
    lambda: __import__("persistent.list", fromlist=["PersistentList"]).PersistentList([{1}]),
])
def test_no_other_persistent_value_is_storable_at_any_depth(make):
    obj = UvmObject()
    for wrapped in (make(), [make()], {"k": make()}):
        with pytest.raises(InvalidValue, match="cannot be stored"):
            obj.bad = wrapped
    assert obj._slots == {}
