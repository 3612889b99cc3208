"""Image integrity: records load and store only under the class allowlist (uvm.pickles).

Hostile records are written straight into a real FileStorage (a raw ``storage.store``
in a storage transaction, or a plain ``ZODB.DB`` without batos's allowlist, as a
foreign writer would); canary files prove that nothing they name ever ran.
"""

from __future__ import annotations

import builtins
import copyreg
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZODB
from ZODB._compat import PersistentPickler
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.utils import oid_repr

from uvm import ImageError, InvalidValue, Kernel, UVMError, open_db, verify
from uvm.obj import UvmObject
from uvm.pickles import ALLOWED, ForbiddenClass, globals_of
from uvm.registry import Registry
from uvm.validation import validate_image

SIDE_EFFECTS = '''
import os, pathlib
CANARY = pathlib.Path(os.environ["BATOS_TEST_CANARY_DIR"])
(CANARY / "imported").write_text("module imported")

def boom(*args):
    (CANARY / "called").write_text(repr(args))

class Loud:
    def __setstate__(self, state):
        (CANARY / "setstate").write_text(repr(state))

    def __reduce__(self):
        return (Loud, ())

from persistent import Persistent

class LoudPersistent(Persistent):
    def __setstate__(self, state):
        (CANARY / "setstate").write_text(repr(state))
'''


class Reduce:
    """Pickles as ``func(*args)``: how a hostile record calls a global at load."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return (self.func, self.args)


@pytest.fixture
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that must stay empty, and an importable module that writes into it."""
    folder = tmp_path / "canary"
    folder.mkdir()
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "batos_side_effects.py").write_text(SIDE_EFFECTS)
    monkeypatch.setenv("BATOS_TEST_CANARY_DIR", str(folder))
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "batos_side_effects", raising=False)
    return folder


def side_effects():
    mod = __import__("batos_side_effects")
    for name in ("imported", "called", "setstate"):
        (Path(os.environ["BATOS_TEST_CANARY_DIR"]) / name).unlink(missing_ok=True)
    return mod


def record(state: Any, klass: Any = UvmObject) -> bytes:
    """A record as ZODB writes one: the class pickle, then the state pickle."""
    out = io.BytesIO()
    pickler = PersistentPickler(lambda obj: None, out, 3)
    pickler.dump(klass)
    pickler.dump(state)
    return out.getvalue()


def overwrite(db: Any, oid: bytes, data: bytes) -> None:
    """Store ``data`` as ``oid``'s new record, below ZODB's connections (a raw write)."""
    storage = db.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    storage.store(oid, storage.load(oid)[1], data, "", txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)
    db.cacheMinimize()


def plant(db: Any, kernel: Kernel, state_value: Any) -> tuple[str, bytes]:
    """A clone ``victim`` referenced from genesis, then its record replaced by one whose
    slot ``x`` holds ``state_value``. Answers (victim uuid, oid)."""
    uuid = kernel.send("genesis", "clone")["$ref"]
    kernel.send(uuid, "registerAs:", ["victim"])
    kernel.send("genesis", "setSlot:value:", ["victim", {"$ref": uuid}])
    conn = db.open()
    try:
        victim = Registry(conn.root()).resolve(uuid)
        oid = victim._p_oid
        state = {"_slots": {"x": state_value, "name": "victim"}, "_uuid": uuid}
    finally:
        conn.close()
    overwrite(db, oid, record(state))
    return uuid, oid


def hostile_values(canary: Path) -> dict[str, Any]:
    mod = side_effects()
    target = str(canary / "called")
    return {
        "module function": Reduce(mod.boom, "x"),
        "os.system": Reduce(os.system, f"touch {target}"),
        "builtins.eval": Reduce(builtins.eval, f"open({target!r}, 'w')"),
        "subprocess.Popen": Reduce(subprocess.Popen, ["touch", target]),
        "copyreg._reconstructor": Reduce(copyreg._reconstructor, mod.Loud, object, None),
        "a class with __setstate__": mod.Loud(),
    }


def test_the_allowlist_is_what_batos_stores_and_no_builtin():
    assert ("uvm.obj", "UvmObject") in ALLOWED
    assert ("uvm.methods", "Method") in ALLOWED
    assert not {m for m, _ in ALLOWED} & {"builtins", "__builtin__", "copyreg", "os", "_codecs"}


def test_a_bootstrapped_image_names_only_allowed_classes(db, kernel):
    kernel.send("genesis", "clone")
    problems, _ = verify(db)
    assert problems == []


@pytest.mark.parametrize("kind", [
    "module function", "os.system", "builtins.eval", "subprocess.Popen",
    "copyreg._reconstructor", "a class with __setstate__",
])
def test_globals_of_refuses_each_hostile_global_without_running_it(canary, kind):
    data = record({"_slots": {"x": hostile_values(canary)[kind]}, "_uuid": "u"})
    with pytest.raises(ForbiddenClass) as err:
        globals_of(data)
    assert "is not a class the image allows" in str(err.value)
    assert list(canary.iterdir()) == []


@pytest.mark.parametrize("kind", [
    "module function", "os.system", "builtins.eval", "subprocess.Popen",
    "copyreg._reconstructor", "a class with __setstate__",
])
def test_a_hostile_record_fails_cleanly_names_its_oid_and_the_rest_serves(
        db, kernel, canary, kind):
    uuid, oid = plant(db, kernel, hostile_values(canary)[kind])
    # the referrer loads (its reference names an allowed class); the victim does not
    assert "victim" in kernel.send("genesis", "slotNames")
    with pytest.raises(ImageError) as err:
        kernel.send(uuid, "x")
    assert oid_repr(oid) in str(err.value)
    assert "not a class the image allows" in str(err.value)
    with pytest.raises(ImageError):
        kernel.send("victim", "printString")
    # nothing of it ran, and the rest of the image still serves and writes
    assert list(canary.iterdir()) == []
    other = kernel.send("genesis", "clone")
    kernel.send(other, "setSlot:value:", ["n", 1])
    assert kernel.send(other, "n") == 1
    problems, _ = verify(db)
    assert any(oid_repr(oid) in line and "not a class the image allows" in line
               for line in problems), problems
    record_ = validate_image(db)
    assert any(oid_repr(oid) in line for line in record_["failures"]), record_["failures"]
    assert list(canary.iterdir()) == []


def plain_db(path: Path) -> Any:
    """The same file through ZODB without batos's allowlist: a foreign writer."""
    return ZODB.DB(FileStorage(str(path)))


def test_an_object_of_a_foreign_class_loads_as_an_inert_ghost_that_refuses(
        db, image_path, canary):
    mod = side_effects()
    db.close()
    foreign = plain_db(image_path)
    with foreign.transaction() as conn:
        genesis = Registry(conn.root()).resolve("genesis")
        evil = mod.LoudPersistent()
        evil_holder = UvmObject({"n": 1})
        genesis._slots["loud"] = evil  # a reference naming batos_side_effects.Loud
        genesis._slots["holder"] = evil_holder
        genesis._p_changed = True
    oid = evil._p_oid
    foreign.close()
    for name in ("imported", "called", "setstate"):
        (canary / name).unlink(missing_ok=True)
    sys.modules.pop("batos_side_effects", None)

    reopened = open_db(image_path)
    try:
        kernel = Kernel(reopened)
        # genesis loads: the reference to the foreign object gives an inert ghost
        assert "loud" in kernel.send("genesis", "slotNames")
        with pytest.raises(UVMError):
            kernel.send("genesis", "loud")  # the ghost cannot leave the image...
        # genesis can still be rewritten: its reference keeps naming the record's class
        kernel.send("genesis", "setSlot:value:", ["note", "still writable"])
        with pytest.raises(ForbiddenClass) as err:  # ... nor load when touched
            kernel.read(lambda cycle: cycle.registry.resolve("genesis")._slots["loud"]._p_activate())
        assert err.value.oid == oid_repr(oid)
        problems, _ = verify(reopened)
        assert any(oid_repr(oid) in p and "batos_side_effects.LoudPersistent" in p for p in problems)
    finally:
        reopened.close()
    assert list(canary.iterdir()) == []
    assert "batos_side_effects" not in sys.modules  # not even imported


def test_a_record_whose_own_class_is_forbidden_is_refused_by_get(db, canary):
    mod = side_effects()
    conn = db.open()
    try:
        oid = conn.root()._p_oid
    finally:
        conn.close()
    overwrite(db, oid, record({}, klass=mod.Loud))
    conn = db.open()
    try:
        with pytest.raises(ForbiddenClass) as err:
            conn.root()
        assert err.value.oid == oid_repr(oid)
        assert err.value.name == "Loud"
    finally:
        conn.close()
    assert list(canary.iterdir()) == []


def test_a_method_cannot_store_a_non_data_value_in_place(db, kernel):
    """Slot writes and in-place container writes are checked when made (the commit's
    check of every record is the backstop, tested below)."""
    obj = kernel.send("genesis", "clone")["$ref"]
    kernel.send(obj, "setSlot:value:", ["items", []])
    kernel.send(obj, "defineMethod:source:", [
        "stash", "def stash(self):\n    self.items.append({1, 2})\n    return len(self.items)\n"])
    before = db.storage.lastTransaction()
    with pytest.raises(InvalidValue) as err:
        kernel.send(obj, "stash")
    assert "type set cannot be stored" in str(err.value)
    assert db.storage.lastTransaction() == before
    assert kernel.send(obj, "items") == []
    assert verify(db)[0] == []


def test_a_plain_write_through_open_db_of_a_foreign_class_is_refused(db, canary):
    mod = side_effects()
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        conn.root()["loud"] = mod.Loud()
        with pytest.raises(InvalidValue) as err:
            tm.commit()
        assert "batos_side_effects.Loud" in str(err.value)
    finally:
        tm.abort()
        conn.close()
