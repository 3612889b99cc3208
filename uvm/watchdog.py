"""The budget watchdog: one thread per process that stops messages over their budget.

``uvm.budget`` is the interface (limits, and ``enter``/``leave``/``fail`` around a
message); this module is the machinery behind it. Enforcement, in three steps:

1. **Soft.** The watchdog looks at the messages in flight every ``TICK`` seconds
   (their thread's CPU clock through ``time.pthread_getcpuclockid``, and their
   wall time). Past a limit it raises ``OverBudget`` in the message's thread
   (``PyThreadState_SetAsyncExc``), and again every ``RESIGNAL`` seconds until
   the message ends: a ``finally:`` that loops is interrupted in turn, one level
   per signal. ``OverBudget`` is a ``BaseException`` method code cannot name or
   catch; ``uvm.budget.fail`` turns it into ``BudgetExceeded`` and the kernel
   aborts the transaction.
2. **Hard, the watchdog still runs.** A message that has not ended
   ``Limits.grace`` seconds after the first signal (blocked in C with the GIL
   released, or swallowing signals) ends the process, when the process's owner
   enabled it (``Watchdog.enable_hard_exit``): ``on_kill`` first tells the
   supervisor which request is to blame, then ``os._exit(KILL_EXIT_CODE)``.
3. **Hard, the watchdog cannot run.** C code holding the GIL (a huge ``pow``, a
   backtracking regex, ``sum`` over a huge range) stops every Python thread, the
   watchdog included. For that the watchdog keeps faulthandler's timer (a C
   thread that needs no GIL) armed as a dead man's switch: each tick pushes the
   deadline to ``now +`` the least CPU any message in flight (or a new one) may
   still use ``+ grace``. If no tick comes for that long, something held the GIL
   past a budget plus the grace: faulthandler dumps every thread's stack (the GIL
   holder marked "Current thread") to stderr and ``_exit(1)``s. The watchdog
   sends ``Suspect`` (``on_suspect``) when it first signals a message, so the
   supervisor knows whom to blame when it can; an immediate GIL-holding loop
   gives it no chance, and then the supervisor has the requests in flight to go on.

A fourth watch covers garbage collection (``_watch_gc``): a generator method code
left in a reference cycle runs its ``finally:`` whenever and wherever a collection
happens, outside any budget; a pass running longer than ``GC_LIMIT`` is
interrupted the same way.

CPU is counted from the watchdog's first look at a message (up to one tick late),
so a message is never stopped early; messages shorter than a tick cost the
watchdog nothing. faulthandler's timer is process-wide: only the process's owner
(the incarnation) turns hard exits on, never a library or a test process (pytest's
``faulthandler_timeout`` uses the same timer).

Threads: each message's thread writes its own ``_Slot`` (a few attribute stores,
no allocation); the watchdog is one daemon thread (``batos-budget``); the gc
callbacks run on whichever thread collects. Nothing here touches ZODB.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .limits import Limits

__all__ = ["GC_LIMIT", "KILL_EXIT_CODE", "RESIGNAL", "TICK", "OverBudget", "Watchdog"]

log = logging.getLogger("batos.budget")

#: how often the watchdog looks (seconds); also the most CPU a message may use unseen
TICK = 0.05
#: how often a message that is over its budget is signalled again until it unwinds
RESIGNAL = 0.002
#: the exit status of a process the watchdog ends itself (faulthandler's is 1)
KILL_EXIT_CODE = 86

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
_set_async_exc.restype = ctypes.c_int


class OverBudget(BaseException):
    """Internal signal, not an error: the watchdog stops a message over its budget.

    Raised asynchronously in the message's thread; ``uvm.budget.fail`` turns it
    into ``BudgetExceeded``. A ``BaseException`` method code cannot name, so no
    handler of its own can keep the message going.
    """


class _Slot:
    """One thread's message in flight: written by that thread, watched by the watchdog.

    The thread writes ``start`` (0.0: no message), ``limits``, ``request`` and bumps
    ``gen`` when a message begins, and zeroes ``start`` when it ends: a few stores,
    no allocation. The watchdog keeps the rest (``seen`` is the ``gen`` its notes are
    about) and writes ``signals``, ``limit`` and ``reason`` before it signals.
    """

    __slots__ = ("clock", "cpu0", "cpu_used", "gen", "limit", "limits", "reason", "request",
                 "seen", "signalled", "signals", "start", "tid")

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.start = 0.0
        self.limits: Limits | None = None  # set by uvm.budget.enter before start
        self.request: str | None = None
        self.gen = 0
        self.seen = -1
        self.clock: int | None = None
        self.cpu0 = 0.0
        self.cpu_used = 0.0
        self.limit = ""  # "cpu" or "wall" once over
        self.reason = ""
        self.signalled = 0.0  # monotonic time of the first signal
        self.signals = 0


class Watchdog:
    """Watches the messages in flight in this process; see the module docstring."""

    def __init__(self, *, tick: float = TICK) -> None:
        self.tick = tick
        self._slots: dict[int, _Slot] = {}
        # reentrant: an allocation inside it may run a gc pass, whose callback takes it
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._hard: Limits | None = None
        self.on_suspect: Callable[[str, str], None] | None = None
        self.on_kill: Callable[[str | None, str], None] | None = None

    # --- the message's thread (``enter``, ``leave``, ``fail`` below) ---------------------

    def _slot(self, tid: int) -> _Slot:
        if self._thread is None:
            self.start()
        slot = self._slots[tid] = _Slot(tid)
        return slot

    def leave(self, slot: _Slot) -> None:
        """The message on ``slot`` ended; no signal reaches its thread after this returns.

        Idempotent: a signal landing inside it leaves it to be called again.
        """
        slot.start = 0.0
        if slot.signals:
            with self._lock:  # ordered after a signal the watchdog may be sending now
                _set_async_exc(slot.tid, None)  # drop one sent but not yet raised

    # --- the process's owner ------------------------------------------------------------

    def start(self) -> None:
        """Start the watchdog's thread (done at the first message; before a lock, call it)."""
        with self._start_lock:
            if self._thread is None:
                _watch_gc(self._lock)
                thread = threading.Thread(target=self._run, name="batos-budget", daemon=True)
                thread.start()
                self._thread = thread

    def enable_hard_exit(
        self,
        limits: Limits,
        *,
        on_suspect: Callable[[str, str], None] | None = None,
        on_kill: Callable[[str | None, str], None] | None = None,
    ) -> None:
        """End the process when a message does not unwind (see the module docstring).

        ``limits`` is the smallest budget any message here runs under; ``on_suspect(request,
        reason)`` is called (on the watchdog's thread) when a message is first signalled,
        ``on_kill(request, reason)`` just before the process ends itself; both must return
        within a second or so.
        """
        self.on_suspect = on_suspect
        self.on_kill = on_kill
        self._hard = limits
        self.start()

    def in_flight(self) -> list[dict[str, Any]]:
        """The messages in flight now: request, seconds running, CPU seen, over which limit."""
        now = time.monotonic()
        rows = []
        for slot in list(self._slots.values()):
            start, gen = slot.start, slot.gen
            if not start:
                continue
            seen = slot.seen == gen
            rows.append({"request": slot.request, "wall": round(now - start, 3),
                         "cpu": round(slot.cpu_used, 3) if seen else 0.0,
                         "over": slot.limit if seen else ""})
        return rows

    # --- the watchdog's thread ----------------------------------------------------------

    def _run(self) -> None:
        wake = threading.Event()  # never set: a plain timed wait that needs no signal
        while True:
            try:
                pressing = self._look()
            except Exception:  # never let the watchdog die of its own bug
                log.exception("budget watchdog: a look failed")
                pressing = False
            wake.wait(RESIGNAL if pressing else self.tick)

    def _look(self) -> bool:
        now = time.monotonic()
        pressing = False
        floor = self._hard.cpu if self._hard is not None else 0.0
        least = floor  # the least CPU any message in flight (or a new one) may still use
        for slot in list(self._slots.values()):
            start, gen, limits = slot.start, slot.gen, slot.limits
            if not start or limits is None:
                continue
            if slot.seen != gen:  # a message not looked at yet
                slot.seen = gen
                slot.clock = None
                slot.cpu_used = 0.0
                slot.limit = slot.reason = ""
                slot.signalled = 0.0
                slot.signals = 0
            self._measure(slot)
            if slot.signalled:
                pressing = True
                least = 0.0
                if self._signal(slot, gen) and now - slot.signalled > limits.grace:
                    self._stuck(slot, now)
                continue
            if slot.cpu_used > limits.cpu:
                slot.limit = "cpu"
                slot.reason = (f"it used {slot.cpu_used:.1f}s of CPU; a message may use "
                               f"{limits.cpu:g}s")
            elif now - start > limits.wall:
                slot.limit = "wall"
                slot.reason = f"it ran {now - start:.1f}s; a message may run {limits.wall:g}s"
            else:
                least = min(least, limits.cpu - slot.cpu_used)
                continue
            slot.signalled = now
            if self._signal(slot, gen):
                pressing = True
                least = 0.0
                self._suspect(slot)
        self._look_at_gc(now)
        if self._hard is not None:
            self._arm(max(least, 0.0) + self._hard.grace + self.tick)
        return pressing

    @staticmethod
    def _measure(slot: _Slot) -> None:
        try:
            if slot.clock is None:
                slot.clock = time.pthread_getcpuclockid(slot.tid)
                slot.cpu0 = time.clock_gettime(slot.clock)
            else:
                slot.cpu_used = time.clock_gettime(slot.clock) - slot.cpu0
        except OSError:  # the thread is gone
            slot.clock = None

    def _signal(self, slot: _Slot, gen: int) -> bool:
        slot.signals += 1  # before the check: leave() then knows to take the lock
        with self._lock:
            if slot.gen != gen or not slot.start:
                return False  # that message ended meanwhile
            _set_async_exc(slot.tid, id(OverBudget))
            return True

    def _suspect(self, slot: _Slot) -> None:
        request = slot.request
        log.warning("request %s over its %s budget (%s): stopping it", request,
                    slot.limit, slot.reason)
        if self.on_suspect is not None and request is not None:
            try:
                self.on_suspect(request, f"{slot.limit}: {slot.reason}")
            except Exception:
                log.exception("budget watchdog: on_suspect failed")

    def _stuck(self, slot: _Slot, now: float) -> None:
        request = slot.request
        reason = (f"{slot.limit}: {slot.reason}, and it did not stop within "
                  f"{now - slot.signalled:.1f}s of being told to")
        if self._hard is None:
            if slot.signals % 5000 == 1:
                log.error("request %s %s (hard exit is off: it keeps being signalled)",
                          request, reason)
            return
        log.critical("request %s %s: ending the process", request, reason)
        self._arm(2.0)  # the backstop, should on_kill itself hang
        if self.on_kill is not None:
            try:
                self.on_kill(request, reason)
            except Exception:
                log.exception("budget watchdog: on_kill failed")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: S110 - ending anyway
                pass
        os._exit(KILL_EXIT_CODE)

    def _look_at_gc(self, now: float) -> None:
        """Interrupt a garbage-collection pass stuck in a finalizer (see ``_watch_gc``)."""
        gc_pass = _GC_PASS[0]
        if gc_pass is None or gc_pass.done or now - gc_pass.start < GC_LIMIT:
            return
        with self._lock:
            if gc_pass.done or _GC_SEEN.get("stop") is not gc_pass.last_stop:
                return  # it ended meanwhile
            gc_pass.signals += 1
            _set_async_exc(gc_pass.tid, id(OverBudget))
        log.error("a garbage-collection pass has run %.1fs (a finalizer of method code that "
                  "will not end): interrupting it", now - gc_pass.start)
        # one signal ends one finalizer; the next stuck one, if any, waits its own GC_LIMIT,
        # so the rest of the pass (other finalizers, the unraisable hook) runs undisturbed
        gc_pass.start = now

    @staticmethod
    def _arm(seconds: float) -> None:
        faulthandler.dump_traceback_later(seconds, exit=True)


#: how long a garbage-collection pass may run before it is interrupted (seconds)
GC_LIMIT = 2.0


class _GcPass:
    __slots__ = ("done", "last_stop", "signals", "start", "tid")

    def __init__(self, last_stop: Any) -> None:
        self.tid = threading.get_ident()
        self.start = time.monotonic()
        self.last_stop = last_stop
        self.done = False
        self.signals = 0


#: the pass running now, if any (set by the Python callback at its start)
_GC_PASS: list[_GcPass | None] = [None]
#: phase -> the info dict of its last callback, written by a C-level callback that no
#: pending signal can interrupt: the watchdog's proof that a pass has not ended
_GC_SEEN: dict[str, Any] = {}


def _watch_gc(lock: Any) -> None:
    """Watch garbage-collection passes: the finalizer of a generator method code left in
    a reference cycle (``try: yield ... finally: while True: pass``) runs whenever and
    wherever a collection happens, outside any message's budget. The watchdog interrupts
    a pass running longer than ``GC_LIMIT`` (the signal ends the finalizer; the collector
    reports and drops it). Two Python callbacks end each pass, so a signal still pending
    when it ended is consumed by one of them or cleared, never raised in later code."""

    def started(phase: str, info: Any) -> None:
        if phase == "start":
            _GC_PASS[0] = _GcPass(_GC_SEEN.get("stop"))

    def stopped(phase: str, info: Any) -> None:
        if phase != "stop":
            return
        with lock:
            gc_pass = _GC_PASS[0]
            if gc_pass is not None and gc_pass.tid == threading.get_ident():
                gc_pass.done = True
                if gc_pass.signals:
                    _set_async_exc(gc_pass.tid, None)

    gc.callbacks.extend([_GC_SEEN.__setitem__, started, stopped, stopped])
