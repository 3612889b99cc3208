"""Exactly-once effects: the replies of committed requests, kept in the image.

A request that carries an id and changes something records ``id -> reply``
in the same transaction as its effects, so either both are durable or
neither is. A request whose id is already recorded is not run again: its
stored reply is returned. Read-only requests record nothing (they stay
commit-free), which is safe because running them twice has no effect.

The record is one OOBTree keyed by request id (uuid4s spread over buckets,
so concurrent writers rarely touch the same bucket and BTree conflict
resolution merges those that do); each record is ``(committed_at, result)``.
Recording costs one bucket write per message and nothing else on the hot
path. Retention is bounded by ``prune``, which the incarnation runs in a
transaction of its own every so often (``Kernel.maintain``): records older
than ``max_age`` go, then the oldest beyond ``keep``. A client that resends
a request after its record was pruned would run it again; the defaults
(100,000 records, 7 days) are far beyond any client's resend window.
"""

from __future__ import annotations

import time
from typing import Any

from BTrees.OOBTree import OOBTree

__all__ = ["ReplyStore"]

REPLIES_KEY = "batos.replies"
_MISSING = object()


class ReplyStore:
    """``request id -> (committed_at, result)``."""

    MISSING = _MISSING

    def __init__(self, root: Any, *, keep: int = 100_000, max_age: float = 7 * 86400) -> None:
        if REPLIES_KEY not in root:
            root[REPLIES_KEY] = OOBTree()
        self.replies: OOBTree = root[REPLIES_KEY]
        self.keep = keep
        self.max_age = max_age

    @staticmethod
    def exists(root: Any) -> bool:
        return REPLIES_KEY in root

    def get(self, request_id: str) -> Any:
        """The stored result, or ``ReplyStore.MISSING``."""
        entry = self.replies.get(request_id)
        return _MISSING if entry is None else entry[1]

    def record(self, request_id: str, result: Any, now: float | None = None) -> None:
        self.replies[request_id] = (time.time() if now is None else now, result)

    def __len__(self) -> int:
        return len(self.replies)

    def prune(self, now: float | None = None) -> int:
        """Drop records older than ``max_age``, then the oldest beyond ``keep``; answers how many."""
        now = time.time() if now is None else now
        horizon = now - self.max_age
        stamped = [(entry[0], rid) for rid, entry in self.replies.items()]
        doomed = [rid for ts, rid in stamped if ts < horizon]
        alive = len(stamped) - len(doomed)
        if alive > self.keep:
            fresh = sorted((ts, rid) for ts, rid in stamped if ts >= horizon)
            doomed.extend(rid for _ts, rid in fresh[: alive - self.keep])
        for rid in doomed:
            del self.replies[rid]
        return len(doomed)
