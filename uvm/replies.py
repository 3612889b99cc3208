"""Exactly-once effects: the replies of committed requests, kept in the image.

A request that carries an id and changes something records ``id -> reply``
in the same transaction as its effects, so either both are durable or
neither is. A request whose id is already recorded is not run again: its
stored reply is returned. Read-only requests record nothing (they stay
commit-free), which is safe because running them twice has no effect.

Layout: ``root[SHARDS_KEY]`` is an OOBTree of *shards*, ``shard name ->
OOBTree(request id -> (committed_at, result))``. A writer names its shard
(the kernel passes the lane of the request's target: ``"0"``, ``"1"``, ...,
``uvm.lanes.shard_for``, also when the main socket carried it; ``"main"`` in an
incarnation without lanes) and records only there, so two
writers on different shards never write the same object: a BTree split (which
conflict resolution cannot merge, and which BTrees guard with ``readCurrent`` on
the interior nodes) stays inside one writer's tree. A shard's tree is created
by its first record; that is the only write to the container (an OOBTree
itself, so two shards created at once merge). A lookup reads the own shard
first, then the other shards, then the legacy single tree ``root[REPLIES_KEY]``
of older images (read only; ``prune`` empties it and then drops it).

Shards are bounded by the lane count, not by incarnations: in a handover, or a
pool of incarnations, every incarnation writes a target's record into the shard
of that target's lane (``crc32(target) % lanes``), whichever lane ran it. That is
acceptable: those writers are few, BTree conflict resolution merges most of
their inserts and the kernel retries the rest; and two runs of the *same*
request id on one shard always conflict (both insert the key), so the loser is
retried and answers the record. Two runs of the same id at the same time on
*different* shards are not stopped by the record (neither has committed when the
other looks; their effects on the same objects usually conflict instead): the
supervisor never has one id in flight twice (it joins them), and a resend has the
same shard as its first run whenever the lane count is the same.

Retention is bounded by ``prune``, which the incarnation runs in a transaction
of its own every so often (``Kernel.maintain``): over all shards and the legacy
tree, records older than ``max_age`` go, then the oldest beyond ``keep``. A
client that resends a request after its record was pruned would run it again;
the defaults (100,000 records, 7 days) are far beyond any client's resend
window.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from BTrees.OOBTree import OOBTree

__all__ = ["REPLIES_KEY", "SHARDS_KEY", "ReplyStore"]

#: the single tree of older images (``request id -> (committed_at, result)``): read, pruned, dropped
REPLIES_KEY = "batos.replies"
#: ``shard name -> OOBTree(request id -> (committed_at, result))``
SHARDS_KEY = "batos.reply_shards"
_MISSING = object()


class ReplyStore:
    """``request id -> (committed_at, result)``, recorded in the shard ``shard``.

    Constructing one writes nothing, except on an image with no record at all
    (bootstrap), where it plants the empty container.
    """

    MISSING = _MISSING

    def __init__(self, root: Any, *, shard: str = "0", keep: int = 100_000,
                 max_age: float = 7 * 86400) -> None:
        if not isinstance(shard, str) or not shard:
            raise ValueError(f"a reply shard is named by a non-empty str, got {shard!r}")
        self.root = root
        self.shard = shard
        self.keep = keep
        self.max_age = max_age
        if not self.exists(root):
            root[SHARDS_KEY] = OOBTree()

    @staticmethod
    def exists(root: Any) -> bool:
        return SHARDS_KEY in root or REPLIES_KEY in root

    def _trees(self) -> Iterator[tuple[str | None, OOBTree]]:
        """Every tree a record may be in: the own shard, the other shards, the legacy
        tree (named ``None``)."""
        shards = self.root.get(SHARDS_KEY)
        if shards is not None:
            own = shards.get(self.shard)
            if own is not None:
                yield self.shard, own
            for name, tree in shards.items():
                if name != self.shard:
                    yield name, tree
        legacy = self.root.get(REPLIES_KEY)
        if legacy is not None:
            yield None, legacy

    def get(self, request_id: str) -> Any:
        """The stored result, or ``ReplyStore.MISSING``."""
        for _name, tree in self._trees():
            entry = tree.get(request_id)
            if entry is not None:
                return entry[1]
        return _MISSING

    def record(self, request_id: str, result: Any, now: float | None = None) -> None:
        """Record in the own shard only (created by its first record)."""
        shards = self.root.get(SHARDS_KEY)
        if shards is None:  # an older image: its first record plants the container
            shards = self.root[SHARDS_KEY] = OOBTree()
        own = shards.get(self.shard)
        if own is None:
            own = shards[self.shard] = OOBTree()
        own[request_id] = (time.time() if now is None else now, result)

    def shards(self) -> list[str]:
        """The names of the shards created so far."""
        shards = self.root.get(SHARDS_KEY)
        return [] if shards is None else list(shards.keys())

    def __len__(self) -> int:
        return sum(len(tree) for _name, tree in self._trees())

    def prune(self, now: float | None = None) -> int:
        """Drop records older than ``max_age``, then the oldest beyond ``keep``, over all
        shards and the legacy tree; a legacy tree left empty is dropped. Answers how many."""
        now = time.time() if now is None else now
        horizon = now - self.max_age
        trees = dict(self._trees())
        stamped = [(entry[0], name, rid) for name, tree in trees.items()
                   for rid, entry in tree.items()]
        doomed = [(name, rid) for ts, name, rid in stamped if ts < horizon]
        alive = len(stamped) - len(doomed)
        if alive > self.keep:
            fresh = sorted((ts, name or "", rid) for ts, name, rid in stamped if ts >= horizon)
            doomed.extend((name or None, rid) for _ts, name, rid in fresh[: alive - self.keep])
        for name, rid in doomed:
            del trees[name][rid]
        legacy = trees.get(None)
        if legacy is not None and not len(legacy):
            if SHARDS_KEY not in self.root:  # the image keeps a record (``exists``)
                self.root[SHARDS_KEY] = OOBTree()
            del self.root[REPLIES_KEY]
        return len(doomed)
