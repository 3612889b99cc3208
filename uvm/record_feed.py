"""Raw records at one snapshot, asked for ahead of their use: what the validation walk reads.

``feed_for(conn)`` answers a feed on the connection's storage at the snapshot
of its current transaction (``MVCCAdapterInstance._start``: every record is
the one ``loadBefore(oid, start)`` answers, so the whole walk sees one
transaction id, whatever commits meanwhile). ``ask(oids)`` says which records
come next, in order; ``take(oid)`` hands one over (``None``: the oid has no
record at the snapshot, e.g. a broken reference).

Two feeds:

* ``ZEOFeed``, for a ZEO ``ClientStorage``: each asked oid is one
  ``loadBefore(oid, start)`` call written straight onto the client's own
  connection in its I/O thread (the ZEO 6 client's ``Protocol.call_sync`` with a
  reply slot of ours in its ``futures``), the answers kept here until taken.
  The server streams while the walk unpickles. ZEO's public
  ``ClientStorage.prefetch`` does the same per oid with an asyncio task, a
  gather and a client-cache write (bench/bench_walk.py: reading the image's
  records took ~31 us of client CPU a record through it, ~11 us through this
  feed), and fills the 20 MB client cache with the whole image, evicting what
  the incarnation serves from. A lost connection fails the
  outstanding records (ZEO's ``ClientDisconnected``), and a server silent past the
  timeout fails the one waited for: ``take`` raises ``StorageUnavailable``.
* ``StorageFeed``, for any other storage (FileStorage, MappingStorage,
  RelStorage): ``Connection.prefetch`` (a no-op where the storage has none)
  and the connection's own MVCC load.

``feed_for`` takes the ZEO feed only when the installed client has the shape
it uses (checked, not assumed; tests/integration/test_walk_speed.py pins it),
else the storage feed.

Boundary: reads only; the walk's thread calls ``ask``/``take``; the ZEO feed's
replies arrive on ZEO's I/O thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from ZODB.POSException import POSKeyError, ReadConflictError

from .errors import StorageUnavailable

__all__ = ["StorageFeed", "ZEOFeed", "feed_for"]

_PENDING = object()


class StorageFeed:
    """Records through the connection's own MVCC load, prefetched where the storage can."""

    kind = "storage"

    def __init__(self, conn: Any) -> None:
        self._prefetch = conn.prefetch
        self._load = conn._storage.load  # loadBefore(oid, the transaction's start)

    def ask(self, oids: Sequence[bytes]) -> None:
        self._prefetch(oids)

    def take(self, oid: bytes) -> bytes | None:
        try:
            return self._load(oid)[0]
        except (POSKeyError, ReadConflictError):  # none at all; none at or before the snapshot
            return None


class _Reply:
    """What ZEO's protocol keeps per call in ``futures`` and answers on its I/O thread:
    ``set_result``/``set_exception`` (a reply), ``done`` (asked before a disconnect
    fails it)."""

    __slots__ = ("feed", "oid")

    def __init__(self, feed: ZEOFeed, oid: bytes) -> None:
        self.feed = feed
        self.oid = oid

    def done(self) -> bool:
        return False

    def set_result(self, result: Any) -> None:
        self.feed._put(self.oid, result)

    def set_exception(self, exc: BaseException) -> None:
        self.feed._put(self.oid, exc)


class ZEOFeed:
    """Pipelined ``loadBefore`` calls on a ZEO client's own connection (module docstring)."""

    kind = "zeo"

    def __init__(self, storage: Any, start: bytes, timeout: float = 60.0) -> None:
        runner = storage._server  # ZEO.asyncio.client.ClientThread
        self._loop = runner.loop
        self._io = runner.client  # ZEO.asyncio.client.ClientIO: .protocol, .operational
        self._start = start
        self._timeout = timeout
        self._results: dict[bytes, Any] = {}
        self._cond = threading.Condition()
        self._awaited: bytes | None = None

    @staticmethod
    def usable(storage: Any) -> bool:
        """Whether ``storage`` is a ZEO client of the shape this feed drives."""
        runner = getattr(storage, "_server", None)
        io = getattr(runner, "client", None)
        protocol = getattr(io, "protocol", None)
        return (type(storage).__module__ == "ZEO.ClientStorage"
                and callable(getattr(getattr(runner, "loop", None), "call_soon_threadsafe", None))
                and isinstance(getattr(io, "operational", None), bool)
                and callable(getattr(protocol, "call_sync", None))
                and isinstance(getattr(protocol, "futures", None), dict))

    def ask(self, oids: Sequence[bytes]) -> None:
        self._loop.call_soon_threadsafe(self._send, tuple(oids))

    def _send(self, oids: tuple[bytes, ...]) -> None:  # on ZEO's I/O thread
        from ZEO.Exceptions import ClientDisconnected

        protocol = self._io.protocol if self._io is not None else None
        if protocol is None or not self._io.operational:
            for oid in oids:
                self._put(oid, ClientDisconnected("the ZEO connection is down"))
            return
        call, start = protocol.call_sync, self._start
        for oid in oids:
            try:
                call("loadBefore", (oid, start), None, _Reply(self, oid))
            except Exception as exc:  # closed meanwhile: ClientDisconnected
                self._put(oid, exc)

    def _put(self, oid: bytes, value: Any) -> None:  # on ZEO's I/O thread
        self._results[oid] = value
        if self._awaited == oid:  # read after the store: see _wait
            with self._cond:
                self._cond.notify()

    def take(self, oid: bytes) -> bytes | None:
        value = self._results.pop(oid, _PENDING)
        if value is _PENDING:
            value = self._wait(oid)
        if type(value) is tuple:  # (data, serial, next serial)
            return value[0]
        if value is None or isinstance(value, POSKeyError):
            return None  # no revision at or before the snapshot; no object at all
        raise StorageUnavailable(f"the image's records could not be read through ZEO: "
                                 f"{type(value).__name__}: {value}") from value

    def _wait(self, oid: bytes) -> Any:
        # The I/O thread stores, then reads _awaited; this thread sets _awaited, then
        # looks: one of the two sees the other, so a reply is never missed.
        deadline = time.monotonic() + self._timeout
        with self._cond:
            self._awaited = oid
            try:
                while oid not in self._results:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StorageUnavailable(f"the ZEO server did not answer a load "
                                                 f"within {self._timeout:.0f}s")
                    self._cond.wait(left)
            finally:
                self._awaited = None
        return self._results.pop(oid)


def feed_for(conn: Any) -> StorageFeed | ZEOFeed:
    """The feed for ``conn``'s storage at the snapshot of its current transaction."""
    mvcc = conn._storage  # ZODB.mvccadapter.MVCCAdapterInstance
    base = getattr(mvcc, "_storage", None)
    start = getattr(mvcc, "_start", None)
    if isinstance(start, bytes) and ZEOFeed.usable(base):
        return ZEOFeed(base, start)
    return StorageFeed(conn)
