"""Exactly-once effects: the replies of committed requests, kept in the image.

A request that carries an id and changes something records ``id -> reply``
in the same transaction as its effects, so either both are durable or
neither is. A request whose id is already recorded is not run again: its
stored reply is returned. Read-only requests record nothing (they stay
commit-free), which is safe because running them twice has no effect.

Retention is bounded: the oldest records are dropped, a batch at a time,
once there are more than ``keep`` of them or they are older than
``max_age`` seconds. A client that resends a request after its record was
pruned would run it again; the defaults (100,000 records, 7 days) are far
beyond any client's resend window.
"""

from __future__ import annotations

import time
from typing import Any

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree

__all__ = ["ReplyStore"]

REPLIES_KEY = "batos.replies"
ORDER_KEY = "batos.replies.order"
COUNT_KEY = "batos.replies.count"
_MISSING = object()


class ReplyStore:
    """``id -> (committed_at, result)`` plus an index by commit time for pruning."""

    def __init__(self, root: Any, *, keep: int = 100_000, max_age: float = 7 * 86400) -> None:
        if REPLIES_KEY not in root:
            root[REPLIES_KEY] = OOBTree()
            root[ORDER_KEY] = OOBTree()
            root[COUNT_KEY] = Length()
        self.replies: OOBTree = root[REPLIES_KEY]
        self.order: OOBTree = root[ORDER_KEY]
        self.count: Length = root[COUNT_KEY]
        self.keep = keep
        self.max_age = max_age

    @staticmethod
    def exists(root: Any) -> bool:
        return REPLIES_KEY in root

    def get(self, request_id: str) -> Any:
        """The stored result, or ``ReplyStore.MISSING``."""
        entry = self.replies.get(request_id)
        return _MISSING if entry is None else entry[1]

    MISSING = _MISSING

    def record(self, request_id: str, result: Any, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.replies[request_id] = (now, result)
        self.order[f"{int(now * 1e6):020d} {request_id}"] = request_id
        self.count.change(1)
        if self.count() > self.keep + max(100, self.keep // 100):
            self.prune(now)

    def prune(self, now: float | None = None) -> int:
        """Drop records beyond ``keep`` or older than ``max_age``; answers how many."""
        now = time.time() if now is None else now
        horizon = f"{int((now - self.max_age) * 1e6):020d}"
        excess = self.count() - self.keep
        dropped = 0
        for key in list(self.order.keys()):
            if excess <= 0 and key >= horizon:
                break
            rid = self.order.pop(key)
            if self.replies.pop(rid, None) is not None:
                self.count.change(-1)
            excess -= 1
            dropped += 1
        return dropped
