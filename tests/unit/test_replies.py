"""Exactly-once: a request id that committed is answered from the record, never rerun."""

from __future__ import annotations

import pytest
import transaction

from uvm import MethodFailed
from uvm.replies import ReplyStore

BUMP = "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"


@pytest.fixture
def counter(kernel):
    kernel.send("genesis", "setSlot:value:", ["n", 0])
    kernel.send("genesis", "defineMethod:source:", ["bump", BUMP])
    return kernel


def test_same_id_runs_once_and_answers_the_same_reply(counter, db):
    assert counter.send("genesis", "bump", request_id="r-1") == 1
    before = db.storage.lastTransaction()
    assert counter.send("genesis", "bump", request_id="r-1") == 1
    assert db.storage.lastTransaction() == before
    assert counter.send("genesis", "n") == 1
    assert counter.send("genesis", "bump", request_id="r-2") == 2


def test_read_only_requests_record_nothing(counter, db):
    before = db.storage.lastTransaction()
    assert counter.send("genesis", "n", request_id="read-1") == 0
    assert db.storage.lastTransaction() == before


def test_failed_request_is_not_recorded_and_may_be_retried(counter):
    counter.send("genesis", "defineMethod:source:", [
        "flaky", "def flaky(self):\n    self.n = self.n + 1\n    return 1 / self.gate\n"])
    counter.send("genesis", "setSlot:value:", ["gate", 0])
    with pytest.raises(MethodFailed):
        counter.send("genesis", "flaky", request_id="f-1")
    counter.send("genesis", "setSlot:value:", ["gate", 1])
    assert counter.send("genesis", "flaky", request_id="f-1") == 1.0
    assert counter.send("genesis", "n") == 1


def test_retention_is_bounded_by_count_and_age(db):
    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        store = ReplyStore(conn.root(), keep=50, max_age=3600)
        for i in range(200):
            store.record(f"id-{i}", i, now=1000.0 + i)
        assert store.prune(now=1000.0 + 200) == 150
        assert len(store) == 50
        assert store.get("id-199") == 199
        assert store.get("id-149") is ReplyStore.MISSING
        assert store.prune(now=1000.0 + 199 + 3601) == 50  # all older than max_age now
        assert len(store) == 0
        tm.abort()
    finally:
        conn.close()


def test_kernel_maintenance_prunes_in_its_own_transaction(counter, db):
    for i in range(5):
        counter.send("genesis", "bump", request_id=f"m-{i}")
    assert counter.maintain(keep=2) == 3
    assert counter.send("genesis", "bump", request_id="m-4") == 5  # kept: answered, not rerun
    assert counter.send("genesis", "bump", request_id="m-0") == 6  # pruned: runs again
