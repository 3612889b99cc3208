"""The incarnation's side of budgets and quarantine, over its control channel.

``BudgetLink`` connects three things the incarnation owns:

* the process's budget watchdog (``uvm.budget``), with hard exits on: when a
  message is first stopped over its budget the watchdog calls ``_suspect``,
  which sends ``Suspect`` (the supervisor then knows whom to blame if this
  process dies); just before the watchdog ends the process it calls ``_kill``,
  which sends ``Suspect`` again and waits (a second at most) for the frame to
  leave;
* the supervisor's ``Quarantine`` control message: ``Kernel.quarantine`` runs
  in a thread, and the incarnation's frame loop awaits it (``apply_quarantine``)
  before it reads its next frame, so a request for the same method queued
  behind the ``Quarantine`` meets the mark, committed, and cannot crash this
  process once more; then the list is refreshed in the background. The same
  ``Quarantine`` reaches each lane (``uvm.lanes``), which marks the method on
  its own thread before its next frame (``apply_here``; idempotent) and nudges
  the loop to refresh the list;
* the quarantined list reported in ``Ready`` and ``Heartbeat``: a copy kept
  here and refreshed in the background, so a heartbeat never waits on the
  storage.

Threads: ``_suspect`` and ``_kill`` run on the watchdog's thread and only hand
frames to the event loop; ``apply_here`` runs on a lane's thread and hands the
refresh to the loop; everything else runs in the loop. ``apply_quarantine``
holds the frame loop for at most ``QUARANTINE_WAIT`` seconds (a storage that slow
lets the write finish in its thread while frames are read again).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import threading
import time
from typing import Any

from bridge.messages import MAX_QUARANTINED_REPORTED, Quarantine, QuarantinedMethod, Suspect

from .budget import Limits, watchdog
from .errors import UVMError

__all__ = ["BudgetLink", "add_budget_arguments", "limits_from_args"]

log = logging.getLogger("batos.incarnation")

#: how old (seconds) the quarantined list a heartbeat reports may get before it is reread
REFRESH = 5.0
#: the longest (seconds) the frame loop waits for a quarantine's commit
QUARANTINE_WAIT = 10.0


def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("message budget (default: BATOS_BUDGET_* or 5s CPU, 30s wall)")
    group.add_argument("--budget-cpu", type=float, default=None,
                       help="CPU seconds a message may use")
    group.add_argument("--budget-wall", type=float, default=None,
                       help="wall-clock seconds a message may run")
    group.add_argument("--budget-grace", type=float, default=None,
                       help="seconds a stopped message may take to unwind before the process ends")


def limits_from_args(args: argparse.Namespace, *, export: bool = False) -> Limits:
    """The budget from ``--budget-*``, else ``BATOS_BUDGET_*``, else the defaults; with
    ``export`` it is written back to ``BATOS_BUDGET_*`` so that processes started later
    (the crucible's trial workers, through the fork-server) run under the same budget."""
    limits = Limits.from_env(cpu=getattr(args, "budget_cpu", None),
                             wall=getattr(args, "budget_wall", None),
                             grace=getattr(args, "budget_grace", None))
    if export:
        for name in ("cpu", "wall", "grace"):
            os.environ[f"BATOS_BUDGET_{name.upper()}"] = repr(getattr(limits, name))
    return limits


class BudgetLink:
    def __init__(self, incarnation: Any, kernel: Any) -> None:
        self.incarnation = incarnation
        self.kernel = kernel
        self._quarantined: list[QuarantinedMethod] = []
        self._refreshing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refreshed = 0.0

    def enable(self) -> None:
        """Turn the watchdog's hard exits on, reporting through this incarnation."""
        watchdog().enable_hard_exit(self.kernel.limits, on_suspect=self._suspect,
                                    on_kill=self._kill)

    # --- the watchdog's thread ----------------------------------------------------------

    def _frame(self, request: str, reason: str) -> Any:
        inc = self.incarnation
        loop = inc._loop
        if loop is None or loop.is_closed():
            return None
        message = Suspect(incarnation=inc.ident, request=request[:128], reason=reason[:2000])
        return asyncio.run_coroutine_threadsafe(inc._control(message), loop)

    def _suspect(self, request: str, reason: str) -> None:
        self._frame(request, reason)

    def _kill(self, request: str | None, reason: str) -> None:
        if request is None:
            return
        future = self._frame(request, reason)
        if future is None:
            return
        try:
            future.result(timeout=1.0)
            time.sleep(0.2)  # let ZMQ's I/O thread put the frame on the wire before _exit
        except Exception as exc:
            log.error("could not tell the supervisor about request %s: %s", request, exc)

    # --- a lane's thread ----------------------------------------------------------------

    def apply_here(self, message: Quarantine) -> None:
        """Mark the method ``message`` names on this (lane's) thread, committed before this
        returns; then the loop refreshes the list (a failure is logged, never raised)."""
        try:
            self.kernel.quarantine(message.target, message.selector, message.reason,
                                   message.request)
        except Exception as exc:  # noqa: BLE001 - never the lane's end: logged
            log.error("cannot quarantine %s %s (request %s) on a lane: %s: %s",
                      message.target, message.selector, message.request,
                      type(exc).__name__, exc)
            return
        log.info("quarantine of %s %s (request %s) applied on %s", message.target,
                 message.selector, message.request, threading.current_thread().name)
        self.nudge()

    def nudge(self) -> None:
        """Refresh the reported list soon, in the loop (any thread)."""
        loop = self.incarnation._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(lambda: self._background(self.refresh()))
        except RuntimeError:  # the loop closed meanwhile
            pass

    # --- the event loop -----------------------------------------------------------------

    async def apply_quarantine(self, message: Quarantine) -> None:
        """Mark the method ``message`` names, committed before this returns (the frame
        loop awaits it: see the module docstring); the list is refreshed after, in the
        background."""
        write = asyncio.ensure_future(asyncio.to_thread(
            self.kernel.quarantine, message.target, message.selector, message.reason,
            message.request))
        try:
            record = await asyncio.wait_for(asyncio.shield(write), QUARANTINE_WAIT)
        except TimeoutError:
            log.error("quarantine of %s %s (request %s) not committed within %gs: "
                      "serving on while it finishes", message.target, message.selector,
                      message.request, QUARANTINE_WAIT)
            self._background(self._finish(write, message))
            return
        except Exception as exc:  # noqa: BLE001 - never the frame loop's end: logged
            log.error("cannot quarantine %s %s (request %s): %s: %s", message.target,
                      message.selector, message.request, type(exc).__name__, exc)
            return
        log.warning("quarantined %s of %s for request %s: %s", record["selector"],
                    record["holder"], message.request, message.reason)
        self._background(self.refresh())

    async def _finish(self, write: asyncio.Future[Any], message: Quarantine) -> None:
        try:
            await write
        except Exception as exc:  # noqa: BLE001 - a background task: logged
            log.error("cannot quarantine %s %s (request %s): %s: %s", message.target,
                      message.selector, message.request, type(exc).__name__, exc)
            return
        await self.refresh()

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listing(self) -> list[QuarantinedMethod]:
        """The quarantined methods, read now (for ``Ready``)."""
        await self.refresh()
        return list(self._quarantined)

    def reported(self) -> list[QuarantinedMethod]:
        """The last list read (for ``Heartbeat``); a refresh is started in the background
        when it is older than ``REFRESH`` seconds (a release by a person shows then)."""
        stale = time.monotonic() - self._refreshed > REFRESH
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self.refresh())
        return list(self._quarantined)

    async def refresh(self) -> None:
        self._refreshed = time.monotonic()
        try:
            records = await asyncio.to_thread(self.kernel.quarantined)
        except UVMError as exc:
            log.warning("cannot read the quarantined methods: %s", exc)
            return
        self._quarantined = [
            QuarantinedMethod(holder=r["holder"], selector=r["selector"], reason=r["reason"],
                              request=r["request"], since=r["since"])
            for r in records[-MAX_QUARANTINED_REPORTED:]
        ]
