"""Validation: a candidate incarnation proves itself against the image before a handover.

``validate_image(db, packages=..., removed_modules=...)`` answers a plain,
JSON-able record:

    ok          no failures (methods importing removed modules do not count:
                the supervisor refuses the handover for them unless forced)
    failures    one actionable line each, at most ``MAX_FAILURES`` (+ a count)
    imports     {module: "ok" | error} for the top-level modules of ``packages``
                (a package that is not installed: {name: "not installed"})
    objects     persistent objects reachable from the root, each unpickled
    methods     method sources compiled on the way
    digest      sha256 of the graph's shape: per object, breadth-first from the
                root, children by oid: its oid, class and referenced oids (no
                data values), so two incarnations of one unchanged image agree
    genesis     the Genesis table's problems (``uvm.genesis.verify``) and every
                method that does not compile under this process's allowlist
    checks      {check: "ok" | why}: the image's self-checks (``checks`` object)
    methods_importing_removed   [{object, slot, modules}]: methods whose source
                imports a module in ``removed_modules`` (not compiled)
    methods_importing_unavailable   [{object, slot, modules}]: methods that do not
                compile only because they import packages this env does not have
                and this handover did not remove: broken before it (a forced
                removal), so noted, not failed
    allowed     the package modules this process lets methods import
    timings     {phase: seconds}; rate: objects unpickled per second (wall)
    feed        how the walk read the records (``uvm.record_feed``): "zeo" (pipelined
                loads on the ZEO client's own connection) or "storage"

The walk (``uvm.image_walk``) loads each reachable record once, at the
snapshot of its own connection, through the database it is given (the
incarnation's own ZEO client: never the file behind the server), and
unpickles it for real with this env's libraries; a failure is noted with oid
and class and the walk goes on.
The checks then run one per transaction through
``uvm.dispatch.run_message``, each under the message budget ``limits``
(``uvm.budget.Limits``; default from ``BATOS_BUDGET_*``): a check over it is a
``BudgetExceeded`` failure naming the check, never a hang, since the checks
are image code like any other. Every transaction here is aborted: validation
never writes.

Boundaries: synchronous and slow for big images (seconds): run it in a
worker thread (``asyncio.to_thread``), never in an event loop. It opens its
own connections (one at a time, all in the calling thread); what it unpickles
never enters the connection cache. Methods compile under the process's
current allowlist: the incarnation must have called
``uvm.allowlist.set_allowed`` before validating. ``limit_seconds`` bounds the
walk only; each check has its own budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import transaction

from . import allowlist
from .budget import Limits
from .dispatch import run_message
from .env_imports import check_imports
from .errors import ImageError, UnknownTarget
from .genesis import verify
from .image_walk import MAX_FAILURES, Failures, Walk, walk_image
from .methods import Method
from .registry import Cycle, Registry, using_cycle

__all__ = ["MAX_FAILURES", "validate_image"]

CHECKS_NAME = "checks"


def _run_checks(db: Any, limits: Limits) -> dict[str, str]:
    """Each method of ``checks`` run as a message under ``limits`` in its own
    transaction, always aborted."""
    results: dict[str, str] = {}
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        try:
            holder = Registry(conn.root()).resolve(CHECKS_NAME)
            names = sorted(n for n, v in holder._slots.items() if isinstance(v, Method))
        except (UnknownTarget, ImageError):
            names = []  # verify reports what is missing
        finally:
            tm.abort()
        for name in names:
            tm.begin()
            try:
                registry = Registry(conn.root())
                with using_cycle(Cycle(conn, registry, "validation")):
                    answer = run_message(registry.resolve(CHECKS_NAME), name, [],
                                         limits=limits, request_id=f"validation:{name}")
                results[name] = "ok" if answer is True else f"answered {answer!r}, not True"
            except Exception as exc:  # a failing check is a finding, whatever it raised
                results[name] = f"{type(exc).__name__}: {exc}"
            finally:
                tm.abort()
        return results
    finally:
        conn.close()


def _by_owner(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["object"], entry["slot"]


def validate_image(
    db: Any,
    *,
    packages: Iterable[str] = (),
    removed_modules: Iterable[str] = (),
    limit_seconds: float | None = None,
    walk_db: Any | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """The validation record of the image in ``db`` under this process's libraries.

    ``packages``: distribution names of the env spec (their top-level modules must
    import); ``removed_modules``: top-level modules an evolve removed (methods still
    importing them are listed, not failed); ``limit_seconds``: stop the walk there
    and fail, rather than run on. ``walk_db``: where the walk loads the objects
    from (default ``db``: the incarnation passes its own ZEO database, through which
    the walk runs at about 80% of its speed over the file, see ``uvm.image_walk``).
    Genesis and the checks always run against ``db``.
    ``limits``: each self-check's budget (default ``Limits.from_env()``, the
    incarnation's own).
    """
    if isinstance(packages, str) or isinstance(removed_modules, str):
        raise TypeError("packages and removed_modules are lists of names, not one string")
    started = time.perf_counter()
    deadline = started + limit_seconds if limit_seconds is not None else float("inf")
    failures = Failures()
    timings: dict[str, float] = {}

    mark = time.perf_counter()
    imports = check_imports(packages, failures)
    timings["imports"] = time.perf_counter() - mark

    mark, cpu = time.perf_counter(), time.thread_time()
    walk = Walk(frozenset(removed_modules), failures, deadline)
    walk_image(db if walk_db is None else walk_db, walk)
    timings["objects"] = walk_seconds = time.perf_counter() - mark
    timings["objects_cpu"] = time.thread_time() - cpu  # vs wall: time lost to contention/IO

    genesis: list[str] = []
    checks: dict[str, str] = {}
    if not walk.complete:
        failures.add("the Genesis invariants and self-checks were not run: time limit reached")
    else:
        mark = time.perf_counter()
        genesis, _counts = verify(db, compile_methods=False)  # the walk compiled the methods
        genesis += walk.problems.lines()
        timings["genesis"] = time.perf_counter() - mark
        for problem in genesis:
            failures.add(f"genesis: {problem}")
        mark = time.perf_counter()
        checks = _run_checks(db, limits if limits is not None else Limits.from_env())
        timings["checks"] = time.perf_counter() - mark
        for name, outcome in checks.items():
            if outcome != "ok":
                failures.add(f"self-check {name} failed: {outcome}")
    timings["total"] = time.perf_counter() - started
    return {
        "ok": not failures,
        "failures": failures.lines(),
        "imports": imports,
        "objects": walk.count,
        "methods": walk.methods,
        "digest": walk.digest.hexdigest() if walk.complete else "",
        "genesis": genesis,
        "checks": checks,
        "methods_importing_removed": sorted(walk.stale, key=_by_owner),
        "methods_importing_unavailable": sorted(walk.unavailable, key=_by_owner),
        "allowed": sorted(allowlist.package_modules()),
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "rate": round(walk.count / walk_seconds, 1) if walk_seconds > 0 else 0.0,
        "feed": walk.feed,
    }
