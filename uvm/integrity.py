"""Kernel integrity: a message commits only what its own code changed, in its own thread.

A method can keep a reference to a persistent object past its message (in
some state that outlives it) and change it later, from another message's
thread or after its own message ended. ZODB would then register the change
with whatever transaction that object's connection is in: an unrelated
message would commit it, or the change would sit in the connection's cache
and be read, and later committed, as if it were the image's state.

Two defences, both installed by the kernel:

* ``OwnedConnection`` (the database's connection class once ``guard(db)``
  ran): a connection belongs to the thread that opened it, while it is
  open. A change to one of its objects from any other thread, while it is
  closed, or while it is *idle* (held by its thread between two messages:
  ``idle``), is refused with ``ForeignChange`` in the changing thread, and the
  object is turned back into a ghost so the refused change is not left in
  memory either (it reloads the stored state on next use).
* ``discard_pending(conn, tm)`` at the start of every message: a connection
  that already carries changes (registered or added objects) is aborted and
  the changes logged, never committed with the message.

Threads: both run on the thread of the message; nothing here starts threads.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ZODB.Connection import Connection

from .errors import ForeignChange

__all__ = ["OwnedConnection", "discard_pending", "guard", "idle"]

log = logging.getLogger("batos.integrity")


class OwnedConnection(Connection):
    """A ZODB connection that only its opening thread may change objects through.

    Used as a mixin: ``guard`` puts it in front of whatever connection class the
    database uses (the image's own, ``uvm.pickles.ImageConnection``).
    """

    _batos_owner: int | None = None
    #: held open by its thread between messages: no change is taken
    _batos_idle = False

    def open(self, transaction_manager: Any = None, delegate: bool = True) -> None:
        super().open(transaction_manager, delegate)
        self._batos_owner = threading.get_ident()
        self._batos_idle = False

    def close(self, primary: bool = True) -> None:
        super().close(primary)
        self._batos_owner = None

    def register(self, obj: Any) -> None:
        owner = self._batos_owner
        if self.opened is None or self._batos_idle or (
                owner is not None and owner != threading.get_ident()):
            # The change is refused; the object goes back to a ghost so the refused
            # change is not left in memory for a later message to read or commit.
            # (register is only asked while the object had no pending change.)
            oid = getattr(obj, "_p_oid", None)
            try:
                obj._p_invalidate()
            except Exception:  # noqa: S110 - refusing is what matters
                pass
            raise ForeignChange(
                f"object {oid.hex() if isinstance(oid, bytes) else oid} belongs to another "
                "message: a method can change only objects its own message reached; the "
                "change was discarded"
            )
        super().register(obj)


def idle(conn: Any, idle: bool) -> None:
    """Mark ``conn`` idle (between two messages of the thread holding it: every change
    refused) or in use again."""
    conn._batos_idle = idle


_owned: dict[type, type] = {}
_owned_lock = threading.Lock()


def guard(db: Any) -> None:
    """Make ``db`` hand out owned connections, including the ones already pooled."""
    base = db.klass
    if issubclass(base, OwnedConnection):
        return
    with _owned_lock:
        klass = _owned.get(base)
        if klass is None:
            klass = _owned[base] = type(f"Owned{base.__name__}", (OwnedConnection, base), {})
    db.klass = klass
    for pool in (db.pool, db.historical_pool):
        for conn in list(getattr(pool, "all", ())):
            if type(conn) is base:
                conn.__class__ = klass
                if conn.opened is not None:  # open before the guard: unchecked until reopened
                    conn._batos_owner = None


def discard_pending(conn: Any, tm: Any) -> bool:
    """Abort changes ``conn`` carries at the start of a message; True if there were any.

    ``tm`` is the message's (explicit) transaction manager, in a transaction;
    after this it is in a fresh one.
    """
    registered = getattr(conn, "_registered_objects", None)
    added = getattr(conn, "_added", None)
    if not registered and not added:
        return False
    oids = [getattr(o, "_p_oid", None) for o in list(registered or ())]
    log.warning("a connection carried %d changed and %d added object(s) from outside any "
                "message (oids %s); discarded", len(oids), len(added or ()),
                ", ".join(o.hex() for o in oids[:8] if isinstance(o, bytes)))
    if conn._needs_to_join:
        tm.get().join(conn)
    tm.abort()
    tm.begin()
    return True
