"""The kernel's tries: transaction's attempts() retry write conflicts, and nothing else.

A data manager joined to the message's transaction refuses its commit with a
chosen error (a write conflict, the ZEO server going away), so each test
counts exactly how many times the kernel tried.
"""

from __future__ import annotations

import pytest
import transaction
from ZEO.Exceptions import ClientDisconnected
from ZODB.POSException import ConflictError

import uvm.kernel as kernel_module
from uvm import Kernel, RetriesExhausted, StorageUnavailable
from uvm.attempts import MAX_PAUSE, Manager, pause


class Refusing:
    """Joins every transaction it sees begin; refuses the first ``times`` commits with
    ``error`` (counting every commit tried)."""

    transaction_manager = None

    def __init__(self, error: type[Exception], times: float = float("inf")) -> None:
        self.error = error
        self.times = times
        self.tries = 0

    # synchronizer
    def newTransaction(self, txn):  # noqa: N802 - the transaction package's names
        txn.join(self)

    def beforeCompletion(self, txn):  # noqa: N802
        pass

    def afterCompletion(self, txn):  # noqa: N802
        pass

    # data manager
    def abort(self, txn):
        pass

    def tpc_begin(self, txn):
        pass

    def commit(self, txn):
        pass

    def tpc_vote(self, txn):
        self.tries += 1
        if self.tries <= self.times:
            raise self.error("test: refused")

    def tpc_finish(self, txn):
        pass

    def tpc_abort(self, txn):
        pass

    def sortKey(self):  # noqa: N802
        return "~refusing"


def last_tid(db):
    return db.storage.lastTransaction()


def refuse(kernel: Kernel, error: type[Exception], times: float = float("inf")) -> Refusing:
    """Make this thread's messages on ``kernel`` meet a ``Refusing`` at commit."""
    kernel.send("genesis", "printString")  # this thread's transaction manager exists now
    refusing = Refusing(error, times)
    kernel._local.tm.registerSynch(refusing)
    return refusing


def test_a_conflict_every_time_is_tried_retries_plus_one_times_then_exhausted(db):
    kernel = Kernel(db, retries=3, backoff=0)
    refusing = refuse(kernel, ConflictError)
    before = last_tid(db)
    with pytest.raises(RetriesExhausted, match="4 times; nothing was committed") as info:
        kernel.send("genesis", "setSlot:value:", ["mark", 1])
    assert isinstance(info.value.__cause__, ConflictError)
    assert refusing.tries == 4
    assert last_tid(db) == before
    kernel._local.tm.unregisterSynch(refusing)
    kernel.send("genesis", "setSlot:value:", ["mark", 2])  # the thread's manager still works
    assert kernel.send("genesis", "mark") == 2


def test_a_conflict_that_clears_commits_once(db):
    kernel = Kernel(db, retries=3, backoff=0)
    refusing = refuse(kernel, ConflictError, times=2)
    assert kernel.send("genesis", "setSlot:value:", ["mark", 1]) == {"$ref": kernel.send(
        "genesis", "uuid")}
    assert refusing.tries == 3
    assert kernel.send("genesis", "mark") == 1


def test_a_read_only_message_commits_nothing_not_even_an_empty_transaction(kernel):
    refusing = refuse(kernel, ConflictError)
    assert kernel.send("genesis", "printString").startswith("<genesis")
    assert refusing.tries == 0  # aborted, never committed


def test_a_server_gone_at_commit_is_not_retried_without_a_request_id(db):
    kernel = Kernel(db, retries=3, backoff=0)
    refusing = refuse(kernel, ClientDisconnected, times=1)
    with pytest.raises(StorageUnavailable, match="may or may not have committed"):
        kernel.send("genesis", "setSlot:value:", ["mark", 1])
    assert refusing.tries == 1
    assert "mark" not in kernel.send("genesis", "slotNames")


def test_with_a_request_id_an_outage_is_waited_out_and_the_reply_recorded(db):
    kernel = Kernel(db, retries=0, backoff=0)
    refusing = refuse(kernel, ClientDisconnected, times=2)
    kernel.send("genesis", "setSlot:value:", ["hits", 0], request_id="setup")
    kernel.send("genesis", "defineMethod:source:", [
        "hit", "def hit(self):\n    self.hits = self.hits + 1\n    return self.hits\n"],
        request_id="define")
    assert refusing.tries == 4  # two refused, then the two set-up messages
    assert kernel.send("genesis", "hit", request_id="r1") == 1
    assert kernel.send("genesis", "hit", request_id="r1") == 1  # the record answers
    assert kernel.send("genesis", "hits") == 1


def test_with_a_request_id_an_outage_longer_than_outage_wait_raises(db):
    kernel = Kernel(db, retries=0, backoff=0)
    kernel.outage_wait = 0.25
    refusing = refuse(kernel, ClientDisconnected)
    with pytest.raises(StorageUnavailable, match="may or may not have committed"):
        kernel.send("genesis", "setSlot:value:", ["mark", 1], request_id="r1")
    assert refusing.tries >= 2


def test_write_retries_its_conflicts_then_is_exhausted(db):
    kernel = Kernel(db, retries=2, backoff=0)
    calls = []

    def conflicting(cycle):
        calls.append(1)
        cycle.connection.transaction_manager.get().join(Refusing(ConflictError))
        return "done"

    with pytest.raises(RetriesExhausted, match="test write kept conflicting"):
        kernel.write(conflicting, note="test write")
    assert len(calls) == 3

    def once(cycle):
        calls.append(1)
        if len(calls) == 4:
            cycle.connection.transaction_manager.get().join(Refusing(ConflictError))
        cycle.registry.resolve("genesis")._slots["written"] = len(calls)
        return len(calls)

    assert kernel.write(once, note="test write") == 5
    assert kernel.send("genesis", "written") == 5


def test_maintain_answers_zero_when_every_try_conflicts(db, monkeypatch):
    kernel = Kernel(db, retries=2, backoff=0)
    for i in range(3):
        kernel.send("genesis", "setSlot:value:", ["n", i], request_id=f"r{i}")
    refused: list[Refusing] = []

    class RefusingManager(Manager):
        def __init__(self) -> None:
            super().__init__()
            refused.append(Refusing(ConflictError))
            self.registerSynch(refused[-1])

    monkeypatch.setattr(kernel_module, "Manager", RefusingManager)
    assert kernel.maintain(keep=1) == 0
    assert refused[0].tries == 3
    monkeypatch.undo()
    assert kernel.maintain(keep=1) == 2


def test_the_last_attempt_aborts_a_commit_that_failed():
    tm = Manager()
    refusing = Refusing(ConflictError)

    def attempts():
        for attempt in tm.attempts(2):
            with attempt as txn:
                txn.join(refusing)

    with pytest.raises(ConflictError):
        attempts()
    assert refusing.tries == 2
    tm.begin()  # not left in the failed transaction (no AlreadyInTransaction)
    tm.abort()
    with pytest.raises(transaction.interfaces.NoTransaction):
        tm.get()


def test_the_pause_doubles_up_to_its_cap_and_jitters_around_it():
    assert [pause(0.01, n) for n in range(3)] == [0.01, 0.02, 0.04]
    assert pause(0.01, 30) == MAX_PAUSE
    for n in range(8):
        assert 0.5 * pause(0.01, n) <= pause(0.01, n, jitter=True) <= 1.5 * pause(0.01, n)
