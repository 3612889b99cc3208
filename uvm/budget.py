"""Per-message budgets: CPU seconds, wall-clock seconds, memory, enforced by a watchdog.

Every message the kernel runs (and every trial the crucible runs, through the
same ``scope``) has a budget: ``Limits.cpu`` seconds of its thread's CPU time
and ``Limits.wall`` seconds of wall-clock time. Memory is the process's
(``RLIMIT_AS``, set by ``envs.confine``): a ``MemoryError`` while a message
runs answers ``BudgetExceeded`` with limit ``"memory"``.

Enforcement, in three steps:

1. **Soft.** One watchdog thread per process looks at the messages in flight
   every ``TICK`` seconds (their thread's CPU clock through
   ``time.pthread_getcpuclockid``, and their wall time). Past a limit it raises
   ``OverBudget`` in the message's thread (``PyThreadState_SetAsyncExc``), and
   again every few milliseconds until the message leaves its scope: a
   ``finally:`` that loops is interrupted in turn, one level per signal.
   ``OverBudget`` is a ``BaseException`` method code cannot name or catch; the
   scope turns it into ``BudgetExceeded`` and the kernel aborts the transaction.
2. **Hard, the watchdog still runs.** A message that has not left its scope
   ``Limits.grace`` seconds after the first signal (blocked in C with the GIL
   released, or swallowing signals) ends the process, when the incarnation
   enabled it (``Watchdog.enable_hard_exit``): ``on_kill`` first tells the
   supervisor which request is to blame, then ``os._exit(KILL_EXIT_CODE)``.
3. **Hard, the watchdog cannot run.** C code holding the GIL (a huge ``pow``,
   a backtracking regex) stops every Python thread, the watchdog included. For
   that, the watchdog keeps faulthandler's timer (a C thread that needs no GIL)
   armed as a dead man's switch: each tick it pushes the deadline to ``now +``
   the least CPU any message in flight (or a new one) may still use ``+ grace``.
   If no tick comes for that long, something held the GIL past a budget plus
   the grace: faulthandler dumps every thread's stack (the GIL holder marked
   "Current thread") to stderr and ``_exit(1)``s. The watchdog sends ``Suspect``
   (``on_suspect``) when it first signals a message, so the supervisor knows
   whom to blame when it can; an immediate GIL-holding loop gives it no chance,
   and then the supervisor has only the requests in flight to go on.

CPU is counted from the watchdog's first look at a message (up to one tick
late), so a message is never stopped early; messages shorter than a tick cost
the watchdog nothing. faulthandler's timer is process-wide: only the process's
owner (the incarnation, a trial worker) turns hard exits on, never a library or
a test process.

Threads: ``scope`` is entered and left on the thread that runs the message;
the watchdog is one daemon thread (``batos-budget``). Nothing here touches
ZODB.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BudgetExceeded

__all__ = [
    "KILL_EXIT_CODE",
    "MAX_REPLY_BYTES",
    "Limits",
    "OverBudget",
    "Watchdog",
    "memory_exceeded",
    "scope",
    "watchdog",
]

log = logging.getLogger("batos.budget")

#: how often the watchdog looks (seconds); also the most CPU a message may use unseen
TICK = 0.05
#: how often a message that is over its budget is signalled again until it unwinds
RESIGNAL = 0.002
#: the exit status of a process the watchdog ends itself (faulthandler's is 1)
KILL_EXIT_CODE = 86
#: the largest reply a message may answer: bridge.codec.MAX_FRAME (1 MiB) less room
#: for the reply's envelope (id, error fields)
MAX_REPLY_BYTES = (1 << 20) - 16 * 1024

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
_set_async_exc.restype = ctypes.c_int


class OverBudget(BaseException):
    """Internal signal, not an error: the watchdog stops a message over its budget.

    Raised asynchronously in the message's thread; ``scope`` turns it into
    ``BudgetExceeded``. A ``BaseException`` method code cannot name, so no
    handler of its own can keep the message going.
    """


@dataclass(frozen=True)
class Limits:
    """One message's budget: CPU and wall-clock seconds, and the grace after them."""

    cpu: float = 5.0
    wall: float = 30.0
    #: how long a message over its budget may take to unwind before the process ends
    grace: float = 2.0

    def __post_init__(self) -> None:
        for name in ("cpu", "wall", "grace"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"budget {name} must be a positive number of seconds, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: float | None) -> Limits:
        """Limits from ``given`` (e.g. command-line values), else ``BATOS_BUDGET_CPU``,
        ``BATOS_BUDGET_WALL``, ``BATOS_BUDGET_GRACE``, else the defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name in ("cpu", "wall", "grace"):
            value = given.get(name)
            if value is None:
                text = environ.get(f"BATOS_BUDGET_{name.upper()}", "").strip()
                if not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(
                        f"BATOS_BUDGET_{name.upper()}={text!r} is not a number of seconds"
                    ) from None
            values[name] = float(value)
        return cls(**values)


class _Track:
    """What the watchdog knows of one message in flight (its own thread only)."""

    __slots__ = ("clock", "cpu0", "cpu_used", "entry", "limit", "reason", "signalled", "signals")

    def __init__(self, entry: tuple[int, float, Limits, str | None]) -> None:
        self.entry = entry
        self.clock: int | None = None  # the thread's CPU clock, read at the first look
        self.cpu0 = 0.0
        self.cpu_used = 0.0
        self.limit = ""  # "cpu" or "wall" once over
        self.reason = ""
        self.signalled = 0.0  # monotonic time of the first signal
        self.signals = 0


class Watchdog:
    """Watches the messages in flight in this process; see the module docstring.

    A message in flight is an entry ``(thread id, start, limits, request)`` in
    ``_flights``, put there and taken out by its own thread (``scope``), so the
    message's own cost is a tuple and two dict operations; everything else
    happens on the watchdog's thread, in ``_Track``s.
    """

    def __init__(self, *, tick: float = TICK) -> None:
        self.tick = tick
        self._flights: dict[int, tuple[int, float, Limits, str | None]] = {}
        self._tracks: dict[int, _Track] = {}
        # reentrant: an allocation inside it may run a gc pass, whose callback takes it
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._hard: Limits | None = None
        self.on_suspect: Callable[[str, str], None] | None = None
        self.on_kill: Callable[[str | None, str], None] | None = None

    # --- the message's thread -----------------------------------------------------------

    def release(self, entry: tuple[int, float, Limits, str | None]) -> None:
        """Stop watching ``entry``; no signal reaches its thread after this returns.

        Idempotent: a signal landing inside it leaves it to be called again.
        """
        tid = entry[0]
        if self._flights.get(tid) is entry:
            del self._flights[tid]
        track = self._tracks.get(tid)
        if track is not None and track.entry is entry and track.signals:
            with self._lock:  # ordered after a signal the watchdog may be sending now
                _set_async_exc(tid, None)  # drop one sent but not yet raised

    def reason(self, entry: tuple[int, float, Limits, str | None]) -> tuple[str, str] | None:
        """(limit, reason) if the watchdog signalled ``entry``, else None."""
        track = self._tracks.get(entry[0])
        if track is None or track.entry is not entry or not track.signals:
            return None
        return track.limit, track.reason

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
        for tid, entry in list(self._flights.items()):
            track = self._tracks.get(tid)
            seen = track is not None and track.entry is entry
            rows.append({"request": entry[3], "wall": round(now - entry[1], 3),
                         "cpu": round(track.cpu_used, 3) if seen else 0.0,
                         "over": track.limit if seen else ""})
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
        flights = dict(self._flights)
        for tid in [t for t in self._tracks if t not in flights]:
            del self._tracks[tid]
        for tid, entry in flights.items():
            track = self._tracks.get(tid)
            if track is None or track.entry is not entry:
                track = self._tracks[tid] = _Track(entry)
            limits = entry[2]
            self._measure(track, tid)
            if track.signalled:
                pressing = True
                least = 0.0
                if self._signal(track, tid) and now - track.signalled > limits.grace:
                    self._stuck(track, now)
                continue
            if track.cpu_used > limits.cpu:
                track.limit = "cpu"
                track.reason = (f"it used {track.cpu_used:.1f}s of CPU; a message may use "
                                f"{limits.cpu:g}s")
            elif now - entry[1] > limits.wall:
                track.limit = "wall"
                track.reason = (f"it ran {now - entry[1]:.1f}s; a message may run "
                                f"{limits.wall:g}s")
            else:
                least = min(least, limits.cpu - track.cpu_used)
                continue
            track.signalled = now
            if self._signal(track, tid):
                pressing = True
                least = 0.0
                self._suspect(track)
        self._look_at_gc(now)
        if self._hard is not None:
            self._arm(max(least, 0.0) + self._hard.grace + self.tick)
        return pressing

    def _look_at_gc(self, now: float) -> bool:
        """Interrupt a garbage-collection pass stuck in a finalizer (see ``_watch_gc``)."""
        gc_pass = _GC_PASS[0]
        if gc_pass is None or gc_pass.done or now - gc_pass.start < GC_LIMIT:
            return False
        with self._lock:
            if gc_pass.done or _GC_SEEN.get("stop") is not gc_pass.last_stop:
                return False  # it ended meanwhile
            gc_pass.signals += 1
            _set_async_exc(gc_pass.tid, id(OverBudget))
        log.error("a garbage-collection pass has run %.1fs (a finalizer of method code that "
                  "will not end): interrupting it", now - gc_pass.start)
        # one signal ends one finalizer; the next stuck one, if any, waits its own GC_LIMIT,
        # so the rest of the pass (other finalizers, the unraisable hook) runs undisturbed
        gc_pass.start = now
        return False

    @staticmethod
    def _measure(track: _Track, tid: int) -> None:
        try:
            if track.clock is None:
                track.clock = time.pthread_getcpuclockid(tid)
                track.cpu0 = time.clock_gettime(track.clock)
            else:
                track.cpu_used = time.clock_gettime(track.clock) - track.cpu0
        except OSError:  # the thread is gone; its flight goes with it
            pass

    def _signal(self, track: _Track, tid: int) -> bool:
        track.signals += 1  # before the check: release() then knows to take the lock
        with self._lock:
            if self._flights.get(tid) is not track.entry:
                return False
            _set_async_exc(tid, id(OverBudget))
            return True

    def _suspect(self, track: _Track) -> None:
        request = track.entry[3]
        log.warning("request %s over its %s budget (%s): stopping it", request,
                    track.limit, track.reason)
        if self.on_suspect is not None and request is not None:
            try:
                self.on_suspect(request, f"{track.limit}: {track.reason}")
            except Exception:
                log.exception("budget watchdog: on_suspect failed")

    def _stuck(self, track: _Track, now: float) -> None:
        request = track.entry[3]
        reason = (f"{track.limit}: {track.reason}, and it did not stop within "
                  f"{now - track.signalled:.1f}s of being told to")
        if self._hard is None:
            if track.signals % 5000 == 1:
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


_WATCHDOG = Watchdog()
_get_ident = threading.get_ident
_monotonic = time.monotonic


def watchdog() -> Watchdog:
    """This process's watchdog."""
    return _WATCHDOG


class scope:  # noqa: N801 - a context manager that reads like a function
    """Run a ``with`` block as one message under ``limits``.

    Leaving it stops the watching; an ``OverBudget`` signal (or a ``MemoryError``)
    coming out of the block comes out as ``BudgetExceeded`` naming the limit. A
    scope inside another on the same thread is part of the outer one.
    """

    __slots__ = ("entry", "limits", "request")

    def __init__(self, limits: Limits, request: str | None = None) -> None:
        self.limits = limits
        self.request = request

    def __enter__(self) -> None:
        tid = _get_ident()
        flights = _WATCHDOG._flights
        if tid in flights:  # nested: the outer scope's budget covers it
            self.entry = None
            return
        if _WATCHDOG._thread is None:
            _WATCHDOG.start()
        flights[tid] = self.entry = (tid, _monotonic(), self.limits, self.request)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        entry = self.entry
        if entry is None:
            return
        try:
            # inline release() for the common case: nothing watched it closely
            _WATCHDOG._flights.pop(entry[0], None)
            if _WATCHDOG._tracks:
                _WATCHDOG.release(entry)
        except OverBudget:  # a signal sent just before the release landed inside it
            _WATCHDOG.release(entry)
            kind = OverBudget
        if kind is None:
            return
        stopped = _WATCHDOG.reason(entry)
        if kind is OverBudget or stopped is not None:
            limit, reason = stopped or ("cpu", "")
            raise BudgetExceeded(
                f"the message was stopped: {reason or 'over its budget'}; nothing of it "
                "was applied", limit=limit,
            ) from None
        if issubclass(kind, MemoryError):
            raise memory_exceeded() from None


def memory_exceeded() -> BudgetExceeded:
    return BudgetExceeded(
        "the message was stopped: it ran out of memory (the process's address-space "
        "limit); nothing of it was applied", limit="memory",
    )
