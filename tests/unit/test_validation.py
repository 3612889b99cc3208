"""Validation: the record a candidate incarnation sends before a handover, and the self-checks."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZODB
from persistent.list import PersistentList
from ZODB._compat import PersistentPickler
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf
from ZODB.utils import oid_repr, p64, z64

from uvm import Kernel, UvmObject, bootstrap, open_db, verify
from uvm.allowlist import package_modules, set_allowed, top_level_modules
from uvm.genesis import CHECK_METHODS
from uvm.methods import Method
from uvm.registry import Registry
from uvm.validation import validate_image


@pytest.fixture(autouse=True)
def restore_allowlist() -> Iterator[None]:
    saved = package_modules()
    try:
        yield
    finally:
        set_allowed(saved)


def reachable(db) -> int:
    """An independent count: oids reachable from the root, by raw records only."""
    seen, todo = {z64}, [z64]
    while todo:
        for ref in referencesf(db.storage.load(todo.pop())[0]):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return len(seen)


def clone_many(kernel, n: int) -> list[str]:
    return [kernel.send("genesis", "clone")["$ref"] for _ in range(n)]


def test_a_bootstrapped_image_validates_with_every_field(db, kernel):
    clone_many(kernel, 30)
    before = db.storage.lastTransaction()
    record = validate_image(db)
    assert record["ok"], record["failures"]
    assert record["failures"] == []
    assert record["objects"] == reachable(db)
    assert record["methods"] == verify(db)[1]["methods"]  # every method, compiled
    assert len(record["digest"]) == 64
    assert record["genesis"] == []
    assert record["checks"] == {name: "ok" for name in CHECK_METHODS}
    assert record["methods_importing_removed"] == []
    assert record["methods_importing_unavailable"] == []
    assert set(record["timings"]) >= {"imports", "objects", "genesis", "checks", "total"}
    assert record["rate"] > 0
    json.dumps(record)  # plain data, for the Validated message
    # validation never writes, though the checks clone and define methods
    assert db.storage.lastTransaction() == before


def test_objects_grow_by_the_clones_made(db, kernel):
    first = validate_image(db)["objects"]
    clone_many(kernel, 25)
    assert validate_image(db)["objects"] == reachable(db) >= first + 25


def test_the_digest_is_stable_across_runs_and_openings(db, kernel, image_path):
    clone_many(kernel, 5)
    kernel.send("genesis", "setSlot:value:", ["note", "a value"])
    one, two = validate_image(db)["digest"], validate_image(db)["digest"]
    assert one == two
    db.close()
    reopened = open_db(image_path)
    try:
        assert validate_image(reopened)["digest"] == one
        # data values are not shape: changing one keeps the digest
        Kernel(reopened).send("genesis", "setSlot:value:", ["note", "another value"])
        assert validate_image(reopened)["digest"] == one
        # a new object is
        Kernel(reopened).send("genesis", "clone")
        assert validate_image(reopened)["digest"] != one
    finally:
        reopened.close()


def test_an_object_whose_class_cannot_be_imported_fails_validation(tmp_path, monkeypatch):
    module = "batos_throwaway_shapes"
    (tmp_path / f"{module}.py").write_text(
        "from persistent import Persistent\n\n"
        "class Shape(Persistent):\n    pass\n\n"
        "class Colour:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    path = tmp_path / "image.fs"
    db = open_db(path)
    bootstrap(db)
    db.close()
    # an older env's library stored it, through a plain ZODB (open_db's refuses the class)
    db = ZODB.DB(FileStorage(str(path)))
    mod = __import__(module)
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    genesis = Registry(conn.root()).resolve("genesis")
    shape = mod.Shape()
    genesis._slots["shape"] = shape  # as an older env's library would have stored it
    holder = mod.Shape()
    holder.colour = mod.Colour()  # a non-persistent instance inside a record
    genesis._slots["holder"] = holder
    genesis._p_changed = True
    tm.commit()
    shape_oid, holder_oid = oid_repr(shape._p_oid), oid_repr(holder._p_oid)
    conn.close()
    db.close()

    # the new env lacks the library
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    sys.path_importer_cache.pop(str(tmp_path), None)
    db = open_db(path)
    try:
        record = validate_image(db)
    finally:
        db.close()
    assert not record["ok"]
    text = "\n".join(record["failures"])
    assert f"object {shape_oid} of class {module}.Shape does not unpickle" in text
    assert f"object {holder_oid} of class {module}.Shape does not unpickle" in text
    assert "which is not a class the image allows" in text
    assert record["digest"]  # the walk went on past the failures


def test_a_failing_self_check_fails_validation_and_is_named(db, kernel):
    kernel.send("checks", "defineMethod:source:", [
        "checkBooleansBranch", "def checkBooleansBranch(self):\n    return False\n"])
    kernel.send("checks", "defineMethod:source:", [
        "checkExplodes", "def checkExplodes(self):\n    return 1 / 0\n"])
    kernel.send("checks", "defineMethod:source:", [
        "checkAnswersTruthy", "def checkAnswersTruthy(self):\n    return 1\n"])
    record = validate_image(db)
    assert not record["ok"]
    assert record["checks"]["checkBooleansBranch"] == "answered False, not True"
    assert "ZeroDivisionError" in record["checks"]["checkExplodes"]
    assert record["checks"]["checkAnswersTruthy"] == "answered 1, not True"
    assert record["checks"]["checkWhileTrueCounts"] == "ok"
    failed = [line for line in record["failures"] if line.startswith("self-check")]
    assert len(failed) == 3
    assert any("checkBooleansBranch" in line for line in failed)


def test_methods_importing_a_removed_module_are_listed_not_failed(db, kernel, tmp_path, monkeypatch):
    name = "batos_removed_lib"
    (tmp_path / f"{name}.py").write_text("def answer():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    set_allowed([name])
    child = kernel.send("genesis", "clone")["$ref"]
    kernel.send(child, "defineMethod:source:", [
        "answer", f"def answer(self):\n    import {name}\n    return {name}.answer()\n"])
    kernel.send(child, "defineMethod:source:", [
        "dump", "def dump(self, x):\n    from json import dumps\n    return dumps(x)\n"])
    assert kernel.send(child, "answer") == 42

    set_allowed([])  # the candidate's env no longer has it
    record = validate_image(db, removed_modules=[name, "json"])
    assert record["ok"], record["failures"]  # the supervisor decides, with --force
    uuid = kernel.send(child, "uuid")
    assert record["methods_importing_removed"] == [
        {"object": uuid, "slot": "answer", "modules": [name]},
        {"object": uuid, "slot": "dump", "modules": ["json"]},
    ]
    # a later handover that removes nothing: broken before it (forced), noted, not failed
    record = validate_image(db)
    assert record["ok"], record["failures"]
    assert record["methods_importing_removed"] == []
    assert record["methods_importing_unavailable"] == [
        {"object": uuid, "slot": "answer", "modules": [name]}]


def test_a_method_that_does_not_compile_fails_validation(db):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    genesis = Registry(conn.root()).resolve("genesis")
    method = Method.__new__(Method)  # as a wider, older policy would have let it in
    method.versions = PersistentList([{"version": 1, "source": "def f(self):\n    import os\n",
                                       "author": "old", "timestamp": 0.0, "reason": "",
                                       "digest": ""}])
    genesis._slots["f"] = method
    genesis._p_changed = True
    uuid = genesis._uuid
    tm.commit()
    conn.close()
    record = validate_image(db)
    assert not record["ok"]
    assert record["methods_importing_unavailable"] == []
    assert any(f"method 'f' of object {uuid} does not compile" in p and "'os'" in p
               for p in record["genesis"])


def test_clones_sharing_a_method_source_are_each_listed(db, kernel, tmp_path, monkeypatch):
    # the walk checks a source text once (clones copy their prototype's methods); every
    # method holding it is still listed under its own object
    name = "batos_shared_lib"
    (tmp_path / f"{name}.py").write_text("def answer():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    set_allowed([name])
    proto = kernel.send("genesis", "clone")["$ref"]
    kernel.send(proto, "defineMethod:source:", [
        "answer", f"def answer(self):\n    import {name}\n    return {name}.answer()\n"])
    clones = [kernel.send(proto, "clone")["$ref"] for _ in range(3)]
    owners = sorted(kernel.send(uuid, "uuid") for uuid in [proto, *clones])
    set_allowed([])
    record = validate_image(db, removed_modules=[name])
    assert record["ok"], record["failures"]
    assert record["methods_importing_removed"] == [
        {"object": uuid, "slot": "answer", "modules": [name]} for uuid in owners]
    record = validate_image(db)  # removed earlier: each noted as unavailable
    assert record["methods_importing_unavailable"] == [
        {"object": uuid, "slot": "answer", "modules": [name]} for uuid in owners]


def test_a_source_that_does_not_compile_fails_each_object_holding_it(db, kernel):
    proto = kernel.send("genesis", "clone")["$ref"]
    clones = [kernel.send(proto, "clone")["$ref"] for _ in range(2)]
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    registry = Registry(conn.root())
    for uuid in [proto, *clones]:
        method = Method.__new__(Method)  # as a wider, older policy would have let it in
        method.versions = PersistentList([{"version": 1, "source": "def f(self):\n    import os\n",
                                           "author": "old", "timestamp": 0.0, "reason": "",
                                           "digest": ""}])
        registry.resolve(uuid)._slots["f"] = method
        registry.resolve(uuid)._p_changed = True
    tm.commit()
    conn.close()
    record = validate_image(db)
    assert not record["ok"]
    for uuid in [proto, *clones]:
        assert any(f"method 'f' of object {uuid} does not compile" in p for p in record["genesis"])


class Dangling:
    """Pickles as a persistent reference to ``oid``, a record that does not exist."""

    def __init__(self, oid: bytes) -> None:
        self.oid = oid


def raw_record(state: Any) -> bytes:
    """A UvmObject record as ZODB writes one, a ``Dangling`` as a (oid, class) reference."""
    out = io.BytesIO()
    pickler = PersistentPickler(
        lambda obj: (obj.oid, UvmObject) if isinstance(obj, Dangling) else None, out, 3)
    pickler.dump(UvmObject)
    pickler.dump(state)
    return out.getvalue()


def raw_store(db: Any, records: dict[bytes, bytes]) -> None:
    """Store records below ZODB's connections, through the storage (a foreign client)."""
    storage = db.storage
    txn = TransactionMetaData()
    storage.tpc_begin(txn)
    for oid, data in records.items():
        storage.store(oid, storage.load(oid)[1], data, "", txn)
    storage.tpc_vote(txn)
    storage.tpc_finish(txn)


def test_a_reference_to_a_missing_record_fails_and_the_walk_goes_on(db, kernel, image_path):
    uuid = kernel.send("genesis", "clone")["$ref"]
    kernel.send("genesis", "setSlot:value:", ["victim", {"$ref": uuid}])
    oid = kernel.read(lambda cycle: cycle.registry.resolve(uuid)._p_oid)
    missing = p64(2**40)  # never allocated
    raw_store(db, {oid: raw_record({"_uuid": uuid, "_slots": {"gone": Dangling(missing)}})})
    db.cacheMinimize()
    record = validate_image(db)
    assert record["feed"] == "storage"  # a FileStorage: the connection's own loads
    assert not record["ok"]
    assert f"object {oid_repr(missing)} is referenced but missing from the storage" in (
        record["failures"])
    assert record["objects"] == reachable_existing(db)
    assert record["digest"]


def reachable_existing(db) -> int:
    """Like ``reachable``, past references to records that do not exist."""
    from ZODB.POSException import POSKeyError

    seen, todo, found = {z64}, [z64], 0
    while todo:
        try:
            data = db.storage.load(todo.pop())[0]
        except POSKeyError:
            continue
        found += 1
        for ref in referencesf(data):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return found


def test_imports_of_the_spec_packages_are_checked(db):
    set_allowed(top_level_modules(["pydantic"]))
    record = validate_image(db, packages=["pydantic"])
    assert record["ok"], record["failures"]
    assert record["imports"] == {"pydantic": "ok"}
    assert "pydantic" in record["allowed"]

    record = validate_image(db, packages=["surely-not-installed-pkg"])
    assert not record["ok"]
    assert record["imports"] == {"surely-not-installed-pkg": "not installed"}
    assert "'surely-not-installed-pkg' is not installed" in record["failures"][0]

    set_allowed([])  # an incarnation that forgot to allow its env's packages
    record = validate_image(db, packages=["pydantic"])
    assert not record["ok"]
    assert "set_allowed" in record["failures"][0]


def test_a_package_whose_module_does_not_import_fails(db, tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "bad_pkg-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "batos_bad_pkg").mkdir()
    (site / "batos_bad_pkg" / "__init__.py").write_text("raise RuntimeError('needs a GPU')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-pkg\nVersion: 1.0\n")
    (info / "RECORD").write_text("batos_bad_pkg/__init__.py,,\nbad_pkg-1.0.dist-info/METADATA,,\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "batos_bad_pkg", raising=False)
    set_allowed(["batos_bad_pkg"])
    record = validate_image(db, packages=["bad-pkg"])
    assert not record["ok"]
    assert record["imports"] == {"batos_bad_pkg": "RuntimeError: needs a GPU"}


def test_a_time_limit_stops_the_walk_and_fails(db):
    record = validate_image(db, limit_seconds=0)
    assert not record["ok"]
    assert "time limit" in record["failures"][0]
    assert record["digest"] == ""
    assert record["checks"] == {}


def test_string_arguments_are_refused(db):
    with pytest.raises(TypeError):
        validate_image(db, packages="pydantic")


# --- the self-checks in the Genesis table ---------------------------------------------


def test_bootstrap_adds_checks_to_an_image_made_before_them(db):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    registry = Registry(conn.root())
    del registry.objects[registry.names.pop("checks")]
    tm.commit()
    conn.close()
    assert validate_image(db)["genesis"] == ["object 'checks' is missing from the registry"]

    report = bootstrap(db)
    assert report.created_objects == ["checks"]
    before = db.storage.lastTransaction()
    assert not bootstrap(db).changed
    assert db.storage.lastTransaction() == before
    assert validate_image(db)["ok"]


def test_checks_are_methods_of_the_checks_object(kernel):
    assert set(CHECK_METHODS) <= set(kernel.send("checks", "slotNames"))
    assert kernel.send("checks", "respondsTo:", ["clone"])  # checks delegates to traits
    for name in CHECK_METHODS:
        history = kernel.send("checks", "methodHistory:", [name])
        assert history[0]["author"] == "genesis"


def test_the_image_is_valid_after_a_check_is_redefined_back(db, kernel):
    broken = "def checkCloneDelegates(self):\n    return False\n"
    kernel.send("checks", "defineMethod:source:", ["checkCloneDelegates", broken])
    assert not validate_image(db)["ok"]
    kernel.send("checks", "rollbackMethod:to:", ["checkCloneDelegates", 1])
    assert validate_image(db)["ok"]


def test_validation_reads_a_read_only_image(image_path, db):
    digest = validate_image(db)["digest"]
    db.close()
    readonly = open_db(Path(image_path), read_only=True)
    try:
        record = validate_image(readonly)
    finally:
        readonly.close()
    assert record["ok"], record["failures"]
    assert record["digest"] == digest


def test_the_walk_can_read_another_opening_of_the_image(image_path, db, kernel):
    kernel.send("genesis", "clone")
    alone = validate_image(db)
    # what the candidate can do beside the supervisor's ZEO server: walk the file read-only
    readonly = open_db(Path(image_path), read_only=True)
    try:
        record = validate_image(db, walk_db=readonly)
    finally:
        readonly.close()
    assert record["ok"], record["failures"]
    assert (record["digest"], record["objects"]) == (alone["digest"], alone["objects"])
    assert record["checks"] == alone["checks"]


# --- the self-checks run under the message budget -----------------------------------


SPIN = "def checkSpins(self):\n    while True:\n        try:\n            pass\n        except Exception:\n            pass\n"


def _validate_in_thread(db, **kwargs) -> dict:
    """validate_image on a daemon thread, joined with a deadline: a check with no budget
    would hold the thread forever, which must fail this test rather than hang it."""
    import threading

    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(validate_image(db, **kwargs)),
                              daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "a self-check with no budget hung the validation"
    return box


def test_a_self_check_over_its_budget_fails_validation_naming_it(db, kernel):
    from uvm.budget import Limits

    kernel.send("checks", "defineMethod:source:", ["checkSpins", SPIN])
    record = _validate_in_thread(db, limits=Limits(cpu=0.3, wall=5, grace=1))
    assert not record["ok"]
    assert record["checks"]["checkSpins"].startswith("BudgetExceeded: ")
    assert [line for line in record["failures"] if line.startswith("self-check")] == [
        f"self-check checkSpins failed: {record['checks']['checkSpins']}"]
    assert record["checks"]["checkWhileTrueCounts"] == "ok"  # the others still ran


def test_the_self_checks_budget_defaults_to_the_processes(db, kernel, monkeypatch):
    monkeypatch.setenv("BATOS_BUDGET_CPU", "0.3")
    monkeypatch.setenv("BATOS_BUDGET_WALL", "5")
    kernel.send("checks", "defineMethod:source:", ["checkSpins", SPIN])
    record = _validate_in_thread(db)
    assert "0.3s of CPU" in record["checks"]["checkSpins"]
    assert record["checks"]["checkCloneDelegates"] == "ok"
