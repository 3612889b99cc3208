"""The message kernel: one message, one ACID transaction.

``Kernel.send(target, selector, args)`` is the seed's transactional cycle:

1. open a connection from the database's pool with this call's own
   transaction manager (so a connection is never shared between threads);
2. resolve the target by uuid or registered name;
3. look the selector's slot up through delegation; a method runs with the
   receiver and the arguments, a data slot answers its value; when no slot
   answers, ``doesNotUnderstand:`` is sent to the target with the message
   ``{"selector", "arguments"}``, inside the same transaction. When that
   handler asks for synthesis (``NeedsSynthesis``), the transaction is
   aborted, the mind (``uvm.synthesis``) is asked outside any transaction
   (once per receiver and selector at a time), and the message runs again in
   a new transaction that first installs the approved proposal;
4. turn the result into plain data (``uvm.values``);
5. commit. Any exception aborts, so nothing of a failed message remains.
   Whatever method code raises, ``BaseException`` included (``SystemExit``,
   ``KeyboardInterrupt``, ``GeneratorExit``), is the method failing
   (``MethodFailed``); only the kernel's own signals (``NeedsSynthesis``,
   ``uvm.budget.OverBudget``) pass.
   A ``ConflictError`` (another message committed a change to the same
   object first) aborts and retries with jittered exponential backoff, up to
   ``retries`` times, then raises ``RetriesExhausted``. The tries are the
   ``transaction`` package's ``attempts()`` (``uvm.attempts``: only write
   conflicts are retried there). With a request id, an outage of the ZEO
   server is waited out for up to ``outage_wait`` seconds: the reply record
   makes running the message again safe.

A message that changes nothing is aborted instead of committed: it wrote
nothing, so there is nothing to make durable, and read-only messages cost no
disk I/O and no commit machinery.

Budgets (``uvm.budget``): steps 2-4 run in a budget scope (``limits``: CPU and
wall seconds; memory through the process's rlimit). Over it, the message is
interrupted and answers ``BudgetExceeded``; the commit itself is never
interrupted. A result larger than ``max_reply_bytes`` answers
``ReplyTooLarge``, an error message is cut to ``MAX_ERROR_CHARS``; both abort.
A quarantined method (``uvm.quarantine``) answers ``Quarantined`` and runs
nothing.

Integrity (``uvm.integrity``): the kernel's database hands out connections
that only their own thread may change objects through; a connection that
carries changes when a message starts has them discarded, never committed
with that message; a ``begin`` that fails drops the thread's transaction
manager, so the next message starts clean.

Freshness (``uvm.image.catch_up``): before its first try a message catches up
to ``after``, the newest transaction id its sender has seen (None: a round trip
to the ZEO server, as ``server_sync`` does); a try after a conflict always makes
the round trip. ``seen()`` answers the newest transaction id the storage had
heard of when this thread's last message ended: an upper bound of what it saw
or made, for its sender to pass on as a later message's ``after``. The kernel's
own transactions (``read``, ``write``, ``maintain``) always make the round trip.

Threading: ``send`` is synchronous and may be called from any number of
threads at once; each thread has its own transaction manager and connection,
both held across its messages (``uvm.integrity.idle`` refuses any change through
the connection between them). An incarnation calls it on its lane threads
(``uvm.lanes``); ``shard`` names the reply record's shard the caller writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ZODB.POSException import ConflictError

from . import primitives as _primitives  # noqa: F401 - installs method globals
from .attempts import Manager, pause, storage_error
from .budget import MAX_REPLY_BYTES, Limits
from .dispatch import DNU, dispatch, run_message
from .errors import (
    MAX_ERROR_CHARS,
    BadArguments,
    NeedsSynthesis,
    NoMind,
    RetriesExhausted,
    StorageUnavailable,
    SynthesisFailed,
    UVMError,
    cap_message,
)
from .flights import Flights
from .image import catch_up, last_tid
from .integrity import discard_pending, guard, idle
from .own_transactions import OwnTransactions
from .registry import Cycle, Registry, using_cycle
from .replies import ReplyStore
from .values import from_plain

__all__ = ["DNU", "Kernel", "dispatch", "run_message"]

log = logging.getLogger("batos.kernel")

_AGAIN = object()

def _reply_store(root: Any, shard: str | None) -> ReplyStore:
    return ReplyStore(root) if shard is None else ReplyStore(root, shard=shard)


def _changed(conn: Any) -> bool:
    # ZODB has no public "did this transaction modify anything" query; the
    # connection's registration list is what its commit itself consults.
    return bool(getattr(conn, "_registered_objects", True)) or bool(getattr(conn, "_added", False))


class Kernel(OwnTransactions):
    """Runs messages against one database, each in its own transaction."""

    def __init__(
        self,
        db: Any,
        *,
        retries: int = 20,
        backoff: float = 0.002,
        author: str = "architect",
        mind: Any = None,
        limits: Limits | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        guard(db)
        self.db = db
        #: each message's budget (``uvm.budget``)
        self.limits = limits or Limits()
        self.max_reply_bytes = max_reply_bytes
        #: ``uvm.synthesis.Synthesizer`` or None; doesNotUnderstand: asks it for what is missing
        self.mind = mind
        self._flights = Flights()
        #: a conflicting transaction is tried again this many times (``retries + 1`` tries)
        self.retries = retries
        #: the first pause after a conflict (seconds; doubling, ``uvm.attempts.pause``)
        self.backoff = backoff
        self.author = author
        self._local = threading.local()
        #: with a request id, how long to keep retrying while the ZEO server is away
        self.outage_wait = 10.0

    def send(
        self,
        target: Any,
        selector: str,
        args: Sequence[Any] = (),
        *,
        author: str | None = None,
        request_id: str | None = None,
        after: bytes | None = None,
        shard: str | None = None,
    ) -> Any:
        """Run one message; returns its plain result or raises a ``UVMError``.

        With a ``request_id`` the message runs at most once: if a message with
        that id already committed, its recorded result is returned instead
        (see ``uvm.replies``; its record goes to ``shard``). ``after``: see
        the module docstring (freshness).
        """
        if not isinstance(args, list | tuple):
            raise BadArguments(f"arguments must be a list, got {type(args).__name__}")
        who = author or self.author
        try:
            return self._send(target, selector, args, who, request_id, after, shard)
        except UVMError as exc:
            text = str(exc)
            if len(text) > MAX_ERROR_CHARS:
                exc.args = (cap_message(text),)
            raise
        finally:
            self._local.seen = last_tid(self.db)

    def seen(self) -> bytes | None:
        """The newest transaction id the storage had heard of when this thread's last
        ``send`` ended (None: none yet, or a storage without transaction ids)."""
        return getattr(self._local, "seen", None)

    def _send(self, target: Any, selector: str, args: Sequence[Any], who: str,
              request_id: str | None, after: bytes | None, shard: str | None) -> Any:
        for _round in range(3):
            try:
                return self._retrying(target, selector, args, who, request_id, after=after,
                                      shard=shard)
            except NeedsSynthesis as need:
                result = self._synthesized(need, target, selector, args, who, request_id,
                                           shard)
            if result is not _AGAIN:
                return result
        raise SynthesisFailed(
            f"{selector!r} to {target!r} was synthesized but is still not understood; "
            "its method may have been removed meanwhile: send it again"
        )

    def _retrying(self, target: Any, selector: str, args: Sequence[Any], who: str,
                  request_id: str | None, install: Any = None, *, after: bytes | None = None,
                  shard: str | None = None) -> Any:
        """The message in ``retries + 1`` attempts of this thread's transaction manager: a
        conflict pauses (jittered) and tries again; the last one raises RetriesExhausted.
        With a request id, an outage of the ZEO server is waited out, attempts anew (if a
        try committed before it, the reply record answers). The first try catches up to
        ``after``, every later one with a round trip (None)."""
        outage_deadline = time.monotonic() + self.outage_wait
        while True:
            tm = getattr(self._local, "tm", None)
            if tm is None:  # one per thread, reused: it always ends committed or aborted
                tm = self._local.tm = Manager()
            result = None
            try:
                for number, attempt in enumerate(tm.attempts(self.retries + 1)):
                    if number:
                        delay = pause(self.backoff, number - 1, jitter=True)
                        log.debug("conflict on %s %s, retry %d in %.4fs",
                                  target, selector, number, delay)
                        time.sleep(delay)
                    result = self._once(tm, attempt, target, selector, args, who, request_id,
                                        install, None if number else after, shard)
                return result
            except StorageUnavailable:
                if request_id is None or time.monotonic() > outage_deadline:
                    raise
                after = None
                time.sleep(0.1)
            except ConflictError as exc:
                raise RetriesExhausted(
                    f"{selector!r} to {target!r} conflicted with other messages "
                    f"{self.retries + 1} times; nothing was committed, send it again"
                ) from exc
            finally:
                if tm.spoiled:  # the thread starts over with a fresh manager
                    self._local.tm = None

    def maintain(self, *, keep: int = 100_000, max_age: float = 7 * 86400) -> int:
        """Prune the exactly-once reply record, in a transaction of its own; answers how
        many. Conflicting on every try, it prunes nothing this time and answers 0."""
        tm = Manager()
        dropped = 0
        try:
            for attempt, conn in self._tries(tm):
                with attempt as txn:
                    root = conn.root()
                    if not ReplyStore.exists(root):
                        tm.skip_commit()
                        return 0
                    dropped = ReplyStore(root, keep=keep, max_age=max_age).prune()
                    txn.note("prune reply record")
        except ConflictError:
            return 0
        return dropped

    def _synthesized(self, need: NeedsSynthesis, target: Any, selector: str,
                     args: Sequence[Any], who: str, request_id: str | None,
                     shard: str | None) -> Any:
        """Ask the mind for what ``need`` names (once per receiver and selector at a time,
        ``uvm.flights``), then run the message again with the approved proposal installed,
        in one transaction. Answers the message's result, or ``_AGAIN`` when another
        thread synthesized it and the message should simply be sent again."""
        if self.mind is None:  # the primitive raises NoMind itself; belt and braces
            raise NoMind(f"{selector!r} is not understood and no mind is configured",
                         selector=selector, receiver=need.receiver)
        key = (need.receiver, need.selector)
        flight, leader = self._flights.board(key)
        if not leader:
            self._flights.wait(flight, self.mind.deadline, need.selector)
            return _AGAIN
        error: UVMError | None = None
        try:
            plan = self.mind.plan(self, need, author=who)
            try:
                return self._retrying(target, selector, args, who, request_id, plan,
                                      shard=shard)
            except NeedsSynthesis:
                exc = SynthesisFailed(
                    f"the approved proposal did not make the receiver understand {selector!r}; "
                    "nothing was installed", reasons=["still not understood after installing"],
                )
                self.mind.failed(self, plan, exc)
                raise exc from None
            except UVMError as exc:
                self.mind.failed(self, plan, exc)
                raise
        except UVMError as exc:
            error = exc
            raise
        finally:
            self._flights.land(key, flight, error)

    def _once(self, tm: Manager, attempt: Any, target: Any, selector: str, args: Sequence[Any],
              author: str, request_id: str | None, install: Any, after: bytes | None,
              shard: str | None) -> Any:
        """One try of the message, in ``attempt`` of ``tm``: it begins the transaction,
        catches up to ``after`` (before the connection takes its snapshot) and commits at
        the end (a read-only message, or one whose reply is recorded, skips the commit:
        aborted). Storage failures become the kernel's errors."""
        stage, conn, result = "begin", None, None
        try:
            # before the snapshot: a held connection takes it when the attempt begins
            catch_up(self.db, after)
            with attempt:
                stage = "open"
                conn = self._connection(tm)
                idle(conn, False)
                stage = "run"
                discard_pending(conn, tm)
                root = conn.root()
                replies = None
                if request_id is not None and ReplyStore.exists(root):
                    replies = _reply_store(root, shard)
                    stored = replies.get(request_id)
                    if stored is not ReplyStore.MISSING:
                        tm.skip_commit()
                        return stored
                cycle = Cycle(conn, Registry(root), author, mind=self.mind)
                with using_cycle(cycle):
                    receiver = cycle.registry.resolve(target)
                    if install is not None:
                        install.install(cycle, receiver)
                    result = run_message(receiver, selector, from_plain(args, cycle.registry),
                                         limits=self.limits, request_id=request_id,
                                         max_reply_bytes=self.max_reply_bytes)
                    if install is not None:
                        install.installed(cycle, result)
                if not _changed(conn):
                    tm.skip_commit()  # read-only: nothing to write, no commit machinery
                    return result
                if request_id is not None:
                    if replies is None:  # (not `or`: a BTree's truth value counts its buckets)
                        replies = _reply_store(root, shard)
                    replies.record(request_id, result)
                txn = tm.get()  # (discard_pending may have begun a fresh one)
                txn.setUser(author)
                txn.note(f"{target} {selector}"[:200])
            return result  # committed, or a conflict the next attempt retries
        except BaseException as exc:
            if stage == "begin":
                # begin() may fail half-way (a synchronizer's ClientDisconnected) with its
                # transaction already set: this manager would answer AlreadyInTransaction
                # forever, so the thread gets a fresh one next time.
                tm.spoiled = True
            elif stage == "run" and isinstance(exc, ConflictError):
                raise
            error = storage_error(exc, stage, selector)
            if error is None:
                raise
            raise error from exc
        finally:
            if conn is not None:
                idle(conn, True)  # until its next message, nothing changes through it
                if tm.spoiled or not conn._needs_to_join:
                    self._drop_connection(tm, selector)

    def _connection(self, tm: Manager) -> Any:
        """This thread's connection, held across its messages with its transaction manager
        (opening and closing one per message cost about a third of a read); a new manager
        gets a new connection. A held connection syncs when the manager begins."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.transaction_manager is tm and conn.opened is not None:
            return conn
        if conn is not None:  # the previous manager's, spoiled: let it go
            self._drop_connection(tm, "a new transaction manager")
        conn = self._local.conn = self.db.open(transaction_manager=tm)
        return conn

    def _drop_connection(self, tm: Manager, selector: str) -> None:
        """Close this thread's connection (its manager was spoiled, or it is still joined
        after the attempt: an abort that failed); the next message opens another."""
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is None:
            return
        try:
            conn.close()
        except Exception:  # still joined (an abort that failed): never reuse its manager
            if conn.transaction_manager is tm:
                tm.spoiled = True
            log.exception("closing a connection after %r failed", selector)
