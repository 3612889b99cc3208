"""The Genesis bootstrap and the Phase 1 check, from one table.

``bootstrap`` plants what of the Genesis table (``uvm.genesis_table``:
objects, parents, slots; the self-checks in ``uvm.genesis_checks``) is
missing and nothing else, so running it twice changes nothing (not even a new
transaction), and it never overwrites a slot the image has since redefined;
it upgrades a slot still holding a source a later Genesis version superseded,
and converts an older image's slot containers once (``uvm.conversion``).
``verify`` reads the image in a separate connection and reports everything
the table requires that is missing or does not compile, every record naming
a class the image does not allow, and every container not in image form.

The table's names stay importable from here (``GENESIS``, ``CHECK_METHODS``,
``GENESIS_VERSION``, ``SUPERSEDED``).

Boundary: each function opens its own connection and transaction manager and
ends its transaction (committed or aborted) before it returns.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import transaction

from . import conversion
from .errors import ImageError, UnknownTarget
from .genesis_checks import CHECK_METHODS
from .genesis_table import GENESIS, GENESIS_VERSION, SUPERSEDED, is_source
from .methods import Method, compile_method
from .obj import UvmObject, write_slot
from .pickles import forbidden_records
from .registry import Registry
from .replies import ReplyStore
from .selectors import PARENT_SLOT

__all__ = ["CHECK_METHODS", "GENESIS", "GENESIS_VERSION", "SUPERSEDED", "BootstrapReport",
           "bootstrap", "verify"]

META_KEY = "batos.genesis"
#: root key: the version of the container conversion this image went through (uvm.conversion)
CONTAINERS_KEY = "batos.containers"
CONTAINERS_VERSION = 1
log = logging.getLogger("batos.genesis")


@dataclass
class BootstrapReport:
    created_objects: list[str] = field(default_factory=list)
    added_slots: list[str] = field(default_factory=list)
    #: an older image's slot containers made ImageMapping/ImageList (None: not run)
    converted_containers: int | None = None
    #: the containers that could not be converted, each named
    unconverted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created_objects or self.added_slots
                    or self.converted_containers is not None)


def _upgrade(current: Any, name: str, slot: str, source: Any) -> bool:
    old = SUPERSEDED.get((name, slot))
    if not old or not isinstance(current, Method) or current.source == source:
        return False
    last = current.versions[-1]
    if last["author"] != "genesis" or last["source"] not in old:
        return False
    current.define(source, author="genesis", reason=f"genesis {GENESIS_VERSION} upgrade")
    return True


def _convert_containers(root: Any, registry: Registry, report: BootstrapReport) -> None:
    """Once per image (the root's mark): an older image's slot containers become image
    containers (``uvm.conversion``). An image with the mark costs one root read."""
    if root.get(CONTAINERS_KEY) == CONTAINERS_VERSION:
        return
    done = conversion.convert(list(registry.objects.values()))
    root[CONTAINERS_KEY] = CONTAINERS_VERSION
    report.converted_containers = done.converted
    report.unconverted = done.problems
    if done.converted:
        log.info("converted %d slot containers to ImageMapping/ImageList", done.converted)
    for problem in done.problems:
        log.warning("container not converted: %s", problem)


def bootstrap(db: Any) -> BootstrapReport:
    """Plant whatever of ``GENESIS`` is missing, in one transaction; commit only if anything was."""
    report = BootstrapReport()
    tm = transaction.TransactionManager(explicit=True)
    txn = tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        if Registry.ensure(root):
            report.added_slots.append("registry")
        if not ReplyStore.exists(root):
            ReplyStore(root)
            report.added_slots.append("replies")
        registry = Registry(root)
        objects: dict[str, UvmObject] = {}
        for name in GENESIS:
            try:
                objects[name] = registry.resolve(name)
            except UnknownTarget:
                objects[name] = registry.register(UvmObject(), name=name)
                report.created_objects.append(name)
        for name, (parent, slots) in GENESIS.items():
            obj = objects[name]
            if parent is not None and PARENT_SLOT not in obj._slots:
                write_slot(obj, PARENT_SLOT, objects[parent])
                report.added_slots.append(f"{name}.{PARENT_SLOT}")
            for slot, value in slots.items():
                if slot in obj._slots:
                    if _upgrade(obj._slots[slot], name, slot, value):
                        report.added_slots.append(f"{name}.{slot} (upgraded)")
                    continue
                if is_source(value):
                    value = Method(value, author="genesis", reason="genesis bootstrap")
                write_slot(obj, slot, value)
                report.added_slots.append(f"{name}.{slot}")
        _convert_containers(root, registry, report)
        if report.changed:
            root[META_KEY] = {"version": GENESIS_VERSION, "bootstrapped": time.time()}
            txn.setUser("genesis")
            txn.note("batos bootstrap")
            tm.commit()
        else:
            tm.abort()
        return report
    except BaseException:
        tm.abort()
        raise
    finally:
        conn.close()


def verify(
    db: Any, *, compile_methods: bool = True, records: bool | None = None
) -> tuple[list[str], dict[str, int]]:
    """Phase 1 check: (problems, counts). No problems means every Genesis slot is there,
    every method in the image compiles (under this process's import allowlist), no
    record reachable from the root names a class the image does not allow, and every
    dict and list in a slot is an image container with str keys (``uvm.conversion``).

    ``compile_methods=False`` checks the table only, without loading every object:
    ``uvm.validation`` compiles the methods itself during its walk over the image.
    ``records`` (default: as ``compile_methods``) reads every record's class names
    (``uvm.pickles.forbidden_records``); validation unpickles each record itself.
    """
    if records is None:
        records = compile_methods
    problems: list[str] = []
    counts = {"objects": 0, "methods": 0, "genesis_slots": 0}
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        try:
            registry = Registry(root)
        except Exception as exc:
            return [str(exc)], counts
        for name, (parent, slots) in GENESIS.items():
            try:
                obj = registry.resolve(name)
            except UnknownTarget:
                problems.append(f"object {name!r} is missing from the registry")
                continue
            except ImageError as exc:
                problems.append(f"object {name!r} does not load: {exc}")
                continue
            try:
                obj._p_activate()
            except ImageError as exc:
                problems.append(f"object {name!r} does not load: {exc}")
                continue
            if parent is not None:
                want = registry.names.get(parent)
                got = obj._slots.get(PARENT_SLOT)
                if not isinstance(got, UvmObject) or got._uuid != want:
                    problems.append(f"{name}.{PARENT_SLOT} does not point at {parent!r}")
            for slot, value in slots.items():
                if slot not in obj._slots:
                    problems.append(f"slot {name}.{slot} is missing")
                elif is_source(value) and not isinstance(obj._slots[slot], Method):
                    problems.append(f"slot {name}.{slot} should hold a method")
                else:
                    counts["genesis_slots"] += 1
        if records:
            problems.extend(forbidden_records(db))
        for uuid, obj in registry.objects.items() if compile_methods else ():
            counts["objects"] += 1
            try:
                slots = list(obj._slots.items())
            except ImageError as exc:  # e.g. a record naming a forbidden class: not loaded
                problems.append(f"object {uuid} does not load: {exc}")
                continue
            for slot, value in slots:
                if isinstance(value, Method):
                    counts["methods"] += 1
                    try:
                        compile_method(value.source)
                    except Exception as exc:
                        problems.append(f"method {slot!r} of object {uuid} does not compile: {exc}")
        if compile_methods:
            problems.extend(conversion.problems(registry.objects.values()))
        return problems, counts
    finally:
        tm.abort()
        conn.close()
