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

The walk loads each reachable record once, at the snapshot of its own
connection, and unpickles it for real with the connection's class factory
(so every class and global a record names must import with this env's
libraries; ZODB's quiet ``Broken`` stand-ins are failures here), into a
fresh instance through ``__setstate__``; references resolve to the
connection's ghosts, as in a normal load. A failure is noted with oid and
class and the walk goes on. Over ZEO the records are prefetched ahead of the
loads. The checks then run one per transaction through
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

import hashlib
import importlib
import sys
import time
from collections.abc import Iterable
from typing import Any

import transaction
from persistent.list import PersistentList
from ZODB.broken import Broken
from ZODB.POSException import POSKeyError
from ZODB.serialize import ObjectReader, referencesf
from ZODB.utils import oid_repr, z64

from . import allowlist
from .budget import Limits
from .dispatch import run_message
from .errors import ImageError, UnknownTarget
from .genesis import verify
from .methods import Method, compile_method, imports_of
from .obj import UvmObject
from .pickles import ForbiddenClass
from .registry import Cycle, Registry, using_cycle

__all__ = ["MAX_FAILURES", "validate_image"]

MAX_FAILURES = 100
_WINDOW = 2048  # ZEO: records asked for ahead of the loads (a few MB of client cache)
CHECKS_NAME = "checks"


class _Failures(list[str]):
    """A capped list of failure lines that still counts what it left out."""

    def __init__(self) -> None:
        super().__init__()
        self.left_out = 0

    def add(self, line: str) -> None:
        if len(self) < MAX_FAILURES:
            self.append(line)
        else:
            self.left_out += 1

    def lines(self) -> list[str]:
        more = [f"... and {self.left_out} more failures"] if self.left_out else []
        return list(self) + more


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_imports(packages: Iterable[str], failures: _Failures) -> dict[str, str]:
    imports: dict[str, str] = {}
    for dist in sorted(set(packages)):
        modules = allowlist.distribution_modules(dist)
        if modules is None:
            imports[dist] = "not installed"
            failures.add(f"package {dist!r} is not installed in this env: the env build "
                         "did not install it; check the requirement and rebuild")
            continue
        for module in sorted(modules):
            try:
                importlib.import_module(module)
                imports[module] = "ok"
            except (Exception, SystemExit) as exc:  # any import failure is a finding
                imports[module] = f"{type(exc).__name__}: {exc}"
                failures.add(f"module {module!r} of package {dist!r} does not import in "
                             f"this env: {type(exc).__name__}: {exc}")
                continue
            if _missing_from_allowlist(module):
                failures.add(f"module {module!r} of package {dist!r} is not in the methods' "
                             "import allowlist: the incarnation must call "
                             "uvm.allowlist.set_allowed with its env's packages")
    return imports


def _missing_from_allowlist(module: str) -> bool:
    """A module an env could let methods import, which this process does not (stdlib,
    kernel machinery and private names are never taken from an env)."""
    return (module.isidentifier() and not module.startswith("_")
            and module not in sys.stdlib_module_names and module not in allowlist.NEVER_ALLOWED
            and not allowlist.is_allowed(module))


def _unavailable(source: str) -> list[str]:
    """Package modules ``source`` imports that this env does not give methods."""
    return sorted(m for m in imports_of(source) if _missing_from_allowlist(m))


class _Unimportable(Exception):
    """A class named in a record cannot be imported with this env's libraries."""


class _Reader(ObjectReader):
    """The connection's unpickling, plus: references are collected as they are met, and a
    class the DB's class factory can only answer with a ``Broken`` stand-in is an error
    (ZODB would quietly load a broken object; a candidate must not)."""

    def __init__(self, conn: Any) -> None:
        factory = conn.db().classFactory
        classes: dict[tuple[str, str], Any] = {}

        def strict(connection: Any, module: str, name: str) -> Any:
            cls = classes.get((module, name))
            if cls is None:
                cls = factory(connection, module, name)
                if isinstance(cls, type) and issubclass(cls, Broken):
                    raise _Unimportable(f"{module}.{name}")
                classes[module, name] = cls
            return cls

        # conn._cache: references resolve to the connection's own ghosts, exactly as
        # when the connection itself loads the object (ZODB's multi-db code does the same)
        super().__init__(conn, conn._cache, strict)
        self.refs: list[bytes] = []

    def _persistent_load(self, reference: Any) -> Any:
        # the references referencesf reports: (oid, class) or a bare oid; not weak/multi-db
        if type(reference) is tuple and type(reference[0]) is bytes:  # the common case
            self.refs.append(reference[0])
            return self.load_persistent(*reference)
        oid = reference[0] if isinstance(reference, tuple) else reference
        if isinstance(oid, str):
            oid = oid.encode("ascii")
        if isinstance(oid, bytes):
            self.refs.append(oid)
        return super()._persistent_load(reference)

    def load_record(self, data: bytes) -> Any:
        """A fresh instance with the record's state: ``getGhost`` + ``setGhostState`` in
        one unpickler pass."""
        unpickler = self._get_unpickler(data)
        klass = unpickler.load()
        args: Any = ()
        if isinstance(klass, tuple):
            klass, args = klass
            if isinstance(klass, tuple):  # an old record: (module, name)
                klass = self._get_class(*klass)
        obj = klass.__new__(klass, *(args or ()))
        self.obj = obj
        obj.__setstate__(unpickler.load())
        return obj


class _Walk:
    """One breadth-first pass over every object reachable from the root.

    Per oid: one load of the raw record at the connection's snapshot, then the
    record is unpickled for real (class, then state into a fresh instance with
    ``__setstate__``) by a reader that also collects the references. The fresh
    instance is not put in the connection's cache, so the cache stays small and
    nothing the walk does can be committed.

    Methods are checked on the way: an object's slots name its methods' owners,
    a method names its versions list, and the list holds the current source,
    which is compiled (or, if it imports a removed module, listed as stale).
    Breadth-first order meets owner, method and list in that order.
    """

    def __init__(self, removed: frozenset[str], failures: _Failures, deadline: float) -> None:
        self.removed = removed
        self.failures = failures
        self.deadline = deadline
        self.count = 0
        self.methods = 0
        self.complete = False
        self.digest = hashlib.sha256()
        self.problems = _Failures()  # methods that do not compile
        self.stale: list[dict[str, Any]] = []  # methods importing removed modules
        self.unavailable: list[dict[str, Any]] = []  # ... importing modules no env gives
        self._owners: dict[bytes, tuple[str, str]] = {}  # method oid -> (uuid, slot)
        self._histories: dict[bytes, bytes] = {}  # versions list oid -> method oid
        self._names: dict[type, bytes] = {}

    def run(self, conn: Any) -> None:
        # The connection's MVCC view: raw records at this transaction's snapshot
        # (db.storage.load would read the latest, racing concurrent commits).
        load = conn._storage.load
        reader = _Reader(conn)
        seen = {z64}
        order = [z64]  # breadth-first: every oid found, in the order it is loaded
        prefetched = 0
        position = 0
        while position < len(order):
            if prefetched - position < _WINDOW // 2 and prefetched < len(order):
                # ZEO: keep up to _WINDOW records in flight ahead of the loads, so the
                # server streams while this thread unpickles; FileStorage: a no-op
                upto = min(len(order), position + _WINDOW)
                conn.prefetch(order[prefetched:upto])
                prefetched = upto
                if time.perf_counter() > self.deadline:
                    self.failures.add(f"validation reached its time limit after {self.count} "
                                      f"objects ({len(order) - position} queued): the record "
                                      "is incomplete")
                    return
            oid = order[position]
            position += 1
            try:
                data, _serial = load(oid)
            except POSKeyError:
                self.failures.add(
                    f"object {oid_repr(oid)} is referenced but missing from the storage")
                continue
            self.count += 1
            for ref in self._unpickle(reader, oid, data):
                if ref not in seen:
                    seen.add(ref)
                    order.append(ref)
        self.complete = True

    def _unpickle(self, reader: _Reader, oid: bytes, data: bytes) -> list[bytes]:
        reader.refs = []
        reader.obj = None
        try:
            obj = reader.load_record(data)
            refs = sorted(set(reader.refs))
        except Exception as exc:
            obj = None
            self._fail(oid, reader.obj, exc)
            try:
                refs = sorted(set(referencesf(data)))  # still walk on through it
            except Exception:
                refs = []
        cls = type(obj)
        name = self._names.get(cls)
        if name is None:
            name = self._names[cls] = _class_name(cls).encode() if obj is not None else b"?"
        # oid (8 bytes), class name, then a counted list of 8-byte oids: unambiguous
        self.digest.update(b"%s%d:%s%d:%s" % (oid, len(name), name, len(refs), b"".join(refs)))
        if obj is not None:
            self._note_methods(oid, obj)
        return refs

    def _fail(self, oid: bytes, obj: Any, exc: Exception) -> None:
        cls = _class_name(type(obj)) if obj is not None else str(exc)
        forbidden = exc if isinstance(exc, ForbiddenClass) else None
        if forbidden is None and isinstance(exc.__cause__, ForbiddenClass):
            forbidden = exc.__cause__
        if forbidden is not None:
            why = (f"it names {forbidden.module}.{forbidden.name}, which is not a class the "
                   "image allows (uvm.pickles.ALLOWED); nothing of it was run")
            if obj is None:  # the record's own class is the forbidden global
                cls = f"{forbidden.module}.{forbidden.name}"
        elif isinstance(exc, _Unimportable) and obj is None:
            why = "its class cannot be imported with this env's libraries"
        elif isinstance(exc, _Unimportable):
            why = f"it refers to {exc}, which cannot be imported with this env's libraries"
        else:
            why = f"{type(exc).__name__}: {exc}"
        self.failures.add(f"object {oid_repr(oid)} of class {cls} does not unpickle: {why}")

    def _note_methods(self, oid: bytes, obj: Any) -> None:
        if isinstance(obj, UvmObject):
            for slot, value in obj._slots.items():
                if isinstance(value, Method):
                    self._owners[value._p_oid] = (obj._uuid, slot)
        elif isinstance(obj, Method) and oid in self._owners:
            # only methods in a slot: the ones kept after their slot was removed
            # (uvm.protection's dropped methods) are history, not code that runs
            versions = getattr(obj, "versions", None)  # a ghost: reading its oid loads nothing
            if isinstance(versions, PersistentList) and versions._p_oid is not None:
                self._histories[versions._p_oid] = oid
        elif oid in self._histories and isinstance(obj, PersistentList) and obj.data:
            self._check_method(self._histories.pop(oid), obj.data[-1].get("source", ""))

    def _check_method(self, method_oid: bytes, source: str) -> None:
        self.methods += 1
        uuid, slot = self._owners.pop(method_oid, ("?", oid_repr(method_oid)))
        if self.removed and any(module in source for module in self.removed):
            hits = imports_of(source) & self.removed
            if hits:
                self.stale.append({"object": uuid, "slot": slot, "modules": sorted(hits)})
                return
        try:
            compile_method(source)
        except Exception as exc:
            missing = _unavailable(source)
            if missing:  # broken before this handover (an earlier forced removal): noted
                self.unavailable.append({"object": uuid, "slot": slot, "modules": missing})
            else:
                self.problems.add(f"method {slot!r} of object {uuid} does not compile: {exc}")


def _walk(db: Any, walk: _Walk) -> None:
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        walk.run(conn)
    finally:
        tm.abort()
        conn.cacheMinimize()
        conn.close()


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
    from (default ``db``), e.g. the image's FileStorage opened read-only beside
    the ZEO server: several times faster than loading every record through ZEO
    (a read-only FileStorage takes no lock and stops before a transaction still
    being written). Genesis and the checks always run against ``db``.
    ``limits``: each self-check's budget (default ``Limits.from_env()``, the
    incarnation's own).
    """
    if isinstance(packages, str) or isinstance(removed_modules, str):
        raise TypeError("packages and removed_modules are lists of names, not one string")
    started = time.perf_counter()
    deadline = started + limit_seconds if limit_seconds is not None else float("inf")
    failures = _Failures()
    timings: dict[str, float] = {}

    mark = time.perf_counter()
    imports = _check_imports(packages, failures)
    timings["imports"] = time.perf_counter() - mark

    mark, cpu = time.perf_counter(), time.thread_time()
    walk = _Walk(frozenset(removed_modules), failures, deadline)
    _walk(db if walk_db is None else walk_db, walk)
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
    }
