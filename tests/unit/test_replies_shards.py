"""The reply record's shards: writers on different shards never conflict, every lookup
finds a record in any shard or in an older image's single tree, pruning covers them all.

Concurrency is real: two connections of one database over a real ZEO server (runzeo),
both transactions open on the same snapshot before either commits, enough records in
each to split buckets (the case BTree conflict resolution cannot merge).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from transaction.interfaces import NoTransaction
from ZODB.POSException import ConflictError

from tests.integration.zeo_fixtures import zeo_address_fixture  # noqa: F401
from uvm import Kernel, bootstrap, open_db
from uvm.replies import REPLIES_KEY, SHARDS_KEY, ReplyStore

BUMP = "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"
SPLITS = 200  # records per transaction: an OOBucket holds at most 30, so this splits


@pytest.fixture
def zeo_db(zeo_address: str) -> Iterator[Any]:
    db = open_db(zeo=zeo_address)
    bootstrap(db)
    try:
        yield db
    finally:
        db.close()


class Writer:
    """A connection with its own transaction manager, its transaction begun at once."""

    def __init__(self, db: Any) -> None:
        self.tm = transaction.TransactionManager(explicit=True)
        self.tm.begin()
        self.conn = db.open(transaction_manager=self.tm)
        self.root = self.conn.root()

    def store(self, shard: str) -> ReplyStore:
        return ReplyStore(self.root, shard=shard)

    def commit(self) -> None:
        self.tm.commit()

    def close(self) -> None:
        with contextlib.suppress(NoTransaction):  # committed: nothing to abort
            self.tm.abort()
        self.conn.close()


@pytest.fixture
def writers(zeo_db: Any) -> Iterator[Callable[[], Writer]]:
    opened: list[Writer] = []

    def make() -> Writer:
        opened.append(Writer(zeo_db))
        return opened[-1]

    try:
        yield make
    finally:
        for writer in opened:
            writer.close()


def fill(writers: Callable[[], Writer], shard: str, prefix: str, count: int) -> None:
    writer = writers()
    store = writer.store(shard)
    for i in range(count):
        store.record(f"{prefix}-{i}", i, now=1000.0 + i)
    writer.commit()


def race(writers: Callable[[], Writer], first: str, second: str) -> None:
    """Two transactions on one snapshot, each recording SPLITS ids in its shard; the
    second commits after the first did."""
    a, b = writers(), writers()
    for writer, shard in ((a, first), (b, second)):
        store = writer.store(shard)
        for i in range(SPLITS):
            store.record(f"{shard}-{id(writer)}-{i}", i)
    a.commit()
    b.commit()


@pytest.mark.integration
def test_writers_on_different_shards_never_conflict(writers):
    fill(writers, "0", "old", SPLITS)  # both shards already hold buckets and interior nodes
    fill(writers, "1", "old", SPLITS)
    for _ in range(3):
        race(writers, "0", "1")
    shards = writers().root[SHARDS_KEY]
    assert (len(shards["0"]), len(shards["1"])) == (4 * SPLITS, 4 * SPLITS)


@pytest.mark.integration
def test_writers_on_one_shard_do_conflict(writers):
    """The control for the test above: the same race on one shard is refused."""
    fill(writers, "0", "old", SPLITS)
    with pytest.raises(ConflictError):
        race(writers, "0", "0")


@pytest.mark.integration
def test_two_shards_created_at_once_merge(writers):
    """Creating a shard is the one write to the container; two at once do not conflict."""
    race(writers, "a", "b")
    assert sorted(writers().store("a").shards()) == ["a", "b"]


@pytest.mark.integration
def test_the_same_id_on_one_shard_at_once_conflicts(writers):
    """What keeps two runs of one request id on one shard (a handover's two lane k's)
    exactly-once: the second commit fails, and its retry finds the record."""
    fill(writers, "0", "old", SPLITS)
    a, b = writers(), writers()
    a.store("0").record("twin", "first")
    b.store("0").record("twin", "second")
    a.commit()
    with pytest.raises(ConflictError):
        b.commit()
    assert writers().store("1").get("twin") == "first"


def test_a_fresh_image_has_the_container_and_no_shard(db):
    with db.transaction() as conn:
        root = conn.root()
        assert SHARDS_KEY in root
        assert REPLIES_KEY not in root
        assert ReplyStore.exists(root)
        assert ReplyStore(root).shards() == []
        assert len(ReplyStore(root)) == 0


def test_lookup_finds_a_record_in_any_shard(db):
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        for shard in ("0", "1", "main"):
            ReplyStore(root, shard=shard).record(f"id-{shard}", shard)
        store = ReplyStore(root, shard="7")
        assert [store.get(f"id-{s}") for s in ("0", "1", "main")] == ["0", "1", "main"]
        assert store.get("id-7") is ReplyStore.MISSING
        assert sorted(store.shards()) == ["0", "1", "main"]
        assert len(store) == 3
    finally:
        tm.abort()
        conn.close()


def legacy_image(db: Any, entries: dict[str, Any], *, now: float = 1000.0) -> None:
    """An image as older versions left it: one tree, no shards."""
    with db.transaction() as conn:
        root = conn.root()
        del root[SHARDS_KEY]
        tree = root[REPLIES_KEY] = OOBTree()
        for rid, result in entries.items():
            tree[rid] = (now, result)


def test_an_older_images_single_tree_is_read_and_never_written(db):
    legacy_image(db, {"old-1": 41})
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        assert ReplyStore.exists(root)
        store = ReplyStore(root, shard="0")
        assert store.get("old-1") == 41
        assert not conn._registered_objects  # constructing and looking up wrote nothing
        store.record("new-1", 1)
        assert list(root[REPLIES_KEY].keys()) == ["old-1"]
        assert root[SHARDS_KEY]["0"]["new-1"][1] == 1
        assert len(store) == 2
    finally:
        tm.abort()
        conn.close()


def test_prune_covers_every_shard_and_drops_an_emptied_legacy_tree(db):
    legacy_image(db, {f"old-{i}": i for i in range(3)}, now=1000.0)
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        for k, shard in enumerate(("0", "1", "main")):
            store = ReplyStore(root, shard=shard, keep=4, max_age=3600)
            for i in range(3):
                store.record(f"{shard}-{i}", i, now=2000.0 + 10 * i + k)
        # 12 records, keep 4: the 3 legacy ones go first, then 0-0, 1-0, main-0, 0-1, 1-1
        assert store.prune(now=2100.0) == 8
        assert sorted(rid for s in ("0", "1", "main") for rid in root[SHARDS_KEY][s]) == \
            ["0-2", "1-2", "main-1", "main-2"]
        assert REPLIES_KEY not in root  # emptied, dropped
        assert store.prune(now=2021.0 + 3600) == 2  # older than max_age: main-1, 0-2
        assert len(store) == 2
        assert (store.get("1-2"), store.get("main-2")) == (2, 2)
    finally:
        tm.abort()
        conn.close()


def test_prune_keeps_a_legacy_tree_that_still_has_fresh_records(db):
    legacy_image(db, {"old-1": 1}, now=5000.0)
    with db.transaction() as conn:
        assert ReplyStore(conn.root(), keep=10, max_age=3600).prune(now=5001.0) == 0
        assert REPLIES_KEY in conn.root()


@pytest.fixture
def counter(kernel: Kernel) -> Kernel:
    kernel.send("genesis", "setSlot:value:", ["n", 0])
    kernel.send("genesis", "defineMethod:source:", ["bump", BUMP])
    return kernel


def test_a_resend_on_another_shard_answers_the_record(counter, db):
    """Exactly-once through the kernel: the id committed on lane 1's shard; resent on
    lane 2, on main, or without a shard, it is answered, not run."""
    assert counter.send("genesis", "bump", request_id="r-1", shard="1") == 1
    before = db.storage.lastTransaction()
    for shard in ("2", "main", None):
        assert counter.send("genesis", "bump", request_id="r-1", shard=shard) == 1
    assert db.storage.lastTransaction() == before
    assert counter.send("genesis", "n") == 1
    with db.transaction() as conn:
        assert ReplyStore(conn.root()).shards() == ["1"]


def test_a_resend_of_an_older_images_record_is_answered(counter, db):
    legacy_image(db, {"r-old": 99})
    assert counter.send("genesis", "bump", request_id="r-old", shard="0") == 99
    assert counter.send("genesis", "n") == 0


def test_kernel_maintenance_prunes_every_shard(counter):
    for i in range(6):
        counter.send("genesis", "bump", request_id=f"m-{i}", shard=str(i % 3))
    assert counter.maintain(keep=2) == 4
    assert counter.send("genesis", "bump", request_id="m-5", shard="0") == 6  # kept
    assert counter.send("genesis", "bump", request_id="m-0", shard="0") == 7  # pruned: runs
