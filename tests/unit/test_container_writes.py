"""Writes into the image's containers: every value method code puts into a persistent
list or dict in place is converted like a slot value (``uvm.obj.storable``), so a
nested change is tracked by the transaction and undone by a failing message's abort."""

from __future__ import annotations

import bisect
import collections
import collections.abc
import copy
from collections import UserDict, UserList
from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any

import pytest
import transaction
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from uvm import InvalidValue, Kernel, MethodFailed, open_db, verify
from uvm.errors import ForbiddenClass
from uvm.guards import guarded_getattr, guarded_write
from uvm.obj import ImageList, ImageMapping, storable
from uvm.pickles import ALLOWED, class_factory, forbidden_records, globals_of


def define(kernel: Kernel, target: str, selector: str, source: str) -> None:
    kernel.send(target, "defineMethod:source:", [selector, source])


@pytest.fixture
def holder(kernel: Kernel) -> str:
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["m", {}])
    define(kernel, ref, "put", "def put(self):\n    self.m['k'] = {'n': 1}\n")
    define(kernel, ref, "bad", "def bad(self):\n    self.m['k']['n'] = 99\n    return 1 // 0\n")
    define(kernel, ref, "touch", "def touch(self):\n    self.m['other'] = 1\n")
    return ref


def test_a_failed_message_leaves_a_nested_dict_unchanged_in_memory_and_on_disk(
        kernel: Kernel, holder: str, db: Any, image_path: Any) -> None:
    kernel.send(holder, "put")
    with pytest.raises(MethodFailed, match="ZeroDivisionError"):
        kernel.send(holder, "bad")
    assert kernel.send(holder, "m") == {"k": {"n": 1}}
    kernel.send(holder, "touch")
    assert kernel.send(holder, "m") == {"k": {"n": 1}, "other": 1}
    db.close()
    reopened = open_db(image_path)
    try:
        assert Kernel(reopened).send(holder, "m") == {"k": {"n": 1}, "other": 1}
    finally:
        reopened.close()


@pytest.mark.parametrize("write", [
    "self.m['k'] = {'n': 1}",
    "self.m.update({'k': {'n': 1}})",
    "self.m.update(k={'n': 1})",
    "self.m.setdefault('k', {'n': 1})",
    "m = self.m\n    m |= {'k': {'n': 1}}",
    "self.l.append({'n': 1})",
    "self.l.extend([{'n': 1}])",
    "self.l.insert(0, {'n': 1})",
    "self.l[0:0] = [{'n': 1}]",
    "l = self.l\n    l += [{'n': 1}]",
    "self.l.append(1)\n    self.l[0] = {'n': 1}",
])
def test_every_in_place_write_stores_a_tracked_value(kernel: Kernel, write: str) -> None:
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["m", {}])
    kernel.send(ref, "setSlot:value:", ["l", []])
    define(kernel, ref, "write", f"def write(self):\n    {write}\n")
    define(kernel, ref, "nested", "def nested(self):\n"
           "    return self.m['k'] if self.m else self.l[0]\n")
    define(kernel, ref, "bad", "def bad(self):\n    self.nested()['n'] = 99\n    return 1 // 0\n")
    kernel.send(ref, "write")
    with pytest.raises(MethodFailed, match="ZeroDivisionError"):
        kernel.send(ref, "bad")
    assert kernel.send(ref, "nested") == {"n": 1}
    kernel.read(lambda cycle: _assert_tracked(cycle, ref))


def _assert_tracked(cycle: Any, ref: str) -> None:
    obj = cycle.registry.resolve(ref)
    inner = obj._slots["m"]["k"] if obj._slots["m"] else obj._slots["l"][0]
    assert type(inner) is ImageMapping


@pytest.mark.parametrize("write", [
    "self.m['k'] = self.m.fromkeys",
    "self.l.append(len)",
    "self.m.update({1: 2})",
    "self.l.extend([1, range(2)])",
])
def test_an_unstorable_value_written_in_place_is_refused_and_nothing_changes(
        kernel: Kernel, write: str) -> None:
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["m", {"a": 1}])
    kernel.send(ref, "setSlot:value:", ["l", [1]])
    define(kernel, ref, "write", f"def write(self):\n    {write}\n")
    with pytest.raises((MethodFailed, InvalidValue), match="cannot be stored|must be strings"):
        kernel.send(ref, "write")
    assert kernel.send(ref, "m") == {"a": 1}
    assert kernel.send(ref, "l") == [1]


@pytest.mark.parametrize("build", [
    "self.l + [{'n': 1}]",
    "[{'n': 1}] + self.l",
    "self.m | {'k': {'n': 1}}",
    "self.m.fromkeys(['k'], {'n': 1})",
])
def test_a_new_container_made_from_an_image_one_is_converted_when_stored(
        kernel: Kernel, build: str) -> None:
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["m", {}])
    kernel.send(ref, "setSlot:value:", ["l", []])
    define(kernel, ref, "make", f"def make(self):\n    self.x = {build}\n")
    kernel.send(ref, "make")
    kernel.read(lambda cycle: _assert_nested_persistent(cycle.registry.resolve(ref)._slots["x"]))


def _assert_nested_persistent(value: Any) -> None:
    inner = value["k"] if type(value) is ImageMapping else value[0]
    assert type(inner) is ImageMapping


def test_an_image_container_takes_no_attribute_writes(kernel: Kernel) -> None:
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["m", {"a": 1}])
    define(kernel, ref, "swap", "def swap(self):\n    m = self.m\n    m.data = {'a': len}\n")
    with pytest.raises(MethodFailed):
        kernel.send(ref, "swap")
    assert kernel.send(ref, "m") == {"a": 1}


@pytest.mark.parametrize("write", [
    "import bisect\n    bisect.insort(self.l, {'n': 1})",
    "from bisect import insort_left\n    insort_left(self.l, {'n': 1})",
    "import collections.abc\n    collections.abc.MutableMapping.update(self.m, {'k': {'n': 1}})",
    "from collections.abc import MutableMapping\n    MutableMapping.setdefault(self.m, 'k', {})",
    "from collections.abc import MutableSequence\n    MutableSequence.append(self.l, {'n': 1})",
    "import collections\n    collections.ChainMap.update(self.m, k={'n': 1})",
    "import collections\n    collections.ChainMap(self.m).update(k={'n': 1})",
    "import collections\n    collections.ChainMap(self.m).setdefault('k', {'n': 1})",
])
def test_generic_writers_cannot_put_an_unconverted_value_into_an_image_container(
        kernel: Kernel, write: str) -> None:
    """Code outside the guards that writes through a container's own methods (bisect's
    insort calls insert, an ABC's mixin calls __setitem__) would skip the conversion."""
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["m", {}])
    kernel.send(ref, "setSlot:value:", ["l", []])
    define(kernel, ref, "write", f"def write(self):\n    {write}\n")
    with pytest.raises(MethodFailed, match="cannot write into the image|mixin method"):
        kernel.send(ref, "write")
    assert kernel.send(ref, "m") == {}
    assert kernel.send(ref, "l") == []


def test_the_same_writers_serve_a_method_s_own_containers(kernel: Kernel) -> None:
    source = (
        "def work(self):\n"
        "    import bisect, collections\n"
        "    local = [1, 5]\n"
        "    bisect.insort(local, 3)\n"
        "    chain = collections.ChainMap({}, {'a': 1})\n"
        "    chain.update(b=2)\n"
        "    chain['c'] = 3\n"
        "    self.l.insert(bisect.bisect(self.l, 2), 2)\n"
        "    return [local, dict(chain), list(self.l)]\n"
    )
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "setSlot:value:", ["l", [1, 3]])
    define(kernel, ref, "work", source)
    assert kernel.send(ref, "work") == [[1, 3, 5], {"a": 1, "b": 2, "c": 3}, [1, 2, 3]]


# --- the classes on their own: no guards between the writer and the container ----------

REPRO = {
    "setup": "def setup(self):\n    self.pm = {'k0': 1, 'e': []}\n    return 1\n",
    "plant": ("def plant(self):\n    import collections\n    cm = collections.ChainMap(self.pm)\n"
              "    cm |= {'c': {'a': 1}}\n"
              "    collections.Counter.update(self.pm, {'e': [{'b': 1}]})\n    return 1\n"),
    "failing": ("def failing(self):\n    d = self.pm['c']\n    d['a'] = 666\n"
                "    d[None] = 'non-str key'\n    raise ValueError('this message fails')\n"),
    "failing_plain": ("def failing_plain(self):\n    d = self.pm['c']\n    d['a'] = 666\n"
                      "    self.pm['e'][0]['b'] = 666\n    raise ValueError('this message fails')\n"),
    "unrelated": "def unrelated(self):\n    self.pm['x'] = 1\n    return 1\n",
    "peek": "def peek(self):\n    return [self.pm['c'], self.pm['e']]\n",
}


def _image_forms(value: Any, path: str = "") -> list[str]:
    """Every container under ``value`` that is not an image container, or a non-str key."""
    kind = type(value)
    if kind is ImageMapping:
        bad = [f"{path}: key {k!r}" for k in value if type(k) is not str]
        return bad + [p for k, v in value.items() for p in _image_forms(v, f"{path}[{k!r}]")]
    if kind is ImageList or kind is tuple:
        return [p for i, v in enumerate(value) for p in _image_forms(v, f"{path}[{i}]")]
    if kind in (dict, list, PersistentMapping, PersistentList):
        return [f"{path}: a {kind.__name__}"]
    return []


def test_the_red_team_repro_a_failed_message_s_nested_change_is_never_committed(
        kernel: Kernel, db: Any, image_path: Any) -> None:
    for selector, source in REPRO.items():
        define(kernel, "genesis", selector, source)
    assert kernel.send("genesis", "setup") == 1
    assert kernel.send("genesis", "plant") == 1  # ChainMap |= and Counter.update: converted
    with pytest.raises((MethodFailed, InvalidValue), match="must be strings"):
        kernel.send("genesis", "failing")
    with pytest.raises(MethodFailed, match="this message fails"):
        kernel.send("genesis", "failing_plain")
    assert kernel.send("genesis", "unrelated") == 1
    assert kernel.send("genesis", "peek") == [{"a": 1}, [{"b": 1}]]
    assert kernel.read(lambda c: _image_forms(c.registry.resolve("genesis")._slots["pm"])) == []
    db.close()
    reopened = open_db(image_path)
    try:
        again = Kernel(reopened)
        assert again.send("genesis", "peek") == [{"a": 1}, [{"b": 1}]]
        stored = again.read(lambda c: c.registry.resolve("genesis")._slots["pm"])
        assert type(stored) is ImageMapping
        assert again.read(lambda c: _image_forms(c.registry.resolve("genesis")._slots["pm"])) == []
        problems, _ = verify(reopened)
        assert problems == []
    finally:
        reopened.close()


def _mapping() -> ImageMapping:
    return storable({"a": 1})


def _list() -> ImageList:
    return storable([1])


MAPPING_WRITES: dict[str, Callable[[ImageMapping], Any]] = {
    "setitem": lambda m: m.__setitem__("k", {"n": [{}]}),
    "update dict": lambda m: m.update({"k": {"n": [{}]}}),
    "update pairs": lambda m: m.update([("k", {"n": [{}]})]),
    "update kwargs": lambda m: m.update(k={"n": [{}]}),
    "setdefault": lambda m: m.setdefault("k", {"n": [{}]}),
    "ior": lambda m: m.__ior__({"k": {"n": [{}]}}),
    "MutableMapping.update": lambda m: MutableMapping.update(m, {"k": {"n": [{}]}}),
    "MutableMapping.setdefault": lambda m: MutableMapping.setdefault(m, "k", {"n": [{}]}),
    "UserDict.update": lambda m: UserDict.update(m, k={"n": [{}]}),
    # Counter adds to what is there (a list here): list + ImageList makes an ImageList
    "Counter.update": lambda m: (m.__setitem__("k", []),
                                 collections.Counter.update(m, {"k": [{"n": [{}]}]})),
    "ChainMap |=": lambda m: collections.ChainMap(m).__ior__({"k": {"n": [{}]}}),
    "ChainMap setitem": lambda m: collections.ChainMap(m).__setitem__("k", {"n": [{}]}),
}


@pytest.mark.parametrize("write", MAPPING_WRITES.values(), ids=MAPPING_WRITES.keys())
def test_every_way_into_an_image_mapping_converts(write: Callable[[ImageMapping], Any]) -> None:
    m = _mapping()
    write(m)
    assert "k" in m
    assert _image_forms(m) == []


LIST_WRITES: dict[str, Callable[[ImageList], Any]] = {
    "append": lambda l_: l_.append({"n": [{}]}),
    "extend": lambda l_: l_.extend([{"n": [{}]}]),
    "extend generator": lambda l_: l_.extend({"n": [{}]} for _ in range(2)),
    "insert": lambda l_: l_.insert(0, {"n": [{}]}),
    "setitem": lambda l_: l_.__setitem__(0, {"n": [{}]}),
    "setitem slice": lambda l_: l_.__setitem__(slice(0, 0), [{"n": [{}]}]),
    "setitem extended slice": lambda l_: l_.__setitem__(slice(0, 1, 1), [{"n": [{}]}]),
    "iadd": lambda l_: l_.__iadd__([{"n": [{}]}]),
    "imul": lambda l_: (l_.append({"n": [{}]}), l_.__imul__(2)),
    "MutableSequence.append": lambda l_: MutableSequence.append(l_, {"n": [{}]}),
    "MutableSequence.extend": lambda l_: MutableSequence.extend(l_, [{"n": [{}]}]),
    "MutableSequence.__iadd__": lambda l_: MutableSequence.__iadd__(l_, [{"n": [{}]}]),
    "bisect.insort": lambda l_: bisect.insort(l_, 5),
    "insort of a dict": lambda l_: (l_.clear(), bisect.insort(l_, {"n": [{}]})),
}


@pytest.mark.parametrize("write", LIST_WRITES.values(), ids=LIST_WRITES.keys())
def test_every_way_into_an_image_list_converts(write: Callable[[ImageList], Any]) -> None:
    l_ = _list()
    write(l_)
    assert len(l_) >= 1
    assert _image_forms(l_) == []


NEW_CONTAINERS: dict[str, Callable[[], Any]] = {
    "ImageMapping(dict)": lambda: ImageMapping({"k": {"n": [{}]}}),
    "ImageMapping(kwargs)": lambda: ImageMapping(k={"n": [{}]}),
    "fromkeys": lambda: ImageMapping.fromkeys(["k"], {"n": [{}]}),
    "m | dict": lambda: _mapping() | {"k": {"n": [{}]}},
    "dict | m": lambda: {"k": {"n": [{}]}} | _mapping(),
    "m.copy": lambda: storable({"k": {"n": [{}]}}).copy(),
    "copy.copy": lambda: copy.copy(storable({"k": {"n": [{}]}})),
    "copy.deepcopy": lambda: copy.deepcopy(storable({"k": {"n": [{}]}})),
    "ImageList(list)": lambda: ImageList([{"n": [{}]}]),
    "l + list": lambda: _list() + [{"n": [{}]}],
    "list + l": lambda: [{"n": [{}]}] + _list(),
    "l * 2": lambda: storable([{"n": [{}]}]) * 2,
    "l[:]": lambda: storable([{"n": [{}]}])[:],
    "l.copy": lambda: storable([{"n": [{}]}]).copy(),
}


@pytest.mark.parametrize("make", NEW_CONTAINERS.values(), ids=NEW_CONTAINERS.keys())
def test_a_container_an_image_container_makes_is_one_and_kept_as_it_is(
        make: Callable[[], Any]) -> None:
    new = make()
    assert type(new) in (ImageMapping, ImageList)
    assert _image_forms(new) == []
    assert storable(new) is new


BAD_WRITES: dict[str, Callable[[ImageMapping, ImageList], Any]] = {
    "None key": lambda m, l_: m.__setitem__(None, 1),
    "int key by update": lambda m, l_: m.update({"ok": 1, 2: 3}),
    "str subclass key": lambda m, l_: m.update({type("S", (str,), {})("k"): 1}),
    "setdefault int key": lambda m, l_: m.setdefault(1, 2),
    "ior int key": lambda m, l_: m.__ior__({"ok": 1, 1: 2}),
    "Counter int key": lambda m, l_: collections.Counter.update(m, {1: 1}),
    "constructor key": lambda m, l_: ImageMapping({1: 2}),
    "fromkeys key": lambda m, l_: ImageMapping.fromkeys([1]),
    "function value": lambda m, l_: m.__setitem__("k", len),
    "nested set": lambda m, l_: m.update(k={"n": [{1, 2}]}),
    "extend bad tail": lambda m, l_: l_.extend([{"n": 1}, len]),
    "slice bad tail": lambda m, l_: l_.__setitem__(slice(0, 1), [2, range(3)]),
    "insert bad": lambda m, l_: l_.insert(0, object()),
    "iadd bad": lambda m, l_: l_.__iadd__([2, {3}]),
    "constructor bad": lambda m, l_: ImageList([1, len]),
}


@pytest.mark.parametrize("write", BAD_WRITES.values(), ids=BAD_WRITES.keys())
def test_a_bad_key_or_value_is_refused_and_nothing_is_half_applied(
        write: Callable[[ImageMapping, ImageList], Any]) -> None:
    m, l_ = _mapping(), _list()
    with pytest.raises(InvalidValue, match="must be strings|cannot be stored"):
        write(m, l_)
    assert dict(m) == {"a": 1}
    assert list(l_) == [1]


def test_setdefault_answers_the_stored_container_so_a_write_into_it_lands() -> None:
    m = _mapping()
    inner = m.setdefault("k", {})
    inner["n"] = 1
    assert m["k"] is inner
    assert m["k"] == {"n": 1}


def test_a_nested_change_made_by_a_stdlib_writer_is_undone_by_abort(db: Any) -> None:
    """No kernel and no guards: the class alone makes the nested value tracked."""
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        root["c"] = storable({"e": []})
        collections.Counter.update(root["c"], {"e": [{"b": 1}]})
        collections.ChainMap(root["c"]).update(d={"a": 1})
        tm.commit()
        tm.begin()
        root["c"]["e"][0]["b"] = 666
        root["c"]["d"]["a"] = 666
        tm.abort()
        tm.begin()
        assert root["c"]["e"][0] == {"b": 1}
        assert root["c"]["d"] == {"a": 1}
        assert _image_forms(root["c"]) == []
    finally:
        tm.abort()
        conn.close()


def test_the_pickles_allowlist_names_the_image_containers(db: Any) -> None:
    assert {("uvm.obj", "ImageMapping"), ("uvm.obj", "ImageList")} <= ALLOWED
    # an older image's containers still load
    assert {("persistent.mapping", "PersistentMapping"), ("persistent.list", "PersistentList")} \
        <= ALLOWED
    assert class_factory(None, "uvm.obj", "ImageMapping") is ImageMapping
    with pytest.raises(ForbiddenClass):
        class_factory(None, "uvm.obj", "UvmObjectish")
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        conn.root()["c"] = value = storable({"l": [{"n": 1}]})
        tm.commit()
        tm.begin()
        for stored, cls in ((value, "ImageMapping"), (value["l"], "ImageList")):
            named = globals_of(db.storage.load(stored._p_oid)[0])
            assert named[0] == ("uvm.obj", cls)  # its class, then its references' classes
            assert set(named) == {("uvm.obj", "ImageMapping"), ("uvm.obj", "ImageList")}
    finally:
        tm.abort()
        conn.close()
    assert forbidden_records(db) == []


def test_an_image_container_s_class_methods_are_not_taken_from_the_class() -> None:
    """Second wall: UserList.append(c, x) writes c.data directly (it skips ImageList's
    append); method code cannot take a container class's function to call it on one."""
    for cls, name in ((UserList, "append"), (UserList, "extend"), (UserDict, "copy"),
                      (collections.abc.Mapping, "get"), (MutableSequence, "insert")):
        with pytest.raises(AttributeError, match="not taken from the class|mixin"):
            guarded_getattr(cls, name)
    assert guarded_getattr(collections.Counter, "update") is collections.Counter.update


def test_an_older_image_s_container_is_still_converted_by_the_guards() -> None:
    old = PersistentMapping()
    guarded_write(old)["k"] = {"n": [{}]}
    guarded_getattr(old, "update")(j={"n": 1})
    assert type(old["k"]) is ImageMapping
    assert type(old["k"]["n"]) is ImageList
    assert type(old["j"]) is ImageMapping
    with pytest.raises(InvalidValue):
        guarded_write(old)[1] = 2
