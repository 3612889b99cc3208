"""One run of the suite: the checks in order against one server, each turned into a ``Result``.

``run(options)`` opens the suite's sockets, subscribes to the events before the first
check, runs the chosen checks (``--only``) in registration order and closes every
socket, whatever happened. A check that raises anything but ``Skipped`` fails; a
``KeyboardInterrupt`` ends the run. If the first check, ``reachable``, fails, the
rest are skipped (each would only wait out its timeout). ``on_result`` sees each
result as it is made, so a person watching sees progress.

The ``check_*`` modules are imported here (importing one registers its checks), and
``MODULES`` is the order the suite runs them in, each module's checks in the order it
registers them; the event checks come last, since they judge what the others provoked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from . import (
    check_builtins,
    check_errors,
    check_events,
    check_frames,
    check_handover,
    check_image,
    check_once,
    check_requests,
)
from .context import Context, Options
from .registry import CHECKS, FAIL, PASS, SKIP, Check, Failed, Result, Skipped, select
from .wire import Wire

__all__ = ["MODULES", "REACHABLE", "ordered", "run", "run_one"]

#: the check every other one needs
REACHABLE = "reachable"
CURVE_HINT = ("; if that TCP frontend requires CURVE, it answers no client without keys: run "
              "the suite against its ipc:// frontend")
MODULES = (check_requests, check_frames, check_errors, check_image, check_builtins, check_once,
           check_handover, check_events)


def ordered() -> list[Check]:
    """Every check, in the order the suite runs them."""
    rank = {module.__name__: index for index, module in enumerate(MODULES)}
    return sorted(CHECKS, key=lambda c: rank[c.module])


def run_one(ctx: Context, chk: Check) -> Result:
    started = time.monotonic()
    try:
        said = chk.run(ctx)
        outcome, reason = PASS, said or ""
    except Skipped as exc:
        outcome, reason = SKIP, str(exc)
    except (Failed, AssertionError) as exc:
        outcome, reason = FAIL, str(exc) or type(exc).__name__
    except Exception as exc:  # a check must never stop the suite: a crash is a failure
        outcome, reason = FAIL, f"crashed: {type(exc).__name__}: {exc}"
    return Result(chk.name, chk.section, outcome, reason, time.monotonic() - started)


def run(options: Options, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Every chosen check against ``options.endpoint``; the results in order."""
    every = ordered()
    chosen = select(every, list(options.only))
    results: list[Result] = []
    wire = Wire(options.endpoint, timeout=options.timeout)
    try:
        ctx = Context(options, wire)
        reach = next(c for c in every if c.name == REACHABLE)
        first = run_one(ctx, reach)
        if first.failed and options.endpoint.startswith("tcp://"):
            first = replace(first, reason=first.reason + CURVE_HINT)
        unreachable = first.reason if first.failed else None
        if unreachable is None:
            ctx.open_events()
        elif reach not in chosen:
            chosen.insert(0, reach)  # say why everything else was skipped
        for chk in chosen:
            if chk.name == REACHABLE:
                result = first
            elif unreachable is not None:
                result = Result(chk.name, chk.section, SKIP,
                                f"the server did not answer a ping: {unreachable}")
            else:
                result = run_one(ctx, chk)
                ctx.drain()
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        wire.close()
    return results
