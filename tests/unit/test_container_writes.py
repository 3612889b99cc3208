"""Writes into the image's containers: every value method code puts into a persistent
list or dict in place is converted like a slot value (``uvm.obj.storable``), so a
nested change is tracked by the transaction and undone by a failing message's abort."""

from __future__ import annotations

from typing import Any

import pytest
from uvm.obj import ImageMapping

from uvm import InvalidValue, Kernel, MethodFailed, open_db


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
