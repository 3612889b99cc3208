"""UvmObject: the one kind of object in the image, and slot lookup by delegation.

An object's state and behaviour live in one ``_slots`` mapping. Data slots
hold storable values (see ``storable``); method slots hold ``Method`` objects
(``uvm.methods``). The ``parent*`` slot holds one object or a list of objects
that lookup delegates to, in order.

Lookup order is depth-first, parents in list order, each object visited once
(so cycles in the parent graph are harmless): the receiver's own slots first,
then its first parent and that parent's ancestors, then the second parent, and
so on. The first slot found wins.

Python attribute syntax maps onto slots: ``obj.x = v`` writes the slot ``x``
and marks the object changed; ``obj.x`` looks ``x`` up through delegation and
raises ``DoesNotUnderstand`` (an ``AttributeError``) when the chain is
exhausted. Names starting with ``_`` are never slots: they are the object's
own machinery (``_slots``, ``_uuid``, persistence's ``_p_`` and ``_v_``), read
as persistence reads them; every other name is a slot (``__getattribute__``,
so a slot read costs no failed attribute lookup first). A slot
written anew must have its name in NFKC form (``check_slot_name``, the rule of
``lexicon.names``), so no slot is spelled like machinery (``\uff3fslots``) or
like another slot.

Where delegation found a slot is remembered (``uvm.slot_cache``: the rules of
when an answer goes stale are there). This module tells the cache of every change
of an object's shape it makes or sees: a slot gained or removed, ``parent*``
written, ``_slots`` replaced, ``_p_changed`` set by code that mutated ``_slots``
in place, a list of parents changed in place, and persistence's invalidations
(another connection's commit, an abort). Writing a new value into an existing
slot is not a change of shape: a cached lookup re-reads the value.

This module knows nothing of transactions or of the registry; callers that
need those (the kernel, the primitives) bring them.
"""

from __future__ import annotations

import uuid as _uuidlib
from collections.abc import Callable
from typing import Any

from persistent import Persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from lexicon.names import slot_name_problem

from .containers import (
    SCALAR_TYPES,
    ConvertingList,
    ConvertingMapping,
    check_key,
    set_container_guard,
    type_name,
)
from .errors import DoesNotUnderstand, InvalidValue
from .selectors import PARENT_SLOT, slot_name
from .slot_cache import ENTRIES, STATE, changed, remember, touched

__all__ = ["IMAGE_CONTAINERS", "ImageList", "ImageMapping", "UvmObject", "check_slot_name", "find_slot",
           "label", "register_method_type", "set_slot_guard", "storable", "storable_item",
           "write_slot"]

_MISSING = object()
# Single-parent chains are followed without a visited set up to this depth;
# past it (or at the first list of parents) lookup switches to the general,
# cycle-safe search.
_FAST_DEPTH = 64
# Persistence's own attribute read (loads a ghost, keeps the LRU), without the
# detour through ``UvmObject.__getattribute__``.
_pga = Persistent.__getattribute__
_psa = Persistent.__setattr__


class UvmObject(Persistent):
    """A prototype object: slots, and delegation through ``parent*``."""

    def __init__(self, slots: dict[str, Any] | None = None, *, uuid: str | None = None) -> None:
        Persistent.__setattr__(self, "_slots", {})
        Persistent.__setattr__(self, "_uuid", uuid or str(_uuidlib.uuid4()))
        for name, value in (slots or {}).items():
            write_slot(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            _psa(self, name, value)
            # ``_slots`` replaced (become:), or marked changed after an in-place edit
            if name == "_slots" or (name == "_p_changed" and value is not False and value != 0):
                changed(self)
        else:
            write_slot(self, name, value)

    def __getattribute__(self, name: str) -> Any:
        if not name or name[0] == "_":
            # machinery (pickle and copy probe dunders, _p_/_v_, _slots): never a slot
            return _pga(self, name)
        _holder, value = find_slot(self, slot_name(name) if ":" in name else name)
        return value.bind(self) if type(value) is _method_type else value

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            Persistent.__delattr__(self, name)
            if name in ("_slots", "_p_changed"):
                changed(self)
            return
        slots = self._slots
        if name not in slots:
            raise DoesNotUnderstand(
                f"{label(self)} has no own slot {name!r} to remove", selector=name,
                receiver=self._uuid,
            )
        if _slot_guard is not None:
            _slot_guard(self, name, "remove")
        old = slots.pop(name)
        _psa(self, "_p_changed", True)
        changed(self)
        if _on_dropped is not None and _is_method(type(old)):
            _on_dropped(self, name, old)

    def _p_invalidate(self) -> None:
        # persistence: another connection's commit, an abort, a savepoint rolled back
        try:
            changed(self)
        finally:
            Persistent._p_invalidate(self)

    def __repr__(self) -> str:
        try:
            names = ", ".join(sorted(self._slots))
        except Exception:  # a ghost whose storage is gone: still printable
            names = "?"
        return f"<UvmObject {self._uuid[:8]} [{names}]>"


#: Called as ``guard(obj, slot, "write" | "remove")`` before a slot changes; raises to
#: refuse. Installed by ``uvm.protection`` (the Genesis objects' protected slots): this
#: module knows nothing of the registry or the current message.
_slot_guard: Callable[[UvmObject, str, str], None] | None = None
#: Called as ``dropped(obj, slot, method)`` after a slot holding a method was removed
#: or overwritten, so its history is kept (``uvm.protection``): history is append-only.
_on_dropped: Callable[[UvmObject, str, Any], None] | None = None


def set_slot_guard(
    guard: Callable[[UvmObject, str, str], None] | None,
    dropped: Callable[[UvmObject, str, Any], None] | None = None,
    container: Callable[[Any], None] | None = None,
) -> None:
    """Install ``uvm.protection``'s guards: of slots, of dropped methods, and of the image
    containers (``uvm.containers.set_container_guard``)."""
    global _slot_guard, _on_dropped
    _slot_guard, _on_dropped = guard, dropped
    set_container_guard(container)


def label(obj: UvmObject) -> str:
    """A short human name for messages: the ``name`` slot if any, else the uuid."""
    name = obj._slots.get("name")
    short = obj._uuid[:8]
    return f"{name} ({short})" if isinstance(name, str) else f"object {short}"


def find_slot(obj: UvmObject, name: str) -> tuple[UvmObject, Any]:
    """Return ``(holder, value)`` for the first slot ``name`` on ``obj``'s chain."""
    slots = _pga(obj, "_slots")
    value = slots.get(name, _MISSING)
    if value is not _MISSING:
        return obj, value
    try:
        holder, token = _pga(obj, ENTRIES)[name]
    except (AttributeError, KeyError):
        pass
    else:
        if token is STATE.token:
            value = _pga(holder, "_slots").get(name, _MISSING)
            if value is not _MISSING:
                return holder, value
    return _resolve(obj, slots, name)


def _resolve(obj: UvmObject, slots: dict[str, Any], name: str) -> tuple[UvmObject, Any]:
    """The search behind a cache miss; the answer is remembered when it may be."""
    token = STATE.token  # read before the search: a bump during it voids the answer
    parent = slots.get(PARENT_SLOT)
    seen: list[Any] = []
    while isinstance(parent, UvmObject) and len(seen) < _FAST_DEPTH:
        seen.append(parent)
        slots = _pga(parent, "_slots")
        value = slots.get(name, _MISSING)
        if value is not _MISSING:
            remember(obj, name, parent, seen, token)
            return parent, value
        parent = slots.get(PARENT_SLOT)
    if parent is not None:
        seen = []
        found = _search(obj, name, seen)
        if found is not None:
            if seen[-1] is not _UNWATCHABLE:
                remember(obj, name, found[0], seen, token)
            return found
    raise DoesNotUnderstand(
        f"{label(obj)} does not understand {name!r}: no slot of that name on it or its parents",
        selector=name, receiver=obj._uuid,
    )


#: ends ``seen`` when a list of parents is not an ``ImageList`` (an older image's
#: ``PersistentList``, a plain list written below ``write_slot``): its in-place changes
#: are not seen, so that answer is not remembered
_UNWATCHABLE = object()


def _search(start: UvmObject, name: str, seen: list[Any]) -> tuple[UvmObject, Any] | None:
    """Depth-first, parents in order, each object once; ``seen`` gets what was looked at
    (objects past ``start`` and lists of parents)."""
    visited: set[int] = set()
    stack: list[UvmObject] = [start]
    watchable = True
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        if obj is not start:
            seen.append(obj)
        slots = _pga(obj, "_slots")
        value = slots.get(name, _MISSING)
        if value is not _MISSING:
            if not watchable:
                seen.append(_UNWATCHABLE)
            return obj, value
        parents = slots.get(PARENT_SLOT)
        if isinstance(parents, UvmObject):
            stack.append(parents)
        elif parents is not None:
            if type(parents) is ImageList:
                seen.append(parents)
            else:
                watchable = False
            stack.extend(p for p in reversed(parents) if isinstance(p, UvmObject))
    return None


def check_slot_name(name: Any) -> str:
    """``name`` if it may name a new slot, else ``InvalidValue`` saying why: the rule of
    ``lexicon.names`` (a non-empty ``str`` in NFKC form, no leading ``_``)."""
    problem = slot_name_problem(name)
    if problem is not None:
        raise InvalidValue(problem)
    return name


def write_slot(obj: UvmObject, name: str, value: Any) -> None:
    """Write one slot, converting the value to its stored form, and mark ``obj`` changed."""
    problem = slot_name_problem(name)
    if problem is not None:
        raise InvalidValue(problem)
    if _slot_guard is not None:
        _slot_guard(obj, name, "write")
    stored = storable(value)
    if name == PARENT_SLOT:
        _check_parents(obj, stored)
    slots = obj._slots
    old = slots.get(name, _MISSING)
    slots[name] = stored
    _psa(obj, "_p_changed", True)
    if old is _MISSING or name == PARENT_SLOT:  # its shape changed, not only a value
        changed(obj)
    if _on_dropped is not None and old is not _MISSING and old is not None \
            and old is not stored and _is_method(type(old)):
        _on_dropped(obj, name, old)


def _check_parents(obj: UvmObject, value: Any) -> None:
    parents = [value] if not isinstance(value, PersistentList) else list(value)
    for parent in parents:
        if not isinstance(parent, UvmObject):
            raise InvalidValue(
                f"the {PARENT_SLOT!r} slot of {label(obj)} takes objects, "
                f"not {type(parent).__name__}"
            )


def storable(value: Any, _depth: int = 0) -> Any:
    """The stored form of a slot value, or ``InvalidValue`` naming what cannot be stored.

    Lists and dicts become ``ImageList``/``ImageMapping`` (persistent, converting
    every later write themselves), so that a method mutating them in place is
    noticed by the transaction; tuples stay tuples of storable values; objects are
    kept by reference. An ``ImageList``/``ImageMapping`` is kept as it is (its class
    let nothing unconverted in); a ``PersistentList``/``PersistentMapping`` of
    an older image is copied into one. A ``Method`` is storable only as a slot's
    own value (the primitives define methods), never inside a list, dict or
    tuple: no other persistent class is a value.

    Only exact types are stored: a subclass of ``str``, ``int``, ``dict``... (an
    enum member, a string with its own comparison) would carry its class into the
    record and its code into every later load and comparison, so it is refused,
    as is any persistent class batos does not store (``uvm.pickles.ALLOWED``)
    and a method that already lives in another slot.
    """
    kind = type(value)
    if kind in SCALAR_TYPES:
        return value
    if kind is UvmObject or kind is ImageMapping or kind is ImageList:
        return value
    if _is_method(kind):
        if _depth:
            raise InvalidValue(
                "a method is stored only as a slot's own value, set with "
                "defineMethod:source:; it cannot be stored inside a list, dict or tuple"
            )
        if value._p_oid is not None:
            raise InvalidValue(
                "a method already stored in a slot cannot be stored in another one: "
                "define it there with defineMethod:source:"
            )
        return value
    if _depth > 64:
        raise InvalidValue("value nested deeper than 64 levels cannot be stored")
    if kind is PersistentList or kind is PersistentMapping:
        value = value.data  # an older image's container, or kernel code's: copied, converted
        kind = type(value)
    if kind is list:
        return ImageList._adopt([storable(v, _depth + 1) for v in value])
    if kind is tuple:
        return tuple(storable(v, _depth + 1) for v in value)
    if kind is dict:
        return ImageMapping._adopt({check_key(k): storable(v, _depth + 1) for k, v in value.items()})
    raise InvalidValue(
        f"a value of type {type_name(value)} cannot be stored in a slot: use None, "
        "bool, int, float, str, bytes, lists, dicts with string keys, or objects "
        "(exactly those types, not subclasses of them)"
    )


def storable_item(value: Any) -> Any:
    """``storable`` for a value written into a list or dict (never a ``Method``)."""
    return storable(value, 1)


class ImageMapping(ConvertingMapping):
    """A dict in the image (``uvm.containers.ConvertingMapping``): each value written is
    ``storable``, each key exactly a ``str``, whoever writes."""

    _store = staticmethod(storable)


class ImageList(ConvertingList):
    """A list in the image (``uvm.containers.ConvertingList``): each item written is
    ``storable``, whoever writes. As a list of parents, it tells the slot cache when it
    changes: every in-place change ends by setting ``_p_changed``."""

    _store = staticmethod(storable)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "data" or (name == "_p_changed" and value is not False and value != 0):
            touched(self)

    def _p_invalidate(self) -> None:
        try:
            touched(self)
        finally:
            Persistent._p_invalidate(self)


#: the classes of the image's containers (``PersistentMapping`` is also ZODB's root)
IMAGE_CONTAINERS = (ImageMapping, ImageList)


#: ``uvm.methods.Method``, registered by that module (it builds on this one): a slot's
#: own value may be one, nothing inside a container may
_method_type: type | None = None


def register_method_type(kind: type) -> None:
    """Make ``kind`` (``uvm.methods.Method``) the one persistent class a slot may hold."""
    global _method_type
    _method_type = kind


def _is_method(kind: type) -> bool:
    return kind is _method_type
