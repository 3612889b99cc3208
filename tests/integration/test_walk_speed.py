"""The validation walk through a real ZEO server, on the incarnation's own client.

A 20k-record image (``bench.bench_walk.populate``) behind runzeo is walked
completely through ``open_db(zeo=...)`` with ``uvm.record_feed``'s ZEO feed (the
file is read only as the independent oracle: the count of reachable records and
the digest of the same walk over it). The walk sees one snapshot while another
client commits in the middle of it; a record naming a forbidden global, a
reference to a missing record and a class this env cannot import are still
found among the 20k; a server that dies mid-walk fails the walk
(``StorageUnavailable``), never a short record called complete. Behaviour only:
bench/bench_walk.py measures the speed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import oid_repr, p64, z64

import uvm.image_walk as image_walk
import uvm.pickles
from bench.bench_walk import populate
from tests.integration.zeo_fixtures import kill_and_reap, start_runzeo
from tests.unit.test_image_integrity import Reduce
from tests.unit.test_validation import Dangling, raw_record, raw_store
from uvm import Kernel, StorageUnavailable, bootstrap, open_db
from uvm.validation import validate_image

RECORDS = 20_000


@dataclass
class Served:
    sock: str
    image: Path
    server: Any


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One runzeo with a 20k-record image for the module (built once: ~5 s)."""
    folder = tmp_path_factory.mktemp("walk")
    sockdir = Path(tempfile.mkdtemp(prefix="batos-zeo-"))  # short: socket paths max ~107 bytes
    sock = sockdir / "zeo.sock"
    server = start_runzeo(sock, folder / "image.fs", folder / "zeo.log")
    try:
        db = open_db(zeo=str(sock))
        try:
            bootstrap(db)
            populate(db, RECORDS)
        finally:
            db.close()
        yield Served(str(sock), folder / "image.fs", server)
    finally:
        kill_and_reap(server, grace=10.0)
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.fixture
def zdb(served: Served) -> Iterator[Any]:
    """The incarnation's kind of database: a batos ZEO client."""
    db = open_db(zeo=served.sock)
    try:
        yield db
    finally:
        db.close()


def file_oracle(image: Path) -> tuple[int, str]:
    """Reachable records that exist and the walk's digest, read from the file (read-only,
    no lock): the independent answer the ZEO walk must match."""
    storage = FileStorage(str(image), read_only=True)
    try:
        seen, todo, found = {z64}, [z64], 0
        while todo:
            try:
                data = storage.load(todo.pop())[0]
            except POSKeyError:
                continue
            found += 1
            for ref in referencesf(data):
                if ref not in seen:
                    seen.add(ref)
                    todo.append(ref)
    finally:
        storage.close()
    db = open_db(image, read_only=True)
    try:
        return found, walk(db).digest.hexdigest()
    finally:
        db.close()


def walk(db: Any) -> image_walk.Walk:
    result = image_walk.Walk(frozenset(), image_walk.Failures(), float("inf"))
    image_walk.walk_image(db, result)
    return result


def test_a_20k_image_is_walked_completely_through_the_zeo_client(served, zdb):
    record = validate_image(zdb)
    assert record["ok"], record["failures"]
    assert record["feed"] == "zeo"  # the installed ZEO client has the shape the feed drives
    count, digest = file_oracle(served.image)
    assert record["objects"] == count >= RECORDS
    assert record["digest"] == digest
    assert record["methods"] >= RECORDS // 6  # every clone's method compiled (or its verdict)


def test_the_walk_leaves_the_zeo_client_cache_to_the_incarnation(served, zdb):
    result = walk(zdb)
    assert result.complete
    assert result.feed == "zeo"
    assert result.count >= RECORDS
    # the records came past ZEO's client cache: the incarnation's hot records stay in it
    assert len(zdb.storage._cache) < 100


class FeedThatCommits:
    """The walk's feed, calling ``commit`` once the walk is under way; notes what it hands
    over after that."""

    def __init__(self, feed: Any, commit: Any, after: int) -> None:
        self.feed, self.commit, self.after = feed, commit, after
        self.kind = feed.kind
        self.taken = 0
        self.taken_after: set[bytes] = set()

    def ask(self, oids: Any) -> None:
        self.feed.ask(oids)

    def take(self, oid: bytes) -> bytes | None:
        self.taken += 1
        if self.taken == self.after:
            self.commit()
        elif self.taken > self.after:
            self.taken_after.add(oid)
        return self.feed.take(oid)


def test_the_walk_sees_one_snapshot_while_another_client_commits(served, zdb, monkeypatch):
    before = walk(zdb)
    other = open_db(zeo=served.sock)
    try:
        kernel = Kernel(other)
        clones = kernel.read(lambda cycle: [
            (uuid, obj._p_oid) for uuid, obj in cycle.registry.objects.items()
            if obj is not cycle.registry.resolve("walkproto")][-20:])

        def commit() -> None:  # new objects, and a new reference in records not read yet
            kernel.send("genesis", "applyActs:", [[
                {"action": "CLONE_PROTOTYPE", "target": "walkproto", "slots": {"i": -i}}
                for i in range(50)]])
            kernel.send("genesis", "applyActs:", [[
                {"action": "ADD_SLOT", "target": uuid, "slot": "extra", "value": {"$ref": "genesis"}}
                for uuid, _oid in clones]])

        feeds: list[FeedThatCommits] = []
        real = image_walk.feed_for

        def committing(conn: Any) -> FeedThatCommits:
            feeds.append(FeedThatCommits(real(conn), commit, after=100))
            return feeds[-1]

        monkeypatch.setattr(image_walk, "feed_for", committing)
        during = walk(zdb)
        monkeypatch.setattr(image_walk, "feed_for", real)
        assert during.feed == "zeo"
        assert feeds[0].taken == during.count > 100
        # the changed records were read after the commit, as they were before it
        assert {oid for _uuid, oid in clones} <= feeds[0].taken_after
        assert (during.count, during.digest.hexdigest()) == (before.count, before.digest.hexdigest())
        after = walk(zdb)
        assert after.count >= before.count + 50
        assert after.digest.hexdigest() != before.digest.hexdigest()
    finally:
        other.close()


def test_planted_broken_objects_are_found_among_20k_through_zeo(served, zdb, tmp_path):
    kernel = Kernel(zdb)
    hostile_uuid = kernel.send("walkproto", "clone")["$ref"]
    dangling_uuid = kernel.send("walkproto", "clone")["$ref"]
    hostile, dangling = kernel.read(lambda cycle: [
        cycle.registry.resolve(uuid)._p_oid for uuid in (hostile_uuid, dangling_uuid)])
    originals = {oid: zdb.storage.load(oid)[0] for oid in (hostile, dangling)}
    missing = p64(2**40)  # never allocated
    canary = tmp_path / "canary"
    raw_store(zdb, {
        hostile: raw_record({"_uuid": hostile_uuid,
                             "_slots": {"x": Reduce(os.system, f"touch {canary}")}}),
        dangling: raw_record({"_uuid": dangling_uuid, "_slots": {"gone": Dangling(missing)}}),
    })
    try:
        record = validate_image(zdb)
        count, digest = file_oracle(served.image)
    finally:
        raw_store(zdb, originals)
    assert record["feed"] == "zeo"
    assert not record["ok"]
    assert not canary.exists()
    walked = [line for line in record["failures"] if line.startswith("object ")]
    assert sorted(walked) == sorted([
        f"object {oid_repr(hostile)} of class uvm.obj.UvmObject does not unpickle: it names "
        "posix.system, which is not a class the image allows (uvm.pickles.ALLOWED); nothing "
        "of it was run",
        f"object {oid_repr(missing)} is referenced but missing from the storage",
    ]), record["failures"]
    # the walk went on past both: every record that exists, and the same shape as the file's
    assert (record["objects"], record["digest"]) == (count, digest)
    assert validate_image(zdb)["ok"]  # restored


def test_a_class_this_env_cannot_import_is_found_through_zeo(served, zdb, monkeypatch):
    count, _digest = file_oracle(served.image)
    monkeypatch.setattr(uvm.pickles, "_classes", {})  # the allowed classes, looked up anew
    monkeypatch.delattr("BTrees.OOBTree.OOBTree")  # an env whose library lacks the class
    result = walk(zdb)
    assert result.complete
    assert result.feed == "zeo"
    assert result.count == count  # on past them, through the trees' buckets
    lines = result.failures.lines()
    assert lines
    assert all(line.startswith("object ") for line in lines), lines
    trees = [line for line in lines if "of class BTrees.OOBTree.OOBTree does not unpickle: "
             "its class cannot be imported with this env's libraries" in line]
    assert trees
    # the root mapping holds the registry's trees: it fails too, naming the class
    assert any("refers to BTrees.OOBTree.OOBTree, which cannot be imported" in line
               for line in lines), lines
    assert len(trees) + 1 == len(lines)


def test_a_server_lost_mid_walk_fails_the_walk(tmp_path, monkeypatch):
    sockdir = Path(tempfile.mkdtemp(prefix="batos-zeo-"))
    server = start_runzeo(sockdir / "zeo.sock", tmp_path / "image.fs", tmp_path / "zeo.log")
    try:
        db = open_db(zeo=str(sockdir / "zeo.sock"), zeo_timeout=5)
        try:
            bootstrap(db)
            populate(db, 2_000)
            real = image_walk.feed_for

            def kill(conn: Any) -> FeedThatCommits:
                return FeedThatCommits(real(conn), lambda: kill_and_reap(server), after=20)

            monkeypatch.setattr(image_walk, "feed_for", kill)
            result = image_walk.Walk(frozenset(), image_walk.Failures(), float("inf"))
            with pytest.raises(StorageUnavailable, match="through ZEO"):
                image_walk.walk_image(db, result)
            assert not result.complete
            assert result.feed == "zeo"
        finally:
            db.close()
    finally:
        kill_and_reap(server)
        shutil.rmtree(sockdir, ignore_errors=True)
