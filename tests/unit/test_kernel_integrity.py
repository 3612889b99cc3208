"""Kernel integrity: a message commits only its own changes; a failed one leaves the image
unchanged; a transaction that could not begin never wedges the worker."""

from __future__ import annotations

import threading

import pytest
import transaction
from ZEO.Exceptions import ClientDisconnected

from uvm import Kernel
from uvm import methods as uvm_methods
from uvm.errors import ForeignChange, StorageUnavailable
from uvm.integrity import OwnedConnection, discard_pending


def last_tid(db):
    return db.storage.lastTransaction()


# Module-level, so a method compiled (and cached) by one test sees the same functions.
_KEPT: list = []
_ERRORS: list = []


def _test_keep(obj):
    _KEPT.append(obj)
    return True


def _test_meddle_from_another_thread(value):
    def meddle():
        try:
            _KEPT[0].colour = value
        except Exception as exc:  # what the other thread got
            _ERRORS.append(exc)
    worker = threading.Thread(target=meddle)
    worker.start()
    worker.join(10)
    return True


@pytest.fixture
def leak(monkeypatch):
    """Primitives standing for a reference a method managed to keep past its message."""
    _KEPT.clear()
    _ERRORS.clear()
    monkeypatch.setitem(uvm_methods._primitives, "test_keep", _test_keep)
    monkeypatch.setitem(uvm_methods._primitives, "test_meddle_from_another_thread",
                        _test_meddle_from_another_thread)
    return _KEPT, _ERRORS


def test_a_kept_object_changed_after_its_message_is_refused_and_forgotten(kernel, db, leak):
    kept, _errors = leak
    kernel.send("genesis", "defineMethod:source:", ["stash", "def stash(self):\n"
                                                              "    return test_keep(self)\n"])
    kernel.send("genesis", "stash")
    before = last_tid(db)
    with pytest.raises(ForeignChange, match="belongs to another message"):
        kept[0].colour = "red"  # the message is over: its connection is closed
    assert last_tid(db) == before
    # neither read nor committed by the next messages
    assert "colour" not in kernel.send("genesis", "slotNames")
    kernel.send("genesis", "setSlot:value:", ["size", 3])
    assert "colour" not in kernel.send("genesis", "slotNames")


def test_a_change_from_another_thread_is_not_committed_with_this_message(kernel, db, leak):
    kept, errors = leak
    kernel.send("genesis", "defineMethod:source:", ["stash", "def stash(self):\n"
                                                              "    return test_keep(self)\n"])
    kernel.send("genesis", "stash")
    kernel.send("genesis", "defineMethod:source:", [
        "busy", "def busy(self):\n    test_meddle_from_another_thread('red')\n"
                "    self.size = 4\n    return 1\n"])
    kernel.send("genesis", "busy")
    assert len(errors) == 1
    assert isinstance(errors[0], ForeignChange)
    assert kernel.send("genesis", "size") == 4
    assert "colour" not in kernel.send("genesis", "slotNames")


def test_the_kernels_database_hands_out_owned_connections(kernel, db):
    conn = db.open(transaction_manager=transaction.TransactionManager(explicit=True))
    try:
        assert isinstance(conn, OwnedConnection)
    finally:
        conn.close()


def test_pending_changes_at_the_start_of_a_message_are_discarded(kernel, db):
    from uvm.registry import Registry

    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        genesis = Registry(conn.root()).resolve("genesis")
        genesis._slots["planted"] = 1
        genesis._p_changed = True  # registered with this connection
        assert discard_pending(conn, tm)
        assert "planted" not in Registry(conn.root()).resolve("genesis")._slots
        assert not discard_pending(conn, tm)
    finally:
        tm.abort()
        conn.close()
    assert "planted" not in kernel.send("genesis", "slotNames")


class _FailingSynch:
    """A transaction synchronizer whose storage is away once (ZEO's ClientDisconnected)."""

    def __init__(self) -> None:
        self.fail = True

    def newTransaction(self, txn):  # noqa: N802 - the transaction package's name
        if self.fail:
            self.fail = False
            raise ClientDisconnected("test: the server went away")

    def beforeCompletion(self, txn):  # noqa: N802
        pass

    def afterCompletion(self, txn):  # noqa: N802
        pass


def test_a_begin_that_fails_does_not_wedge_the_worker(kernel):
    kernel.send("genesis", "printString")  # this thread's transaction manager exists now
    synch = _FailingSynch()
    kernel._local.tm.registerSynch(synch)
    with pytest.raises(StorageUnavailable, match="did not run"):
        kernel.send("genesis", "printString")
    # the next message starts clean (no AlreadyInTransaction)
    assert kernel.send("genesis", "printString").startswith("<genesis")
    kernel.send("genesis", "setSlot:value:", ["after", 1])
    assert kernel.send("genesis", "after") == 1


def test_a_failed_message_leaves_the_image_unchanged_on_every_exit_path(db):
    from uvm.budget import Limits
    from uvm.errors import BudgetExceeded, MethodFailed, ReplyTooLarge

    kernel = Kernel(db, limits=Limits(cpu=0.15, wall=5, grace=1), max_reply_bytes=1000)
    cases = {
        "fails": ("def fails(self):\n    self.mark = 1\n    return 1 / 0\n", MethodFailed),
        "spins": ("def spins(self):\n    self.mark = 1\n    while True:\n        pass\n",
                  BudgetExceeded),
        "large": ("def large(self):\n    self.mark = 1\n    return 'z' * 5000\n", ReplyTooLarge),
    }
    for selector, (source, _error) in cases.items():
        kernel.send("genesis", "defineMethod:source:", [selector, source])
    before = last_tid(db)
    for selector, (_source, error) in cases.items():
        with pytest.raises(error):
            kernel.send("genesis", selector)
        assert last_tid(db) == before
        assert "mark" not in kernel.send("genesis", "slotNames")


class _LeakyKernel(Kernel):
    """A kernel whose first send lets a BaseException escape (a bug the front must survive)."""

    escaped = False

    def send(self, *args, **kwargs):
        if not self.escaped:
            self.escaped = True
            raise KeyboardInterrupt("escaped the kernel")
        return super().send(*args, **kwargs)


def test_the_front_survives_a_signal_that_escaped_the_kernel(db):
    import asyncio

    from uvm import AsyncKernel
    from uvm.errors import ImageError

    async def scenario():
        async with AsyncKernel(_LeakyKernel(db), workers=1) as front:
            with pytest.raises(ImageError, match="KeyboardInterrupt"):
                await front.send("genesis", "printString")
            return await front.send("genesis", "printString")

    assert asyncio.run(scenario()).startswith("<genesis")


def test_a_thread_holds_one_connection_across_its_messages_idle_between(kernel, db, leak):
    """The kernel keeps a thread's connection open between its messages (no open and
    close per message), and refuses every change through it while it is idle."""
    kernel.send("genesis", "defineMethod:source:", ["stash", "def stash(self):\n"
                                                              "    return test_keep(self)\n"])
    kernel.send("genesis", "stash")
    held = kernel._local.conn
    kernel.send("genesis", "setSlot:value:", ["size", 3])
    assert kernel._local.conn is held
    assert held.opened is not None
    with pytest.raises(ForeignChange):
        _KEPT[0].colour = "idle"
    # a spoiled manager lets its connection go: the next message opens another
    kernel._local.tm.spoiled = True
    kernel.send("genesis", "size")
    assert held.opened is None
    assert kernel._local.conn is not held
    assert kernel.send("genesis", "size") == 3
    assert "colour" not in kernel.send("genesis", "slotNames")
