"""Quarantined methods: methods whose messages killed an incarnation, kept from running.

When a request's execution killed incarnations (the supervisor answers it
``PoisonMessage``), the supervisor sends ``Quarantine`` and the incarnation
calls ``Kernel.quarantine``, which runs ``quarantine`` below in a transaction
of its own: the message's target and selector are resolved to the object that
holds the method (the same lookup dispatch does), and the method is marked.
Dispatching a marked method answers ``Quarantined`` (``check``) and runs
nothing, until a person releases it (``release``: ``Kernel.release``,
``batos quarantine release``).

The image keeps:

* ``root["batos.quarantine"]["active"]``: ``"<holder uuid> <slot>"`` -> a record
  ``{holder, selector, reason, request, since, by, method}`` (``method`` False when
  the message reached no method: it was not understood, or a data slot; then the
  record is kept and reported, and nothing is blocked);
* ``root["batos.quarantine"]["log"]``: every quarantine and release, appended
  (``{event, holder, selector, reason, request, when, by}``): the history of the
  quarantine, apart from the method's own version history, which only the
  method's definitions write;
* the mark itself on the ``Method`` (``MARK``, a copy of the record), so
  dispatch checks it without reading the root (``check``: both live in
  ``uvm.quarantine_mark``, below ``uvm.methods``, whose bound methods check it
  too; this module re-exports them).

Marking is idempotent: a method already quarantined keeps its first record.

A clone holds its own copy of each method (``uvm.object_primitives.clone_object``), so
the quarantine follows the code into clones: ``carry`` gives the copy of a marked
method the mark and an active record of its own (holder: the clone; the reason
names the original), so the clone is listed, refuses the message, and is
released per holder like any other. The mark is carried rather than keyed by the
source's digest: dispatch's check stays one attribute read on the method, never
a read of the root per message, and each quarantined method keeps one record a
person sees and releases.
Everything here runs inside a kernel cycle (a transaction); nothing commits.
"""

from __future__ import annotations

import time
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .errors import BadArguments
from .methods import Method
from .obj import UvmObject, find_slot
from .quarantine_mark import HOW_TO_RELEASE, MARK, check
from .registry import Cycle
from .selectors import slot_name

__all__ = ["HOW_TO_RELEASE", "KEY", "MARK", "carry", "check", "history", "listing", "quarantine",
           "release"]

KEY = "batos.quarantine"


def _store(root: Any) -> Any:
    store = root.get(KEY)
    if store is None:
        store = root[KEY] = PersistentMapping({"active": PersistentMapping(),
                                               "log": PersistentList()})
    return store


def _resolve(cycle: Cycle, target: Any, selector: str) -> tuple[UvmObject, str, Any]:
    if not isinstance(selector, str) or not selector:
        raise BadArguments(f"a selector is a non-empty string, got {selector!r}")
    receiver = cycle.registry.resolve(target)
    try:
        slot = slot_name(selector)
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    holder, value = find_slot(receiver, slot)
    return holder, slot, value


def quarantine(cycle: Cycle, target: Any, selector: str, *, reason: str = "",
               request: str = "", by: str = "") -> dict[str, Any]:
    """Mark the method ``selector`` reaches from ``target``; answers its record (plain)."""
    root = cycle.connection.root()
    try:
        holder, slot, value = _resolve(cycle, target, selector)
    except AttributeError:  # DoesNotUnderstand: the message reached no method
        holder, slot, value = cycle.registry.resolve(target), slot_name(selector), None
    key = f"{holder._uuid} {slot}"
    store = _store(root)
    existing = store["active"].get(key)
    if existing is not None:
        return dict(existing)
    record = {"holder": holder._uuid, "selector": selector,
              "reason": str(reason)[:2000], "request": str(request)[:128],
              "since": time.time(), "by": str(by or cycle.author)[:64],
              "method": isinstance(value, Method)}
    store["active"][key] = record
    store["log"].append({"event": "quarantined", "when": record["since"], **{
        k: record[k] for k in ("holder", "selector", "reason", "request", "by")}})
    if isinstance(value, Method):
        setattr(value, MARK, dict(record))
    return dict(record)


def carry(cycle: Cycle, original: Method, twin: Method, holder: UvmObject, slot: str) -> None:
    """``twin`` (``holder``'s copy of ``original`` in ``slot``, a clone being made) is
    quarantined too when ``original`` is, with a record of its own."""
    original._p_activate()  # a ghost's __dict__ is empty
    mark = original.__dict__.get(MARK)
    if mark is None:
        return
    since = time.time()
    record = {**mark, "holder": holder._uuid, "since": since,
              "reason": f"cloned from {mark.get('holder', '?')} while quarantined: "
                        f"{mark.get('reason', '')}"[:2000]}
    store = _store(cycle.connection.root())
    store["active"][f"{holder._uuid} {slot}"] = record
    store["log"].append({"event": "quarantined", "when": since, **{
        k: record.get(k, "") for k in ("holder", "selector", "reason", "request", "by")}})
    setattr(twin, MARK, dict(record))


def release(cycle: Cycle, target: Any, selector: str, *, by: str = "",
            reason: str = "") -> dict[str, Any]:
    """Lift the quarantine of the method ``selector`` reaches from ``target``; answers the
    record that was lifted, or raises ``BadArguments`` when it is not quarantined."""
    store = cycle.connection.root().get(KEY)
    try:
        holder, slot, value = _resolve(cycle, target, selector)
    except AttributeError:
        holder, slot, value = cycle.registry.resolve(target), slot_name(selector), None
    key = f"{holder._uuid} {slot}"
    record = store["active"].get(key) if store is not None else None
    if record is None:
        raise BadArguments(f"{selector!r} of {holder._uuid} is not quarantined")
    del store["active"][key]
    store["log"].append({"event": "released", "when": time.time(), "holder": holder._uuid,
                         "selector": record["selector"], "reason": str(reason)[:2000],
                         "request": record.get("request", ""), "by": str(by or cycle.author)[:64]})
    if isinstance(value, Method):
        value._p_activate()  # a ghost's __dict__ is empty
        if MARK in value.__dict__:
            delattr(value, MARK)
    return dict(record)


def listing(root: Any) -> list[dict[str, Any]]:
    """Every quarantined method, oldest first, as plain records."""
    store = root.get(KEY)
    if store is None:
        return []
    return sorted((dict(r) for r in store["active"].values()), key=lambda r: r["since"])


def history(root: Any) -> list[dict[str, Any]]:
    """Every quarantine and release, in order."""
    store = root.get(KEY)
    return [] if store is None else [dict(e) for e in store["log"]]
