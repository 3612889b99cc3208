"""The image's biography: every synthesis the mind attempted, kept in the image.

Each doesNotUnderstand: that reached the mind leaves one record under the
root key ``batos.synthesis`` (an ``OOBTree`` from record id to a
``PersistentMapping``, so a new record writes one small bucket entry and its
own pickle). A record holds what was asked (receiver, selector, arguments),
the prompt and its digest, every attempt (the mind's raw answer, the parsed
proposal, the crucible's verdict or the error), and the outcome:

* ``installed``: the proposal passed and is in the image, committed in the
  same transaction as the original message's effects and this record;
* ``rejected``: every attempt was rejected (the client got ``SynthesisFailed``);
* ``error``: the mind or the installation failed; ``error`` says how.

Ids sort by time (``<unix seconds, 6 decimals>-<8 hex>``). Records are never
changed after their transaction commits. ``export_records`` turns the
records and every method's version history into plain data for the Grand
Narrative dataset (``weaver.dataset``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import transaction
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .methods import Method
from .registry import OBJECTS_KEY, Registry

__all__ = ["SYNTHESIS_KEY", "SynthesisLog", "export_records", "new_record_id", "plain"]

SYNTHESIS_KEY = "batos.synthesis"


def new_record_id(now: float | None = None) -> str:
    return f"{(now or time.time()):.6f}-{uuid.uuid4().hex[:8]}"


def plain(value: Any, _depth: int = 0) -> Any:
    """A deep copy of ``value`` with persistent containers made plain (for reading out)."""
    if _depth > 32:
        return repr(value)
    if isinstance(value, dict | PersistentMapping):
        return {str(k): plain(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | PersistentList):
        return [plain(v, _depth + 1) for v in value]
    return value


class SynthesisLog:
    """The synthesis records of one image (``root[SYNTHESIS_KEY]``)."""

    def __init__(self, root: Any, *, create: bool = True) -> None:
        tree = root.get(SYNTHESIS_KEY)
        if tree is None and create:
            tree = root[SYNTHESIS_KEY] = OOBTree()
        self._tree = tree

    def add(self, record: dict[str, Any]) -> str:
        """Store ``record`` (plain data) under a new id; answers the id."""
        if self._tree is None:
            raise RuntimeError("the image has no synthesis log (opened with create=False)")
        rid = record.get("id") or new_record_id(record.get("timestamp"))
        stored = PersistentMapping(record)
        stored["id"] = rid
        self._tree[rid] = stored
        return rid

    def get(self, rid: str) -> PersistentMapping | None:
        return None if self._tree is None else self._tree.get(rid)

    def __len__(self) -> int:
        return 0 if self._tree is None else len(self._tree)

    def records(self, *, since: str | None = None) -> Iterator[PersistentMapping]:
        if self._tree is None:
            return iter(())
        return iter(self._tree.values(min=since) if since else self._tree.values())


def export_records(db: Any) -> dict[str, Any]:
    """Plain data for the dataset: every synthesis record and every method's history.

    Reads in a transaction that is always aborted; safe against a live image
    (a ZEO client or a read-only FileStorage).
    """
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        synthesis = [plain(r) for r in SynthesisLog(root, create=False).records()]
        methods: list[dict[str, Any]] = []
        objects = 0
        if OBJECTS_KEY in root:
            registry = Registry(root)
            for uuid_, obj in registry.objects.items():
                objects += 1
                names = registry.names_of(obj)
                for slot, value in sorted(obj._slots.items()):
                    if isinstance(value, Method):
                        methods.append({
                            "object": uuid_,
                            "object_name": names[0] if names else None,
                            "selector": slot,
                            "versions": value.history(),
                        })
        return {"synthesis": synthesis, "methods": plain(methods), "objects": objects}
    finally:
        tm.abort()
        conn.close()
