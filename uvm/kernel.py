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

Threading: ``send`` is synchronous and may be called from any number of
threads at once; each thread has its own transaction manager (reused), each
call its own connection.
The asyncio front (``uvm.front``) calls it from worker threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ZODB.POSException import ConflictError

from . import primitives as _primitives  # noqa: F401 - installs method globals
from . import quarantine as _quarantine
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
from .integrity import discard_pending, guard
from .registry import Cycle, Registry, using_cycle
from .replies import ReplyStore
from .values import from_plain

__all__ = ["DNU", "Kernel", "dispatch", "run_message"]

log = logging.getLogger("batos.kernel")

_AGAIN = object()

def _changed(conn: Any) -> bool:
    # ZODB has no public "did this transaction modify anything" query; the
    # connection's registration list is what its commit itself consults.
    return bool(getattr(conn, "_registered_objects", True)) or bool(getattr(conn, "_added", False))


class Kernel:
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
    ) -> Any:
        """Run one message; returns its plain result or raises a ``UVMError``.

        With a ``request_id`` the message runs at most once: if a message with
        that id already committed, its recorded result is returned instead
        (see ``uvm.replies``).
        """
        if not isinstance(args, list | tuple):
            raise BadArguments(f"arguments must be a list, got {type(args).__name__}")
        who = author or self.author
        try:
            return self._send(target, selector, args, who, request_id)
        except UVMError as exc:
            text = str(exc)
            if len(text) > MAX_ERROR_CHARS:
                exc.args = (cap_message(text),)
            raise

    def _send(self, target: Any, selector: str, args: Sequence[Any], who: str,
              request_id: str | None) -> Any:
        for _round in range(3):
            try:
                return self._retrying(target, selector, args, who, request_id)
            except NeedsSynthesis as need:
                result = self._synthesized(need, target, selector, args, who, request_id)
            if result is not _AGAIN:
                return result
        raise SynthesisFailed(
            f"{selector!r} to {target!r} was synthesized but is still not understood; "
            "its method may have been removed meanwhile: send it again"
        )

    def _retrying(self, target: Any, selector: str, args: Sequence[Any], who: str,
                  request_id: str | None, install: Any = None) -> Any:
        """The message in ``retries + 1`` attempts of this thread's transaction manager: a
        conflict pauses (jittered) and tries again; the last one raises RetriesExhausted.
        With a request id, an outage of the ZEO server is waited out, attempts anew (if a
        try committed before it, the reply record answers)."""
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
                                        install)
                return result
            except StorageUnavailable:
                if request_id is None or time.monotonic() > outage_deadline:
                    raise
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

    def _synthesized(self, need: NeedsSynthesis, target: Any, selector: str,
                     args: Sequence[Any], who: str, request_id: str | None) -> Any:
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
                return self._retrying(target, selector, args, who, request_id, plan)
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

    def read(self, fn: Any, *, author: str | None = None) -> Any:
        """Run ``fn(cycle)`` in a transaction that is always aborted; answers what it answers.

        For work that must see the image but never change it (the mind's prompt).
        """
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
        each try after the first waits ``pause``; each gets a connection, closed after."""
        for number, attempt in enumerate(tm.attempts(self.retries + 1)):
            if number:
                time.sleep(pause(self.backoff, number - 1))
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

    def _once(self, tm: Manager, attempt: Any, target: Any, selector: str, args: Sequence[Any],
              author: str, request_id: str | None, install: Any) -> Any:
        """One try of the message, in ``attempt`` of ``tm``: it begins the transaction and
        commits it at the end (a read-only message, or one whose reply is recorded, skips
        the commit: aborted). Storage failures become the kernel's errors."""
        stage, conn, result = "begin", None, None
        try:
            with attempt:
                stage = "open"
                conn = self.db.open(transaction_manager=tm)
                stage = "run"
                discard_pending(conn, tm)
                root = conn.root()
                replies = None
                if request_id is not None and ReplyStore.exists(root):
                    replies = ReplyStore(root)
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
                        replies = ReplyStore(root)
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
                try:
                    conn.close()
                except Exception:  # still joined (an abort that failed): never reuse its manager
                    tm.spoiled = True
                    log.exception("closing a connection after %r failed", selector)
