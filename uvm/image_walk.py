"""The walk over the image: every reachable object unpickled once, digested, methods compiled.

``Walk.run(conn)`` goes breadth-first from the root, children by oid. Per
oid: one raw record at the snapshot of the connection (``uvm.record_feed``:
one transaction id for the whole walk, whatever commits meanwhile; a record
missing at that snapshot is a broken reference), then the record is
unpickled for real with the connection's class factory (``uvm.record_reader``:
every class and global a record names must be one the image allows and must
import with this env's libraries; ZODB's quiet ``Broken`` stand-ins are
failures here), into a fresh instance through ``__setstate__``; references
resolve to the connection's ghosts, as in a normal load. A failure is noted
with oid and class and the walk goes on. The records are asked for up to
``_WINDOW`` ahead of the loads, so the storage streams while this thread
unpickles.

On the way: ``digest``, the sha256 of the graph's shape (per object its oid,
class and referenced oids, no data values: two incarnations of one unchanged
image agree), and every method in a slot checked: compiled under this
process's allowlist (``problems``), listed if it imports a removed module
(``stale``) or a module no env gives (``unavailable``). A source text is
checked once per walk (clones copy their prototype's methods: the verdict is
the same text's), every method holding it listed under its own object.
``Failures`` is the capped list of failure lines validation reports.

Speed (issue 14: >= 50,000 objects/s on a 20k-object image through the storage
the incarnations use). The walk reads through the database it is given (the
incarnation's ZEO client), never the file behind the server. Measured with
bench/bench_walk.py (20,271 records: 3,333 clones with a method and nested
containers; each case in a fresh process, a cold ZEO client; 2 cores shared with
other work, load 2.3; best / median of 5 runs):

    walk through ZEO (uvm.record_feed's ZEO feed)             57,100 / 49,100 /s
    the same walk through ZODB's prefetch path (ZEO's
      ClientStorage.prefetch: an asyncio task per oid)       26,100 / 22,100 /s
    baseline: the same records through the same feed,
      references by referencesf, nothing unpickled          68,600 / 61,100 /s
    walk of the file read-only (what uvm.control did)        71,600 / 69,500 /s

Per record: ~9 us of unpickling in this thread and ~6 us in ZEO's I/O thread
(15.3 us for the client process; ZEO's prefetch path took ~31 us), ~10.4 us in
the ZEO server (its protocol has no batched load: one request and one reply a
record is the floor). At load 3 the same run gave 46,800 / 35,300: the walk and
ZEO's I/O thread share one interpreter while the server needs the other core.
On main before this (a compile per method, ZEO's prefetch) the same image
walked at 3,800-7,100/s through ZEO and 9,100-17,100/s from the file; an image
of clones of genesis (a 14.7 KB method each) spent two thirds of its walk
compiling the same text again.

Boundary: synchronous, in the calling thread, on one connection
(``walk_image`` opens and aborts it); nothing it unpickles enters the connection cache, so
nothing the walk does can be committed. Over ZEO it first catches up with the
server (``uvm.image.catch_up``: a client without ``server_sync``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import transaction
from persistent.list import PersistentList
from ZODB.serialize import referencesf
from ZODB.utils import oid_repr, z64

from .env_imports import unavailable
from .image import catch_up
from .methods import Method, compile_method, imports_of
from .obj import UvmObject
from .pickles import ForbiddenClass
from .record_feed import feed_for
from .record_reader import Reader, Unimportable

__all__ = ["MAX_FAILURES", "Failures", "Walk", "walk_image"]

MAX_FAILURES = 100
_WINDOW = 2048  # ZEO: records asked for ahead of the loads (a few MB of client cache)


class Failures(list[str]):
    """A capped list of failure lines that still counts what it left out."""

    def __init__(self) -> None:
        super().__init__()
        self.left_out = 0

    def add(self, line: str) -> None:
        if len(self) < MAX_FAILURES:
            self.append(line)
        else:
            self.left_out += 1

    def lines(self) -> list[str]:
        more = [f"... and {self.left_out} more failures"] if self.left_out else []
        return list(self) + more


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Walk:
    """One breadth-first pass over every object reachable from the root.

    Per oid: one load of the raw record at the connection's snapshot, then the
    record is unpickled for real (class, then state into a fresh instance with
    ``__setstate__``) by a reader that also collects the references. The fresh
    instance is not put in the connection's cache, so the cache stays small and
    nothing the walk does can be committed.

    Methods are checked on the way: an object's slots name its methods' owners,
    a method names its versions list, and the list holds the current source,
    which is compiled (or, if it imports a removed module, listed as stale).
    Breadth-first order meets owner, method and list in that order.
    """

    def __init__(self, removed: frozenset[str], failures: Failures, deadline: float) -> None:
        self.removed = removed
        self.failures = failures
        self.deadline = deadline
        self.count = 0
        self.methods = 0
        self.complete = False
        self.digest = hashlib.sha256()
        self.problems = Failures()  # methods that do not compile
        self.stale: list[dict[str, Any]] = []  # methods importing removed modules
        self.unavailable: list[dict[str, Any]] = []  # ... importing modules no env gives
        self._owners: dict[bytes, tuple[str, str]] = {}  # method oid -> (uuid, slot)
        self._histories: dict[bytes, bytes] = {}  # versions list oid -> method oid
        self._names: dict[type, bytes] = {}
        self._verdicts: dict[str, tuple[str, Any]] = {}  # method source -> what it is
        self.feed = ""  # which uvm.record_feed read the records

    def run(self, conn: Any) -> None:
        # Raw records at the connection's snapshot (uvm.record_feed: one transaction id
        # for the whole walk, whatever commits meanwhile), asked for up to _WINDOW ahead
        # of the loads so the storage streams while this thread unpickles.
        feed = feed_for(conn)
        self.feed = feed.kind
        take = feed.take
        reader = Reader(conn)
        seen = {z64}
        order = [z64]  # breadth-first: every oid found, in the order it is loaded
        asked = 0
        position = 0
        while position < len(order):
            if asked - position < _WINDOW // 2 and asked < len(order):
                upto = min(len(order), position + _WINDOW)
                feed.ask(order[asked:upto])
                asked = upto
                if time.perf_counter() > self.deadline:
                    self.failures.add(f"validation reached its time limit after {self.count} "
                                      f"objects ({len(order) - position} queued): the record "
                                      "is incomplete")
                    return
            oid = order[position]
            position += 1
            data = take(oid)
            if data is None:
                self.failures.add(
                    f"object {oid_repr(oid)} is referenced but missing from the storage")
                continue
            self.count += 1
            for ref in self._unpickle(reader, oid, data):
                if ref not in seen:
                    seen.add(ref)
                    order.append(ref)
        self.complete = True

    def _unpickle(self, reader: Reader, oid: bytes, data: bytes) -> list[bytes]:
        reader.refs = []
        reader.obj = None
        try:
            obj = reader.load_record(data)
            refs = sorted(set(reader.refs))
        except Exception as exc:
            obj = None
            self._fail(oid, reader.obj, exc)
            try:
                refs = sorted(set(referencesf(data)))  # still walk on through it
            except Exception:
                refs = []
        cls = type(obj)
        name = self._names.get(cls)
        if name is None:
            name = self._names[cls] = _class_name(cls).encode() if obj is not None else b"?"
        # oid (8 bytes), class name, then a counted list of 8-byte oids: unambiguous
        self.digest.update(b"%s%d:%s%d:%s" % (oid, len(name), name, len(refs), b"".join(refs)))
        if obj is not None:
            self._note_methods(oid, obj)
        return refs

    def _fail(self, oid: bytes, obj: Any, exc: Exception) -> None:
        cls = _class_name(type(obj)) if obj is not None else str(exc)
        forbidden = exc if isinstance(exc, ForbiddenClass) else None
        if forbidden is None and isinstance(exc.__cause__, ForbiddenClass):
            forbidden = exc.__cause__
        if forbidden is not None:
            why = (f"it names {forbidden.module}.{forbidden.name}, which is not a class the "
                   "image allows (uvm.pickles.ALLOWED); nothing of it was run")
            if obj is None:  # the record's own class is the forbidden global
                cls = f"{forbidden.module}.{forbidden.name}"
        elif isinstance(exc, Unimportable) and obj is None:
            why = "its class cannot be imported with this env's libraries"
        elif isinstance(exc, Unimportable):
            why = f"it refers to {exc}, which cannot be imported with this env's libraries"
        else:
            why = f"{type(exc).__name__}: {exc}"
        self.failures.add(f"object {oid_repr(oid)} of class {cls} does not unpickle: {why}")

    def _note_methods(self, oid: bytes, obj: Any) -> None:
        if isinstance(obj, UvmObject):
            for slot, value in obj._slots.items():
                if isinstance(value, Method):
                    self._owners[value._p_oid] = (obj._uuid, slot)
        elif isinstance(obj, Method) and oid in self._owners:
            # only methods in a slot: the ones kept after their slot was removed
            # (uvm.protection's dropped methods) are history, not code that runs
            versions = getattr(obj, "versions", None)  # a ghost: reading its oid loads nothing
            if isinstance(versions, PersistentList) and versions._p_oid is not None:
                self._histories[versions._p_oid] = oid
        elif oid in self._histories and isinstance(obj, PersistentList) and obj.data:
            self._check_method(self._histories.pop(oid), obj.data[-1].get("source", ""))

    def _check_method(self, method_oid: bytes, source: str) -> None:
        self.methods += 1
        uuid, slot = self._owners.pop(method_oid, ("?", oid_repr(method_oid)))
        if type(source) is not str:
            verdict = self._verdict(source)
        else:  # clones share their prototype's sources: one check per text
            verdict = self._verdicts.get(source)
            if verdict is None:
                verdict = self._verdicts[source] = self._verdict(source)
        kind, detail = verdict
        if kind == "stale":
            self.stale.append({"object": uuid, "slot": slot, "modules": list(detail)})
        elif kind == "unavailable":  # broken before this handover (an earlier forced removal)
            self.unavailable.append({"object": uuid, "slot": slot, "modules": list(detail)})
        elif kind == "problem":
            self.problems.add(f"method {slot!r} of object {uuid} does not compile: {detail}")

    def _verdict(self, source: Any) -> tuple[str, Any]:
        """What checking ``source`` finds, the same for every method holding that text
        (the allowlist and the removed modules are fixed for the walk)."""
        if self.removed and any(module in source for module in self.removed):
            hits = imports_of(source) & self.removed
            if hits:
                return "stale", sorted(hits)
        try:
            compile_method(source)
        except Exception as exc:
            missing = unavailable(source)
            return ("unavailable", missing) if missing else ("problem", str(exc))
        return "ok", None


def walk_image(db: Any, walk: Walk) -> None:
    """Run ``walk`` over the image in ``db`` on a connection of its own, always aborted."""
    catch_up(db, None)  # a ZEO client without server_sync: the newest commit first
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        walk.run(conn)
    finally:
        tm.abort()
        conn.cacheMinimize()
        conn.close()
