"""Genesis protection: the slots and names of the Genesis objects that only a person changes.

The Genesis table (``uvm.genesis_table``) declares, at import, which slots of which
Genesis object are protected: its ``name``, its ``parent*``, ``truthValue``
(what ``truth`` believes) and every method the table plants (``clone``,
``doesNotUnderstand:``, the booleans' branches, the checks, ...). Data slots
that hold runtime state (descriptions, ``maxIterations``, the weaver's adapters
and facets) are not protected. New slots on a Genesis object are not
protected either: the mind may add a selector to ``genesis``.

A *protected change* is writing or removing a protected slot (``set_slot``,
``remove_slot``, an attribute write from method code, ``ADD_SLOT`` and
``REMOVE_SLOT`` acts), defining or rolling back a protected method, and
re-pointing a Genesis name to another object. It is allowed only as a person's
explicit request, and then recorded (``become:`` with a Genesis object, which
would swap every protected slot at once, is refused to anyone):

* never inside a proposal from the mind (``Cycle.proposal``: the synthesis
  install path and the crucible's trial, ``uvm.synthesis.install_proposal``),
  nor in a message whose author is the mind;
* never when code other than the Genesis methods themselves is running: a
  method a person or the mind wrote, or a method source's default values
  being evaluated, anywhere on the calling thread's stack. So the person's
  message must go straight to a Genesis primitive method (``defineMethod:
  source:``, ``removeSlot:``, ``applyActs:``, ``registerAs:``, ``become:``...);
  code the mind wrote cannot do it later on a person's behalf either;
* each allowed one appends an entry (time, author, object, slot, action) to
  the image's Genesis change log (``root["batos.genesis.changes"]``), and a
  method's own history records its new version as well.

History is append-only for every method, not only Genesis ones: a method slot
that is removed or overwritten keeps its ``Method`` (and so every version,
author and verdict) in ``root["batos.methods.dropped"]``, with who dropped it.

Some Genesis state is kept by the Genesis object's own functions rather than
written as slots: the weaver's inquiry settings (``setInquiry:to:``) and which
adapter serves a facet (``switchFacet:to:``, whose facet objects are the
weaver's *members*: every slot of one protected, ``become:`` with one refused).
The containers its protected ``inquiry`` and ``facets`` slots hold are guarded
in place too (``c[k] = v``, ``update``, ``del``...: ``uvm.obj``'s container hook).
Those functions call ``check_member``, with the same rule: a person's request
straight to the Genesis method, or the kernel's own message (the inquiry loop),
never a proposal or method code on the stack.

Outside any message (bootstrap, tooling with its own connection) there is no
cycle and nothing is checked: those run with the operator's authority.

Threads: the check runs on the message's thread and reads only that thread's
stack and cycle.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from . import obj as _obj
from . import registry as _registry
from .errors import ImageError, Protected
from .registry import Cycle, current

__all__ = [
    "CHANGES_KEY", "DROPPED_KEY", "MIND_AUTHOR", "Protected", "check_become", "check_member",
    "check_name", "check_slot", "declare", "declare_members", "is_member", "protected_slots",
]

MIND_AUTHOR = "mind"
CHANGES_KEY = "batos.genesis.changes"
#: methods whose slot was removed or overwritten, kept with their whole history
DROPPED_KEY = "batos.methods.dropped"
MAX_LOG = 10_000

#: Genesis name -> its protected slot names; slot name -> the Genesis names protecting it
_protected: dict[str, frozenset[str]] = {}
_by_slot: dict[str, tuple[str, ...]] = {}
#: method sources of the Genesis table: the only code that may act on a person's request
_trusted_sources: tuple[str, ...] = ()
#: Genesis name -> (its mapping slot, the ``name`` prefix of the objects that mapping
#: holds): those objects are part of the Genesis object (the weaver's facet objects),
#: every slot of them protected, ``become:`` with them refused
_members: dict[str, tuple[str, str]] = {}
#: (Genesis name, slot) of protected slots holding a container: written in place
#: (``c[k] = v``, ``append``, ``del``...) only as the slot itself is written
_containers: tuple[tuple[str, str], ...] = ()


def declare(table: Mapping[str, Iterable[str]], trusted_sources: Iterable[str]) -> None:
    """Set the protected slots per Genesis name and the Genesis method sources (genesis.py)."""
    global _trusted_sources
    _protected.clear()
    _protected.update({name: frozenset(slots) for name, slots in table.items()})
    by_slot: dict[str, list[str]] = {}
    for name, slots in _protected.items():
        for slot in slots:
            by_slot.setdefault(slot, []).append(name)
    _by_slot.clear()
    _by_slot.update({slot: tuple(names) for slot, names in by_slot.items()})
    _trusted_sources = tuple(trusted_sources)


def declare_members(table: Mapping[str, tuple[str, str]],
                    containers: Iterable[tuple[str, str]] = ()) -> None:
    """Set the Genesis objects' member objects (name -> (mapping slot, name prefix)) and
    the protected slots whose container is guarded in place ((name, slot) pairs)."""
    global _containers
    _members.clear()
    _members.update(table)
    _containers = tuple(containers)


def protected_slots() -> dict[str, frozenset[str]]:
    return dict(_protected)


def _cycle() -> Cycle | None:
    try:
        return current()
    except ImageError:
        return None


def _genesis_names(cycle: Cycle, obj: Any, candidates: Iterable[str]) -> list[str]:
    uuid = getattr(obj, "_uuid", None)
    if type(uuid) is not str:
        return []
    names = cycle.registry.names
    return [n for n in candidates if names.get(n) == uuid]


def check_slot(obj: Any, slot: str, action: str) -> None:
    """Raise ``Protected`` unless changing ``obj``'s ``slot`` is allowed here (see module)."""
    candidates = _by_slot.get(slot)
    if not candidates:
        return
    cycle = _cycle()
    if cycle is None:
        return
    which = _genesis_names(cycle, obj, candidates)
    if which:
        _permit(cycle, f"{which[0]}.{slot}", action, which[0], slot)


def check_name(obj: Any, name: str) -> None:
    """Registering ``name`` for ``obj``: a Genesis name may not be re-pointed elsewhere."""
    if name not in _protected:
        return
    cycle = _cycle()
    if cycle is None:
        return
    current_uuid = cycle.registry.names.get(name)
    if current_uuid is None or current_uuid == obj._uuid:
        return
    _permit(cycle, name, "re-point the Genesis name", name, "")


def _member_of(cycle: Cycle, obj: Any) -> tuple[str, str] | None:
    """(Genesis name, key) when ``obj`` is an object the Genesis object's member mapping
    holds now (``declare_members``), else None. The ``name`` prefix is a cheap first
    test, and it holds: a member's ``name`` is itself one of its protected slots."""
    slots = getattr(obj, "_slots", None)
    if type(slots) is not dict or not _members:
        return None
    label = slots.get("name")
    if type(label) is not str:
        return None
    for genesis, (slot, prefix) in _members.items():
        if not label.startswith(prefix):
            continue
        uuid = cycle.registry.names.get(genesis)
        owner = cycle.registry.objects.get(uuid) if uuid is not None else None
        held = getattr(owner, "_slots", {}).get(slot)
        if held is None or not hasattr(held, "items"):
            continue
        for key, value in held.items():
            if value is obj:
                return genesis, str(key)
    return None


def is_member(obj: Any) -> bool:
    """Whether ``obj`` is one of a Genesis object's member objects now (outside a message: no)."""
    cycle = _cycle()
    return cycle is not None and _member_of(cycle, obj) is not None


def check_member(genesis: Any, key: str, action: str) -> None:
    """Raise ``Protected`` unless ``action`` on the Genesis object's state is allowed here.

    For changes a Genesis object's own functions make to the state it keeps for the
    operator (the weaver's inquiry settings, switching a facet): allowed, and logged,
    only as a person's request sent straight to its Genesis method, or as the kernel's
    own message (the inquiry loop sends ``switchFacet:to:`` the same way).
    ``genesis`` is the receiver; nothing is checked unless it is the Genesis object
    whose name ``key`` starts with (``"weaver.inquiry"``), or a clone still sharing
    one of its member objects (checked by the caller with ``is_member``).
    """
    cycle = _cycle()
    if cycle is None:
        return
    name, _, slot = key.partition(".")
    if genesis is not None and cycle.registry.names.get(name) != getattr(genesis, "_uuid", None):
        return
    _permit(cycle, key, action, name, slot)


def check_become(a: Any, b: Any) -> None:
    """``become:`` swaps every slot at once: with a Genesis object it is refused to anyone.

    Nothing legitimate needs it (a person changes a Genesis slot one by one), and a
    person's innocent request could be steered into it by data that method code
    planted (e.g. a facet entry pointing at ``traits`` before ``switchFacet:to:``).
    """
    cycle = _cycle()
    if cycle is None:
        return
    for one in (a, b):
        which = _genesis_names(cycle, one, _protected)
        member = _member_of(cycle, one)
        if member is not None:
            raise Protected(
                f"become: with {member[0]}'s member object {member[1]!r} is refused: it is "
                f"part of the Genesis object {member[0]!r} and changes only through its "
                "Genesis methods (switchFacet:to:)",
                what=f"{member[0]}.{member[1]}", action="become:",
            )
        if which:
            raise Protected(
                f"become: with the Genesis object {which[0]!r} is refused: it would swap every "
                "protected slot at once; a person changes a Genesis slot one at a time "
                "(defineMethod:source:, setSlot:value:, applyActs:)",
                what=which[0], action="become:",
            )


def _permit(cycle: Cycle, what: str, action: str, name: str, slot: str) -> None:
    if cycle.proposal or cycle.author == MIND_AUTHOR:
        raise Protected(
            f"a proposal from the mind may not {action} {what}: the Genesis objects' "
            "protected slots and names change only by a person's explicit request",
            what=what, action=action,
        )
    code = _untrusted_code()
    if code is not None:
        raise Protected(
            f"method code ({code}) may not {action} {what}: a protected Genesis slot or name "
            "changes only by a person's explicit request sent straight to a Genesis method "
            "(defineMethod:source:, removeSlot:, setSlot:value:, applyActs:, registerAs:)",
            what=what, action=action,
        )
    _record(cycle, name, slot, action)


def _record(cycle: Cycle, name: str, slot: str, action: str) -> None:
    root = cycle.connection.root()
    log = root.get(CHANGES_KEY)
    if type(log) is not PersistentList:
        log = root[CHANGES_KEY] = PersistentList()
    log.append(PersistentMapping({
        "time": time.time(), "author": str(cycle.author), "object": name,
        "uuid": cycle.registry.names.get(name), "slot": slot, "action": action,
    }))
    if len(log) > MAX_LOG:
        del log[: len(log) - MAX_LOG]


def _trusted_codes() -> set[Any]:
    from .methods import cached_function

    codes: set[Any] = set()
    for source in _trusted_sources:
        try:
            func = cached_function(source)
        except Exception:  # noqa: S112 - a source that does not compile here trusts nothing
            continue
        func = getattr(func, "__wrapped__", func)
        todo = [func.__code__]
        while todo:  # with the code of comprehensions and lambdas inside it
            code = todo.pop()
            codes.add(code)
            todo.extend(c for c in code.co_consts if type(c) is type(code))
    return codes


def _untrusted_code() -> str | None:
    """The first frame on this thread's stack running code that is neither a loaded
    module's nor a Genesis method's (i.e. method source), named; None if there is none."""
    frame = sys._getframe(1)
    trusted: set[Any] | None = None
    while frame is not None:
        module = sys.modules.get(frame.f_globals.get("__name__"))  # type: ignore[arg-type]
        if module is None or getattr(module, "__dict__", None) is not frame.f_globals:
            if trusted is None:
                trusted = _trusted_codes()
            if frame.f_code not in trusted:
                return f"{frame.f_code.co_name} in {frame.f_code.co_filename}"
        frame = frame.f_back
    return None


def _guard(obj: Any, slot: str, action: str) -> None:
    if slot in _by_slot:
        check_slot(obj, slot, action)
    if _members:
        cycle = _cycle()
        member = _member_of(cycle, obj) if cycle is not None else None
        if member is not None:
            _permit(cycle, f"{member[0]}.{member[1]}.{slot}", action, member[0], slot)


def _container(container: Any) -> None:
    """An image container is about to change in place: refused like a write of the
    protected slot that holds it (``_containers``), if one does."""
    if not _containers:
        return
    cycle = _cycle()
    if cycle is None:
        return
    names, objects = cycle.registry.names, cycle.registry.objects
    for genesis, slot in _containers:
        uuid = names.get(genesis)
        owner = objects.get(uuid) if uuid is not None else None
        if owner is not None and owner._slots.get(slot) is container:
            _permit(cycle, f"{genesis}.{slot}", "change in place", genesis, slot)
            return


def _dropped(obj: Any, slot: str, method: Any) -> None:
    """A method slot was removed or overwritten: keep the method, history and all."""
    cycle = _cycle()
    if cycle is None:
        return
    root = cycle.connection.root()
    kept = root.get(DROPPED_KEY)
    if type(kept) is not PersistentList:
        kept = root[DROPPED_KEY] = PersistentList()
    kept.append(PersistentMapping({
        "time": time.time(), "author": str(cycle.author), "uuid": obj._uuid, "slot": slot,
        "method": method,
    }))


_obj.set_slot_guard(_guard, _dropped, _container)
_registry.set_name_guard(check_name)
