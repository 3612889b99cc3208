"""The primitives on image objects: clone, slots, names, description, ``become:``.

These are the functions of ``uvm.primitives``' table that reach an object's
slots, its names and its identity; the ones on its methods are in
``uvm.method_primitives``, the ones that ask the mind in ``uvm.primitives``.
Method code calls them by name (the table is its globals); ``uvm.acts`` and
``uvm.facets`` build on them.

They run inside the current message's transaction (``registry.current()``),
validate what they are given, and raise the image's own errors. The Genesis
objects' protected slots and names are checked by ``uvm.protection`` on every
write, removal, naming and ``become:``.
"""

from __future__ import annotations

from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from . import quarantine
from .errors import BadArguments, DoesNotUnderstand, InvalidValue, MethodSourceError
from .methods import Method
from .obj import UvmObject, find_slot, label, storable, write_slot
from .protection import check_become
from .registry import current
from .selectors import PARENT_SLOT, selector_for, slot_name

__all__ = [
    "become_object", "clone_object", "describe_object", "image_object", "name_object",
    "object_named", "object_responds_to", "plain_copy", "print_object", "remove_slot",
    "set_slot", "slot_kind", "slot_kinds", "slot_names", "truth", "uuid_of",
]


def image_object(value: Any, what: str = "receiver") -> UvmObject:
    """``value`` if it is an image object, else ``BadArguments`` naming ``what`` it was."""
    if not isinstance(value, UvmObject):
        raise BadArguments(f"the {what} must be an image object, got {type(value).__name__}")
    return value


def clone_object(obj: UvmObject) -> UvmObject:
    """A shallow copy, registered: shares referenced objects, copies containers and methods."""
    proto = image_object(obj)
    new = UvmObject()
    marked: list[tuple[Method, Method, str]] = []
    for name, value in proto._slots.items():
        if name == "name":
            continue  # a clone is not its prototype; it may be named anew
        if isinstance(value, Method):
            twin = Method.__new__(Method)
            twin.versions = PersistentList(plain_copy(v) for v in value.versions)
            if quarantine.MARK in value.__dict__:  # versions loaded the ghost
                marked.append((value, twin, name))
            value = twin
        elif isinstance(value, PersistentList | PersistentMapping):
            value = storable(value.data.copy())  # not copy.copy: a ghost's __dict__ is empty
        new._slots[name] = value
    new._slots.setdefault(PARENT_SLOT, proto._slots.get(PARENT_SLOT, proto))
    cycle = current()
    cycle.registry.register(new)
    cycle.created.append(new)
    for original, twin, name in marked:  # the quarantine follows the code (uvm.quarantine)
        quarantine.carry(cycle, original, twin, new, name)
    return new


def plain_copy(value: Any, _depth: int = 0) -> Any:
    """A deep copy of a method history entry's plain data (dicts, lists, tuples of scalars)."""
    if _depth > 32:
        raise InvalidValue("a method history entry is nested too deeply to copy")
    if isinstance(value, dict | PersistentMapping):
        return {str(k): plain_copy(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | PersistentList):
        return [plain_copy(v, _depth + 1) for v in value]
    return value


def set_slot(obj: UvmObject, name: str, value: Any) -> UvmObject:
    write_slot(image_object(obj), name, value)
    return obj


def remove_slot(obj: UvmObject, name: str) -> UvmObject:
    o = image_object(obj)
    if not isinstance(name, str) or not name or name.startswith("_"):
        raise BadArguments(f"{name!r} is not a slot name")
    delattr(o, name)
    return o


def slot_names(obj: UvmObject) -> list[str]:
    return sorted(image_object(obj)._slots)


def slot_kind(name: str, value: Any) -> str:
    if name == PARENT_SLOT:
        return "parent"
    if isinstance(value, Method):
        return "method"
    if isinstance(value, UvmObject):
        return "object"
    if value is None:
        return "nil"
    if isinstance(value, PersistentList | tuple):
        return "list"
    if isinstance(value, PersistentMapping):
        return "dict"
    return type(value).__name__


def slot_kinds(obj: UvmObject) -> dict[str, str]:
    return {name: slot_kind(name, value) for name, value in sorted(image_object(obj)._slots.items())}


def object_responds_to(obj: UvmObject, selector: str) -> bool:
    try:
        find_slot(image_object(obj), slot_name(selector))
    except DoesNotUnderstand:
        return False
    return True


def print_object(obj: UvmObject) -> str:
    o = image_object(obj)
    return f"<{label(o)}: {', '.join(sorted(o._slots))}>"


def uuid_of(obj: UvmObject) -> str:
    return image_object(obj)._uuid


def describe_object(obj: UvmObject) -> dict[str, Any]:
    """uuid, names and each own slot's kind; methods with their selector and version."""
    o = image_object(obj)
    slots: dict[str, Any] = {}
    for name, value in sorted(o._slots.items()):
        entry: dict[str, Any] = {"kind": slot_kind(name, value)}
        if isinstance(value, Method):
            entry.update(version=value.version)
            try:
                nargs = value.function().__code__.co_argcount - 1
            except MethodSourceError as exc:  # e.g. imports a package this env lacks
                entry.update(selector=name, error=str(exc))
            else:
                entry.update(selector=selector_for(name, nargs))
        slots[name] = entry
    return {"uuid": o._uuid, "names": current().registry.names_of(o), "slots": slots}


def object_named(ref: str) -> UvmObject:
    return current().registry.resolve(ref)


def name_object(obj: UvmObject, name: str) -> UvmObject:
    current().registry.name(image_object(obj), name)
    return obj


def truth(value: Any) -> bool:
    """A Python bool, or an object whose ``truthValue`` slot holds one (``true``/``false``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, UvmObject):
        try:
            _h, flag = find_slot(value, "truthValue")
        except DoesNotUnderstand:
            flag = None
        if isinstance(flag, bool):
            return flag
    raise BadArguments(f"expected a boolean, got {value!r}")


def become_object(obj: UvmObject, other: UvmObject) -> UvmObject:
    """Swap the states of two objects, Smalltalk's two-way ``become:``.

    Every reference to ``obj`` (a slot, a parent link, its uuid, its names)
    sees ``other``'s former slots afterwards, and every reference to ``other``
    sees ``obj``'s. Identity (uuid, names, persistent oid) stays where it was;
    the state moves. Both objects are written in the message's transaction, so
    an abort leaves both as they were. Answers the receiver.
    """
    a, b = image_object(obj), image_object(other, "argument of become:")
    if a is b:
        return a
    registry = current().registry
    for one in (a, b):  # identities stay consistent: both are this image's own objects
        if registry.objects.get(one._uuid) is not one:
            raise InvalidValue(f"{label(one)} is not an object registered in this image")
    check_become(a, b)
    slots_a, slots_b = a._slots, b._slots
    a._slots, b._slots = slots_b, slots_a
    a._p_changed = True
    b._p_changed = True
    return a
