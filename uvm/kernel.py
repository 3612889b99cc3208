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
   ``retries`` times, then raises ``RetriesExhausted``.

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
threads at once; each call uses its own transaction manager and connection.
The asyncio front (``uvm.front``) calls it from worker threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import transaction
from ZEO.Exceptions import ClientDisconnected
from ZODB.POSException import ConflictError, POSError

from . import primitives as _primitives  # noqa: F401 - installs method globals
from . import quarantine as _quarantine
from .budget import MAX_REPLY_BYTES, Limits
from .dispatch import DNU, dispatch, run_message
from .errors import (
    MAX_ERROR_CHARS,
    BadArguments,
    ImageError,
    NeedsSynthesis,
    NoMind,
    RetriesExhausted,
    StorageUnavailable,
    SynthesisFailed,
    UVMError,
    cap_message,
)
from .integrity import discard_pending, guard
from .registry import Cycle, Registry, using_cycle
from .replies import ReplyStore
from .values import from_plain

__all__ = ["DNU", "Kernel", "dispatch", "run_message"]

log = logging.getLogger("batos.kernel")

_AGAIN = object()


class _Flight:
    """One synthesis in progress; others asking for the same thing wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: UVMError | None = None
        self.waiters = 0  # how many other sends wait on this one (read by tests and status)


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
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._flights_lock = threading.Lock()
        self.retries = retries
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

    def _retrying(
        self,
        target: Any,
        selector: str,
        args: Sequence[Any],
        who: str,
        request_id: str | None,
        install: Any = None,
    ) -> Any:
        outage_deadline = time.monotonic() + self.outage_wait
        for attempt in range(self.retries + 1):
            try:
                return self._once(target, selector, args, who, request_id, install)
            except StorageUnavailable:
                # With an id the retry is safe: if the first try committed, the reply
                # record answers. Without one, the caller must decide.
                if request_id is None or time.monotonic() > outage_deadline:
                    raise
                time.sleep(0.1)
                continue
            except ConflictError as exc:
                if attempt == self.retries:
                    raise RetriesExhausted(
                        f"{selector!r} to {target!r} conflicted with other messages "
                        f"{attempt + 1} times; nothing was committed, send it again"
                    ) from exc
                delay = min(self.backoff * (2**attempt), 0.1) * (0.5 + random.random())
                log.debug("conflict on %s %s, retry %d in %.4fs", target, selector, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def maintain(self, *, keep: int = 100_000, max_age: float = 7 * 86400) -> int:
        """Prune the exactly-once reply record, in a transaction of its own; answers how many."""
        tm = transaction.TransactionManager(explicit=True)
        for attempt in range(self.retries + 1):
            tm.begin()
            conn = self.db.open(transaction_manager=tm)
            try:
                root = conn.root()
                if not ReplyStore.exists(root):
                    tm.abort()
                    return 0
                dropped = ReplyStore(root, keep=keep, max_age=max_age).prune()
                tm.get().note("prune reply record")
                tm.commit()
                return dropped
            except ConflictError:
                tm.abort()
                time.sleep(self.backoff * (2**attempt))
            except BaseException:
                tm.abort()
                raise
            finally:
                conn.close()
        return 0

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

    def _synthesized(
        self,
        need: NeedsSynthesis,
        target: Any,
        selector: str,
        args: Sequence[Any],
        who: str,
        request_id: str | None,
    ) -> Any:
        """Ask the mind for what ``need`` names (once per receiver and selector at a time),
        then run the message again with the approved proposal installed, in one
        transaction. Answers the message's result, or ``_AGAIN`` when another
        thread synthesized it and the message should simply be sent again."""
        if self.mind is None:  # the primitive raises NoMind itself; belt and braces
            raise NoMind(f"{selector!r} is not understood and no mind is configured",
                         selector=selector, receiver=need.receiver)
        key = (need.receiver, need.selector)
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            with self._flights_lock:
                flight.waiters += 1
            if not flight.done.wait(self.mind.deadline):
                raise SynthesisFailed(
                    f"a synthesis of {need.selector!r} already running did not finish within "
                    f"{self.mind.deadline:.0f}s; send the message again later"
                )
            if flight.error is not None:
                raise type(flight.error)(*flight.error.args) from flight.error
            return _AGAIN
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
            flight.error = exc
            raise
        finally:
            flight.done.set()
            with self._flights_lock:
                self._flights.pop(key, None)

    def read(self, fn: Any, *, author: str | None = None) -> Any:
        """Run ``fn(cycle)`` in a transaction that is always aborted; answers what it answers.

        For work that must see the image but never change it (the mind's prompt).
        """
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        conn = self.db.open(transaction_manager=tm)
        try:
            cycle = Cycle(conn, Registry(conn.root()), author or self.author, mind=self.mind)
            with using_cycle(cycle):
                return fn(cycle)
        finally:
            tm.abort()
            conn.close()

    def write(self, fn: Any, *, author: str | None = None, note: str = "") -> Any:
        """Run ``fn(cycle)`` in a transaction of its own and commit it, retrying conflicts."""
        for attempt in range(self.retries + 1):
            tm = transaction.TransactionManager(explicit=True)
            txn = tm.begin()
            conn = self.db.open(transaction_manager=tm)
            try:
                cycle = Cycle(conn, Registry(conn.root()), author or self.author, mind=self.mind)
                with using_cycle(cycle):
                    result = fn(cycle)
                txn.setUser(author or self.author)
                txn.note(note[:200])
                tm.commit()
                return result
            except ConflictError:
                tm.abort()
                if attempt == self.retries:
                    raise RetriesExhausted(f"{note or 'a write'} kept conflicting") from None
                time.sleep(min(self.backoff * (2**attempt), 0.1))
            except BaseException:
                tm.abort()
                raise
            finally:
                conn.close()
        raise AssertionError("unreachable")

    def _once(
        self,
        target: Any,
        selector: str,
        args: Sequence[Any],
        author: str,
        request_id: str | None,
        install: Any = None,
    ) -> Any:
        tm = getattr(self._local, "tm", None)
        if tm is None:  # one per thread, reused: it always ends committed or aborted
            tm = self._local.tm = transaction.TransactionManager(explicit=True)
        try:
            txn = tm.begin()
        except BaseException as exc:
            # begin() may fail half-way (a synchronizer's ClientDisconnected) with its
            # transaction already set: this manager would answer AlreadyInTransaction
            # forever, so the thread gets a fresh one next time.
            self._local.tm = None
            if isinstance(exc, ClientDisconnected):
                raise StorageUnavailable(
                    f"the ZEO server is away; {selector!r} did not run: send it again") from exc
            if isinstance(exc, POSError):
                raise ImageError(f"cannot begin a transaction on the image: {exc}") from exc
            raise
        try:
            conn = self.db.open(transaction_manager=tm)
        except BaseException as exc:
            self._abort(tm)
            if isinstance(exc, ClientDisconnected):
                raise StorageUnavailable(
                    f"the ZEO server is away; {selector!r} did not run: send it again") from exc
            if isinstance(exc, POSError):
                raise ImageError(f"cannot open a connection to the image: {exc}") from exc
            raise
        try:
            if discard_pending(conn, tm):
                txn = tm.get()
            root = conn.root()
            replies = None
            if request_id is not None and ReplyStore.exists(root):
                replies = ReplyStore(root)
                stored = replies.get(request_id)
                if stored is not ReplyStore.MISSING:
                    tm.abort()
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
                tm.abort()  # read-only: nothing to write, and no commit machinery to run
                return result
            if request_id is not None:
                if replies is None:  # (not `or`: a BTree's truth value counts its buckets)
                    replies = ReplyStore(root)
                replies.record(request_id, result)
            txn.setUser(author)
            txn.note(f"{target} {selector}"[:200])
            tm.commit()
            return result
        except ConflictError:
            self._abort(tm)
            raise
        except ClientDisconnected as exc:
            self._abort(tm)
            raise StorageUnavailable(
                f"the ZEO server went away while running {selector!r}; the message may or may "
                "not have committed: send it again with the same request id"
            ) from exc
        except POSError as exc:
            self._abort(tm)
            raise ImageError(f"the storage failed while committing {selector!r}: {exc}") from exc
        except BaseException:
            self._abort(tm)
            raise
        finally:
            try:
                conn.close()
            except Exception:  # still joined (an abort that failed): never reuse its manager
                self._local.tm = None
                log.exception("closing a connection after %r failed", selector)

    def _abort(self, tm: Any) -> None:
        """Abort ``tm``'s transaction; if even that fails, the thread gets a fresh manager."""
        try:
            tm.abort()
        except BaseException:
            self._local.tm = None
            log.exception("aborting a transaction failed; this thread starts over with a "
                          "fresh transaction manager")
