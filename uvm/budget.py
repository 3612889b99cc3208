"""Per-message budgets: CPU seconds, wall-clock seconds, memory.

Every message the kernel runs (and every trial the crucible runs, through the
same ``uvm.dispatch.run_message``) has a budget: ``Limits.cpu`` seconds of its
thread's CPU time and ``Limits.wall`` seconds of wall-clock time, with
``Limits.grace`` seconds to unwind once stopped. Memory is the process's
(``RLIMIT_AS``, set by ``envs.confine``): a ``MemoryError`` while a message runs
answers ``BudgetExceeded`` with limit ``"memory"``.

``Limits`` (``uvm.limits``, re-exported here) is one message's budget.
The interface: ``enter`` when a message begins, then ``leave`` when it ends or
``fail`` with the exception in flight (which becomes ``BudgetExceeded`` when the
watchdog stopped the message), both inside one ``try``; ``scope`` is the same as a
``with`` block. A message over its budget is stopped by the process's watchdog
(``uvm.watchdog``: asynchronous signals, then, when the process's owner enabled
it, the end of the process, also when C code holds the GIL).

Threads: ``enter``/``leave``/``fail`` run on the message's thread and cost it a
few attribute stores on its own reused slot. Nothing here touches ZODB.
"""

from __future__ import annotations

import threading
import time

from .errors import BudgetExceeded
from .limits import Limits
from .watchdog import KILL_EXIT_CODE, OverBudget, Watchdog
from .watchdog import _Slot as _Slot

__all__ = [
    "KILL_EXIT_CODE",
    "MAX_REPLY_BYTES",
    "Limits",
    "OverBudget",
    "Watchdog",
    "enter",
    "fail",
    "leave",
    "memory_exceeded",
    "scope",
    "watchdog",
]

#: the largest reply a message may answer: bridge.codec.MAX_FRAME (1 MiB) less room
#: for the reply's envelope (id, error fields)
MAX_REPLY_BYTES = (1 << 20) - 16 * 1024


_WATCHDOG = Watchdog()
_SLOTS = _WATCHDOG._slots
_get_ident = threading.get_ident
_monotonic = time.monotonic


def watchdog() -> Watchdog:
    """This process's watchdog."""
    return _WATCHDOG


def enter(limits: Limits, request: str | None = None) -> _Slot | None:
    """Begin a message on this thread under ``limits``; None inside another (the outer
    budget covers it). Pair with ``leave`` on success and ``fail`` on any exception,
    both inside the same ``try`` (see ``uvm.dispatch.run_message``), or use ``scope``."""
    tid = _get_ident()
    slot = _SLOTS.get(tid)
    if slot is None:
        slot = _WATCHDOG._slot(tid)
    elif slot.start:
        return None
    slot.limits = limits
    slot.request = request
    slot.gen += 1
    slot.start = _monotonic()
    return slot


def leave(slot: _Slot | None) -> None:
    """End the message ``enter`` began (success path)."""
    if slot is not None:
        _WATCHDOG.leave(slot)


def fail(slot: _Slot | None, kind: type[BaseException]) -> None:
    """End the message ``enter`` began with an exception of ``kind`` in flight; raise
    ``BudgetExceeded`` instead if the watchdog stopped it or it ran out of memory."""
    if slot is None:
        return
    gen = slot.gen
    try:
        _WATCHDOG.leave(slot)
    except OverBudget:  # a signal sent just before the leave landed inside it
        _WATCHDOG.leave(slot)
        kind = OverBudget
    stopped = slot.signals and slot.seen == gen
    if kind is OverBudget or stopped:
        raise BudgetExceeded(
            f"the message was stopped: {slot.reason if stopped else 'over its budget'}; "
            "nothing of it was applied", limit=(slot.limit if stopped else "") or "cpu",
        ) from None
    if issubclass(kind, MemoryError):
        raise memory_exceeded() from None


class scope:  # noqa: N801 - a context manager that reads like a function
    """Run a ``with`` block as one message under ``limits``: ``enter``, then ``leave`` or
    ``fail`` (an ``OverBudget`` or ``MemoryError`` comes out as ``BudgetExceeded``)."""

    __slots__ = ("limits", "request", "slot")

    def __init__(self, limits: Limits, request: str | None = None) -> None:
        self.limits = limits
        self.request = request

    def __enter__(self) -> None:
        self.slot = enter(self.limits, self.request)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if kind is None:
            try:
                leave(self.slot)
            except OverBudget:
                fail(self.slot, OverBudget)
        else:
            fail(self.slot, kind)


def memory_exceeded() -> BudgetExceeded:
    return BudgetExceeded(
        "the message was stopped: it ran out of memory (the process's address-space "
        "limit); nothing of it was applied", limit="memory",
    )
