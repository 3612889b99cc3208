"""Image integrity over a real ZEO server: the class allowlist holds for ClientStorage too.

A hostile record is stored through a raw ``ClientStorage`` transaction (below
ZODB's connections, as a foreign client would); a batos database opened on the
same server (``open_db(zeo=...)``) refuses to load it, naming the oid, without
running it, and keeps serving; a commit of a foreign class through batos is
refused before it reaches the server.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from ZEO.ClientStorage import ClientStorage
from ZODB.Connection import TransactionMetaData
from ZODB.utils import oid_repr

from tests.integration.zeo_fixtures import zeo_address_fixture  # noqa: F401
from tests.unit.test_image_integrity import Reduce, record
from uvm import ImageError, InvalidValue, Kernel, bootstrap, open_db, verify


@pytest.fixture
def zeo_db(zeo_address: str) -> Any:
    db = open_db(zeo=zeo_address)
    bootstrap(db)
    try:
        yield db
    finally:
        db.close()


def raw_store(address: str, oid: bytes, data: bytes) -> None:
    """Store ``data`` as ``oid``'s record through a client of our own, not through ZODB."""
    storage = ClientStorage(address, wait_timeout=30)
    try:
        txn = TransactionMetaData()
        storage.tpc_begin(txn)
        storage.store(oid, storage.load(oid)[1], data, "", txn)
        storage.tpc_vote(txn)
        storage.tpc_finish(txn)
    finally:
        storage.close()


def test_a_hostile_record_over_zeo_is_refused_and_the_image_serves(zeo_db, zeo_address, tmp_path):
    canary = tmp_path / "canary"
    kernel = Kernel(zeo_db)
    uuid = kernel.send("genesis", "clone")["$ref"]
    kernel.send("genesis", "setSlot:value:", ["victim", {"$ref": uuid}])
    oid = kernel.read(lambda cycle: cycle.registry.resolve(uuid)._p_oid)
    hostile = {"_uuid": uuid, "_slots": {"x": Reduce(os.system, f"touch {canary}")}}
    raw_store(zeo_address, oid, record(hostile))

    with pytest.raises(ImageError) as err:
        kernel.send(uuid, "x")
    assert oid_repr(oid) in str(err.value)
    assert "posix.system" in str(err.value) or "os.system" in str(err.value)
    assert not canary.exists()
    # the rest of the image serves and commits
    other = kernel.send("genesis", "clone")["$ref"]
    kernel.send(other, "setSlot:value:", ["n", 7])
    assert kernel.send(other, "n") == 7
    problems, _ = verify(zeo_db)
    assert any(oid_repr(oid) in line for line in problems), problems
    assert not canary.exists()


class Foreign:
    """A class of the test module: not one the image stores."""


def test_a_foreign_class_is_refused_before_it_reaches_the_server(zeo_db, zeo_address):
    kernel = Kernel(zeo_db)
    before = zeo_db.storage.lastTransaction()

    def plant(cycle: Any) -> None:
        genesis = cycle.registry.resolve("genesis")
        genesis._slots["foreign"] = Foreign()  # below write_slot, as a bug would
        genesis._p_changed = True

    with pytest.raises(InvalidValue, match=f"{__name__}.Foreign"):
        kernel.write(plant)
    assert zeo_db.storage.lastTransaction() == before
    # a second client (a fresh batos process would) sees genesis as it was
    second = open_db(zeo=zeo_address)
    try:
        names = Kernel(second).send("genesis", "slotNames")
        assert "foreign" not in names
    finally:
        second.close()


def test_the_crucibles_trial_refuses_a_proposal_that_changes_genesis(db, image_path):
    """The trial installs through the same path as the live install: as the mind, protected."""
    from crucible import ImageRef, Proposal, TrialLimits, TrialRunner

    acts = [{"action": "DEFINE_METHOD", "target": "traits", "selector": "doesNotUnderstand:",
             "source": "def doesNotUnderstand(self, message):\n    return 1\n"},
            {"action": "DEFINE_METHOD", "selector": "wanted",
             "source": "def wanted(self):\n    return 1\n"}]
    limits = TrialLimits(cpu_seconds=2.0, memory_mb=256, wall_seconds=20.0)
    with TrialRunner(ImageRef(path=str(image_path)), limits) as runner:
        refused = runner.run(Proposal(acts=acts), receiver="genesis", selector="wanted", args=[])
        allowed = runner.run(Proposal(acts=acts[1:]), receiver="genesis", selector="wanted",
                             args=[])
    assert refused.status == "fail"
    assert "proposal from the mind" in " ".join(refused.reasons), refused.reasons
    assert allowed.status == "pass", allowed.reasons
