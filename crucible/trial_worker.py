"""The trial worker: ``python -m crucible.trial_worker CONFIG``, one trial, then gone.

Started by ``crucible.trial.TrialRunner`` ahead of time, it imports the image
machinery (and, for a ZEO image, opens a read-only client connection), says
``ready`` and blocks on its pipe. When the trial request arrives it

1. opens the image read-only (a ``FileStorage`` is opened only now, since a
   read-only FileStorage never sees commits made after it was opened);
2. begins a transaction, resolves the receiver, and only then limits itself:
   no core dumps, no new files (``RLIMIT_NOFILE``), no file writes
   (``RLIMIT_FSIZE`` 0), address space (``RLIMIT_AS``: what it holds now plus
   the live memory budget, ``memory_headroom``; glibc's arenas capped as live), and CPU (``ITIMER_PROF`` with its default action, which
   kills the process, backed by ``RLIMIT_CPU``);
3. installs the proposal on the receiver (a source as a method in the
   receiver's own slots, acts through ``uvm.acts.apply_acts``), sends the
   original message with ``uvm.dispatch.run_message`` inside a ``Cycle`` (the
   live kernel's path: the same budget scope, at most the live budget, the same
   errors), and ALWAYS aborts: the image never sees a trial;
4. answers one frame and exits.

Before it says ``ready`` (so off the trial's critical path, and before it has
read anything of the proposal or loaded any object of the image) a worker
whose config says ``confine`` locks itself with ``envs.confine.lock`` (no exec,
no fork, no signals to others, no namespaces, the kernel's dangerous surface
shut; ``network`` as the live incarnation has it), exactly as the live
incarnation does: the trial is the live path. A worker that cannot lock itself
exits with the reason on stderr instead of running anything. The answer says
``confined`` (what the lock applied, or false).

It dies with its parent (``PR_SET_PDEATHSIG``), and the parent kills its
process group when the wall-clock limit passes. Frames on the pipes are
``crucible.trial_frames``' (a 4-byte big-endian length then msgpack), the
parent's too. Protocol output goes to a private duplicate of stdout; fd 1 is
pointed at stderr so nothing else can corrupt it.

This module runs only in the worker process; the parent never imports it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time
from typing import Any

import ormsgpack

from .trial_frames import read_frame, write_frame

__all__ = ["main", "read_frame", "write_frame"]

_PR_SET_PDEATHSIG = 1
_RESULT_CHARS = 4000


def _die_with_parent(parent: int | None) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipe's EOF still ends an idle worker
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(0)  # the parent died before prctl took effect


def _vm_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_headroom(policy: int | None) -> int | None:
    """MiB the trial may add: the live budget (``envs.confine.memory_budget``, from
    ``BATOS_MEMORY_MB`` as the live incarnation has it, else the default), or the
    policy's value where that is smaller; None: no limit (live has none, nor the policy)."""
    from envs.confine import memory_budget

    live = memory_budget()
    if policy is None or (live is not None and live <= int(policy)):
        return live
    return int(policy)


def _limit(limits: dict[str, Any]) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    highest = max((int(n) for n in os.listdir("/proc/self/fd") if n.isdigit()), default=16)
    # a little room for what the storage opens lazily while loading objects
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 4, highest + 4))
    headroom = memory_headroom(limits.get("memory_mb"))
    limits["memory_mb"] = headroom  # what the messages below name
    if headroom is not None:
        from envs.confine import limit_arenas

        limit_arenas()
        memory = _vm_bytes() + headroom * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = float(limits["cpu_seconds"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    # the budget (uvm.budget, as live) stops the message at ``cpu``; these end the process
    # only past the grace, as the live watchdog does for code holding the GIL in C
    grace = _budget(limits).grace
    hard = int(used + cpu + grace) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (hard - 1, hard))
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # default action: terminate
    signal.setitimer(signal.ITIMER_PROF, cpu + grace)


def _budget(limits: dict[str, Any]) -> Any:
    """The trial's budget: the policy's limits, never laxer than the live one (BATOS_BUDGET_*)."""
    from uvm.budget import Limits

    live = Limits.from_env()
    return Limits(cpu=min(float(limits["cpu_seconds"]), live.cpu),
                  wall=min(float(limits["wall_seconds"]), live.wall), grace=live.grace)


def _short(value: Any) -> tuple[Any, bool]:
    text = repr(value)
    if len(text) <= _RESULT_CHARS:
        return value, False
    return text[:_RESULT_CHARS] + "...", True


def _failure(exc: BaseException, limits: dict[str, Any], phase: str) -> tuple[str, dict[str, str]]:
    from uvm.errors import (
        BudgetExceeded,
        DoesNotUnderstand,
        InvalidAct,
        MethodFailed,
        MethodSourceError,
        UnserializableResult,
        UVMError,
    )

    cause = exc.__cause__ or exc.__context__
    error = {"type": type(exc).__name__, "message": str(exc)[:2000]}
    limit = getattr(exc, "limit", "") if isinstance(exc, BudgetExceeded) else ""
    if limit == "cpu":
        return f"the trial used more than its CPU limit of {_budget(limits).cpu:g}s: {exc}", error
    if limit == "wall":
        return (f"the trial ran past the wall-clock limit of {_budget(limits).wall:g}s: "
                f"{exc}"), error
    if limit == "memory" or isinstance(exc, MemoryError) or isinstance(cause, MemoryError):
        return (f"the method ran out of memory (the trial allows {limits['memory_mb']} MB more "
                f"than the worker holds, as the live process does)"), error
    if isinstance(exc, MethodSourceError):
        return f"the proposal does not compile in the trial: {exc}", error
    if isinstance(exc, InvalidAct):
        return f"the acts do not apply: {exc}", error
    if isinstance(exc, UnserializableResult):
        return f"the result cannot leave the image: {exc}", error
    if isinstance(exc, DoesNotUnderstand):
        return f"{phase}: {exc}", error
    if isinstance(exc, MethodFailed):
        return f"the message failed: {exc}", error
    if isinstance(exc, UVMError):
        return f"{phase}: {type(exc).__name__}: {exc}", error
    return f"{phase} raised {type(exc).__name__}: {exc}", error


def _trial(db: Any, request: dict[str, Any], limits: dict[str, Any], answer: dict[str, Any]) -> None:
    import transaction

    from uvm.dispatch import run_message
    from uvm.obj import find_slot
    from uvm.registry import Cycle, Registry, using_cycle
    from uvm.selectors import slot_name
    from uvm.synthesis import install_proposal
    from uvm.values import from_plain

    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    phase = "opening the image"
    try:
        cycle = Cycle(conn, Registry(conn.root()), "crucible")
        with using_cycle(cycle):
            phase = "resolving the receiver"
            receiver = cycle.registry.resolve(request["receiver"])
            args = from_plain(list(request.get("args") or []), cycle.registry)
            _limit(limits)
            started = resource.getrusage(resource.RUSAGE_SELF)
            wall = time.perf_counter()
            try:
                phase = "installing the proposal"
                selector = request["selector"]
                # as the live install does: authored by the mind, Genesis protected
                install_proposal(cycle, receiver, selector, request, reason="crucible trial")
                if request.get("source") is None:
                    phase = "after the acts"
                    find_slot(receiver, slot_name(selector))
                phase = "running the message"
                result = run_message(receiver, selector, args, limits=_budget(limits))
                shown, truncated = _short(result)
                answer.update(status="pass", result=shown, result_truncated=truncated)
            finally:
                ended = resource.getrusage(resource.RUSAGE_SELF)
                answer["cpu_ms"] = round(((ended.ru_utime + ended.ru_stime)
                                          - (started.ru_utime + started.ru_stime)) * 1000, 3)
                answer["run_ms"] = round((time.perf_counter() - wall) * 1000, 3)
                answer["changed"] = bool(getattr(conn, "_registered_objects", ()))
    except BaseException as exc:  # noqa: BLE001
        # a single-use process: whatever the proposal raised (SystemExit included) is the
        # verdict; there is no caller whose cancellation this could swallow
        signal.setitimer(signal.ITIMER_PROF, 0)
        reason, error = _failure(exc, limits, phase)
        answer.update(status="fail", reasons=[reason], error=error)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        tm.abort()  # always: the image never sees a trial's effects
        conn.close()


def _confine(config: dict[str, Any]) -> dict[str, Any] | bool:
    """Lock this worker as the live incarnation is locked; exit 3 with the reason if it cannot.

    The environment (set by the fork-server's fixed table, ``crucible.trial_launch.worker_command``)
    overrides the argv: a request cannot ask for an unlocked worker or a wider network.
    """
    required = os.environ.get("BATOS_CONFINE_REQUIRED") == "1"
    if not (required or config.get("confine", True)):
        return False
    from envs.confine import lock
    from envs.errors import ConfinementUnavailable

    fixed = os.environ.get("BATOS_CONFINE_NETWORK")
    network = config.get("network") if fixed is None else fixed != "0"
    if network is None:
        network = True
    try:
        applied = lock(network=bool(network))
    except ConfinementUnavailable as exc:
        sys.stderr.write(f"the trial worker cannot confine itself: {exc}\n")
        sys.stderr.flush()
        os._exit(3)
    return {"seccomp": applied["seccomp"], "network": applied["network"]}


def main(argv: list[str]) -> int:
    import json

    config = json.loads(argv[0])
    # None inside bwrap: the parent there is the sandbox's init (--die-with-parent)
    _die_with_parent(None if config.get("parent") is None else int(config["parent"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    # everything the trial needs is imported now, while the worker is a spare
    import transaction  # noqa: F401
    import ZODB.FileStorage  # noqa: F401

    import uvm.acts  # noqa: F401
    import uvm.kernel  # noqa: F401 - installs the primitives as method globals
    import uvm.values  # noqa: F401
    from uvm import allowlist
    from uvm.budget import watchdog

    watchdog().start()  # its thread, before the lock
    from uvm.image import open_db

    if config.get("allowed_packages"):
        allowlist.set_allowed(allowlist.top_level_modules(config["allowed_packages"]))
    db = open_db(zeo=config["zeo"], read_only=True) if config.get("zeo") else None
    confined = _confine(config)
    write_frame(out, {"ready": True, "pid": os.getpid()})

    request = read_frame(0)
    if request is None:
        return 0
    answer: dict[str, Any] = {"status": "fail", "reasons": [], "confined": confined}
    opened = time.perf_counter()
    try:
        if db is None:
            db = open_db(config["path"], read_only=True, pool_size=1)
        answer["open_ms"] = round((time.perf_counter() - opened) * 1000, 3)
        _trial(db, request, request["limits"], answer)
    except Exception as exc:  # the image could not be opened: the trial did not run
        answer.update(status="error", reasons=[f"the worker could not open the image: {exc}"],
                      error={"type": type(exc).__name__, "message": str(exc)[:2000]})
    try:
        write_frame(out, answer)
    except (TypeError, ValueError, ormsgpack.MsgpackEncodeError) as exc:
        write_frame(out, {"status": "fail", "reasons": [f"the result cannot be sent back: {exc}"]})
    os._exit(0)  # skip interpreter teardown: nothing of the trial is worth closing cleanly


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
