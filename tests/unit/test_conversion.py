"""An older image's slot containers: converted once by bootstrap (``uvm.conversion``),
and named by ``verify`` while they are not in their stored form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import transaction
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from uvm import Kernel, MethodFailed, UvmObject, bootstrap, conversion, open_db, verify
from uvm.genesis import CONTAINERS_KEY
from uvm.obj import ImageList, ImageMapping
from uvm.registry import Registry


def _in_transaction(db: Any, work: Any, *, commit: bool = True) -> Any:
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        result = work(conn.root())
        if commit:
            tm.commit()
            tm.begin()
        return result
    finally:
        tm.abort()
        conn.close()


def _read(db: Any, work: Any) -> Any:
    return _in_transaction(db, work, commit=False)


def _plant_old_containers(root: Any) -> None:
    """What an image from before ImageMapping/ImageList holds: the old classes in slots,
    plain dicts and lists written into them unconverted, one mapping with a None key."""
    genesis = Registry(root).resolve("genesis")
    shared = PersistentMapping({"s": 1})
    inner = UvmObject()  # not registered: reached through a slot only
    inner._slots["box"] = PersistentMapping({"deep": {"x": [1, {"y": 2}]}})
    genesis._slots["pm"] = PersistentMapping({
        "c": {"a": 1},  # a plain dict: its changes were not tracked
        "e": PersistentList([{"b": 1}, [2]]),
        "shared": shared,
        "obj": inner,
    })
    genesis._slots["also"] = shared
    genesis._slots["pair"] = ("t", [3, {"z": 4}])
    genesis._slots["badkey"] = PersistentMapping({"k": {None: "non-str key"}})
    genesis._p_changed = True
    del root[CONTAINERS_KEY]  # an image no bootstrap converted


@pytest.fixture
def old_image(image_path: Path) -> Any:
    db = open_db(image_path)
    bootstrap(db)
    _in_transaction(db, _plant_old_containers)
    yield db
    db.close()


def _forms(value: Any, seen: set[int] | None = None) -> list[str]:
    """Type names of every container under ``value`` (objects followed once)."""
    seen = set() if seen is None else seen
    kind = type(value)
    if kind is UvmObject:
        if id(value) in seen:
            return []
        seen.add(id(value))
        return [f for v in value._slots.values() for f in _forms(v, seen)]
    if kind in (dict, ImageMapping, PersistentMapping):
        return [kind.__name__] + [f for v in value.values() for f in _forms(v, seen)]
    if kind in (list, tuple, ImageList, PersistentList):
        here = [] if kind is tuple else [kind.__name__]
        return here + [f for v in value for f in _forms(v, seen)]
    return []


def test_verify_names_each_container_not_in_its_stored_form(old_image: Any) -> None:
    problems, _ = verify(old_image)
    text = "\n".join(problems)
    assert ".pm is a PersistentMapping of an older image" in text
    assert ".pm['c'] is a plain dict: its changes are not tracked" in text
    assert ".pm['e'][0] is a plain dict" in text
    assert ".pm['e'][1] is a plain list" in text
    assert ".pair[1] is a plain list" in text
    assert ".box['deep'] is a plain dict" in text  # inside an object reached by a slot
    assert ".badkey['k'] has a key of type NoneType" in text


def test_bootstrap_converts_an_older_image_once_keeping_shared_containers_shared(
        old_image: Any, image_path: Path) -> None:
    report = bootstrap(old_image)
    assert report.changed
    # pm, c, e, e[0], e[1], shared, box, deep, deep[x], deep[x][1], pair[1], pair[1][1], badkey
    assert report.converted_containers == 13
    assert len(report.unconverted) == 1
    assert "NoneType" in report.unconverted[0]

    def check(root: Any) -> None:
        genesis = Registry(root).resolve("genesis")
        slots = genesis._slots
        assert slots["pm"]["shared"] is slots["also"]
        assert type(slots["pair"]) is tuple
        assert type(slots["pair"][1]) is ImageList
        assert slots["pm"]["c"] == {"a": 1}
        assert slots["pm"]["e"] == [{"b": 1}, [2]]
        assert type(slots["badkey"]) is ImageMapping
        assert type(slots["badkey"]["k"]) is dict  # left as it was: its key is not a str
        forms = {f for name, v in slots.items() if name != "badkey" for f in _forms(v)}
        assert forms == {"ImageMapping", "ImageList"}, forms

    _read(old_image, check)
    problems, _ = verify(old_image)
    assert len(problems) == 1
    assert ".badkey['k'] has a key of type NoneType" in problems[0]

    again = bootstrap(old_image)  # marked: nothing walked, nothing committed
    assert not again.changed
    assert again.converted_containers is None
    old_image.close()
    reopened = open_db(image_path)
    try:
        forms = _read(reopened, lambda root: set(_forms(Registry(root).resolve("genesis"))))
        assert forms == {"ImageMapping", "ImageList", "dict"}  # the dict: badkey's
    finally:
        reopened.close()


def test_an_image_with_the_mark_is_not_walked(db: Any, monkeypatch: Any) -> None:
    def walk(objects: Any) -> Any:
        raise AssertionError("bootstrap walked an image already converted")

    monkeypatch.setattr(conversion, "convert", walk)
    assert not bootstrap(db).changed


def test_a_new_image_is_marked_at_its_first_bootstrap(db: Any) -> None:
    assert _read(db, lambda root: root[CONTAINERS_KEY]) == 1


def test_after_the_conversion_a_failed_message_s_nested_change_is_undone(
        old_image: Any) -> None:
    bootstrap(old_image)
    kernel = Kernel(old_image)
    kernel.send("genesis", "defineMethod:source:", [
        "spoil", "def spoil(self):\n    self.pm['c']['a'] = 666\n"
                 "    self.pm['e'][0]['b'] = 666\n    raise ValueError('fails')\n"])
    kernel.send("genesis", "defineMethod:source:", [
        "touch", "def touch(self):\n    self.pm['x'] = 1\n    self.pm['e'].append(0)\n"])
    with pytest.raises(MethodFailed, match="fails"):
        kernel.send("genesis", "spoil")
    kernel.send("genesis", "touch")
    pm = kernel.send("genesis", "pm")
    assert pm["c"] == {"a": 1}
    assert pm["e"][0] == {"b": 1}


def test_conversion_problems_stop_at_their_limit(old_image: Any) -> None:
    def count(root: Any) -> tuple[int, int]:
        objects = list(Registry(root).objects.values())
        return len(conversion.problems(objects, limit=2)), len(conversion.problems(objects))

    few, all_ = _read(old_image, count)
    assert few == 2
    assert all_ > 2
