"""The kernel's own transactions: work on the image that is not a client's message.

``OwnTransactions`` is a base of ``uvm.kernel.Kernel``: ``read`` (a transaction that is
always aborted, for work that must see the image but never change it), ``write`` (one
committed transaction, conflicts retried), and what is built on them: ``quarantine``,
``release`` and ``quarantined`` (``uvm.quarantine``); ``_tries`` for ``Kernel.maintain``. Each begins with a round trip to the ZEO server
(``uvm.image.catch_up``), so it sees every commit that returned before it began; none
is on a message's hot path.

Boundary: the subclass provides ``db``, ``retries``, ``backoff``, ``author`` and
``mind``. Threading: as ``Kernel.send``, each call has its own transaction manager and
connection; call from any thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ZODB.POSException import ConflictError

from . import quarantine as _quarantine
from .attempts import Manager, pause
from .errors import RetriesExhausted
from .image import catch_up
from .registry import Cycle, Registry, using_cycle

__all__ = ["OwnTransactions"]


class OwnTransactions:
    """``read``, ``write`` and the kernel's quarantine (module docstring)."""

    db: Any
    retries: int
    backoff: float
    author: str
    mind: Any

    def quarantine(self, target: Any, selector: str, reason: str = "", request_id: str = "",
                   *, by: str = "supervisor") -> dict[str, Any]:
        """Quarantine the method ``selector`` reaches from ``target`` (``uvm.quarantine``),
        in a transaction of its own; idempotent. Answers the record."""
        return self.write(
            lambda cycle: _quarantine.quarantine(cycle, target, selector, reason=reason,
                                                 request=request_id, by=by),
            author=by, note=f"quarantine {target} {selector}")

    def release(self, target: Any, selector: str, *, by: str, reason: str = "") -> dict[str, Any]:
        """A person lifts a quarantine; answers the record lifted (``BadArguments`` if none)."""
        return self.write(
            lambda cycle: _quarantine.release(cycle, target, selector, by=by, reason=reason),
            author=by, note=f"release quarantine {target} {selector}")

    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantined methods, oldest first (for Ready, Heartbeat and status)."""
        return self.read(lambda cycle: _quarantine.listing(cycle.connection.root()))

    def read(self, fn: Any, *, author: str | None = None) -> Any:
        """Run ``fn(cycle)`` in a transaction that is always aborted; answers what it answers.

        For work that must see the image but never change it (the mind's prompt).
        """
        catch_up(self.db, None)
        tm = Manager()
        tm.begin()
        conn = self.db.open(transaction_manager=tm)
        try:
            cycle = Cycle(conn, Registry(conn.root()), author or self.author, mind=self.mind)
            with using_cycle(cycle):
                return fn(cycle)
        finally:
            tm.abort()
            conn.close()

    def _tries(self, tm: Manager) -> Iterator[tuple[Any, Any]]:
        """``tm.attempts`` for the kernel's own transactions (``write``, ``maintain``):
        each try after the first waits ``pause``; each catches up with the server and
        gets a connection, closed after."""
        for number, attempt in enumerate(tm.attempts(self.retries + 1)):
            if number:
                time.sleep(pause(self.backoff, number - 1))
            catch_up(self.db, None)
            conn = self.db.open(transaction_manager=tm)
            try:
                yield attempt, conn
            finally:
                conn.close()

    def write(self, fn: Any, *, author: str | None = None, note: str = "") -> Any:
        """Run ``fn(cycle)`` in a transaction of its own and commit it, retrying conflicts."""
        tm = Manager()
        who = author or self.author
        result = None
        try:
            for attempt, conn in self._tries(tm):
                with attempt as txn:
                    cycle = Cycle(conn, Registry(conn.root()), who, mind=self.mind)
                    with using_cycle(cycle):
                        result = fn(cycle)
                    txn.setUser(who)
                    txn.note(note[:200])
        except ConflictError:
            raise RetriesExhausted(f"{note or 'a write'} kept conflicting") from None
        return result
