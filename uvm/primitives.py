"""Primitives: the kernel's physics, the only way method code reaches the image.

Every method's globals hold these functions (and nothing else of the kernel).
They run inside the current message's transaction (``registry.current()``),
validate what they are given, and raise the image's own errors. Their names
are reserved: a method whose function has one of these names is rejected,
since it would shadow the primitive inside itself.

The genesis methods on ``traits`` are thin sources that call these; a later
architect or mind can redefine those methods without touching the kernel.

History is the kernel's: a method version's author is the current message's
(``Cycle.author``), never an argument, and its ``meta`` (the mind's digest and
verdict) is set only by ``uvm.synthesis`` on the install path; what these
primitives hand out of a history is a deep copy. The Genesis objects'
protected slots and names are checked by ``uvm.protection`` on every write,
removal, definition, rollback, naming and ``become:``.
"""

from __future__ import annotations

from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from . import methods, quarantine
from .errors import (
    BadArguments,
    DoesNotUnderstand,
    InvalidValue,
    MethodSourceError,
    NeedsSynthesis,
    NoMind,
)
from .methods import Method
from .obj import UvmObject, find_slot, label, storable, write_slot
from .protection import check_become, check_slot
from .registry import current
from .selectors import PARENT_SLOT, selector_for, slot_name

__all__ = ["PRIMITIVES"]


def _obj(value: Any, what: str = "receiver") -> UvmObject:
    if not isinstance(value, UvmObject):
        raise BadArguments(f"the {what} must be an image object, got {type(value).__name__}")
    return value


def clone_object(obj: UvmObject) -> UvmObject:
    """A shallow copy, registered: shares referenced objects, copies containers and methods."""
    proto = _obj(obj)
    new = UvmObject()
    marked: list[tuple[Method, Method, str]] = []
    for name, value in proto._slots.items():
        if name == "name":
            continue  # a clone is not its prototype; it may be named anew
        if isinstance(value, Method):
            twin = Method.__new__(Method)
            twin.versions = PersistentList(_plain_copy(v) for v in value.versions)
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


def set_slot(obj: UvmObject, name: str, value: Any) -> UvmObject:
    write_slot(_obj(obj), name, value)
    return obj


def remove_slot(obj: UvmObject, name: str) -> UvmObject:
    o = _obj(obj)
    if not isinstance(name, str) or not name or name.startswith("_"):
        raise BadArguments(f"{name!r} is not a slot name")
    delattr(o, name)
    return o


def slot_names(obj: UvmObject) -> list[str]:
    return sorted(_obj(obj)._slots)


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
    return {name: slot_kind(name, value) for name, value in sorted(_obj(obj)._slots.items())}


def object_responds_to(obj: UvmObject, selector: str) -> bool:
    try:
        find_slot(_obj(obj), slot_name(selector))
    except DoesNotUnderstand:
        return False
    return True


def print_object(obj: UvmObject) -> str:
    o = _obj(obj)
    return f"<{label(o)}: {', '.join(sorted(o._slots))}>"


def uuid_of(obj: UvmObject) -> str:
    return _obj(obj)._uuid


def describe_object(obj: UvmObject) -> dict[str, Any]:
    """uuid, names and each own slot's kind; methods with their selector and version."""
    o = _obj(obj)
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
    current().registry.name(_obj(obj), name)
    return obj


def define_method(obj: UvmObject, selector: str, source: str, reason: str = "") -> int:
    """Install ``source`` in ``obj``'s own slot for ``selector``; returns the new version number."""
    o = _obj(obj)
    if not isinstance(selector, str) or not selector:
        raise BadArguments("a selector is a non-empty string")
    slot = slot_name(selector)
    if slot.startswith("_") or slot == PARENT_SLOT:
        raise BadArguments(f"{selector!r} cannot name a method slot")
    if not isinstance(source, str):
        raise BadArguments(f"method source must be a string, got {type(source).__name__}")
    author = current().author
    existing = o._slots.get(slot)
    if isinstance(existing, Method):
        check_slot(o, slot, "redefine")
        version = existing.define(source, author=author, reason=str(reason))
    else:
        write_slot(o, slot, Method(source, author=author, reason=str(reason)))
        version = 1
    return version


def _own_method(obj: UvmObject, selector: str) -> Method:
    o = _obj(obj)
    slot = slot_name(selector)
    holder, value = find_slot(o, slot)
    if not isinstance(value, Method):
        raise BadArguments(f"slot {slot!r} of {label(holder)} holds data, not a method")
    return value


def method_history(obj: UvmObject, selector: str) -> list[dict[str, Any]]:
    """Every version of the method ``obj`` would run for ``selector``, oldest first.

    A deep copy: changing what it answers changes nothing in the image (a shared
    inner ``meta`` dict would otherwise be a way to forge a verdict).
    """
    return [_plain_copy(v) for v in _own_method(obj, selector).versions]


def _plain_copy(value: Any, _depth: int = 0) -> Any:
    """A deep copy of a history entry's plain data (dicts, lists, tuples of scalars)."""
    if _depth > 32:
        raise InvalidValue("a method history entry is nested too deeply to copy")
    if isinstance(value, dict | PersistentMapping):
        return {str(k): _plain_copy(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | PersistentList):
        return [_plain_copy(v, _depth + 1) for v in value]
    return value


def rollback_method(obj: UvmObject, selector: str, version: int, reason: str = "") -> int:
    o = _obj(obj)
    slot = slot_name(selector)
    value = o._slots.get(slot)
    if not isinstance(value, Method):
        holder, _ = find_slot(o, slot)
        raise BadArguments(
            f"{label(o)} has no own method {slot!r}: it is found on {label(holder)}; "
            "send the rollback there"
        )
    check_slot(o, slot, "roll back")
    return value.rollback(version, author=current().author, reason=str(reason))


def apply_acts(obj: UvmObject, acts: Any) -> dict[str, Any]:
    from .acts import apply_acts as _apply

    return _apply(_obj(obj), acts)


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


def _message(message: Any) -> tuple[str, list[Any]]:
    if not isinstance(message, dict) or not isinstance(message.get("selector"), str):
        raise BadArguments("doesNotUnderstand: takes a message {'selector': str, 'arguments': list}")
    args = message.get("arguments", [])
    return message["selector"], list(args) if isinstance(args, list | tuple) else [args]


def synthesize(obj: UvmObject, message: Any) -> Any:
    """doesNotUnderstand: with a mind: hand the message to the kernel for synthesis.

    Only the top-level message the kernel is dispatching may be synthesized
    (the mind is asked outside any transaction, so a method half-way through
    its own transaction cannot wait for it): anywhere else, and when no mind is
    configured, this raises the plain error instead.
    """
    o = _obj(obj)
    selector, args = _message(message)
    cycle = current()
    if cycle.mind is None:
        raise NoMind(
            f"{label(o)} does not understand {selector!r}, and no mind is configured to create "
            "it. Configure one for the incarnation (BATOS_MIND_URL and BATOS_MIND_MODEL for an "
            "OpenAI-compatible server such as vLLM, or BATOS_MIND_REPLAY=FILE; see "
            "docs/operations.md), or define the method with defineMethod:source:",
            selector=selector, receiver=o._uuid,
        )
    if cycle.not_understood != (o._uuid, selector):
        raise DoesNotUnderstand(
            f"{label(o)} does not understand {selector!r} (only a message sent from outside "
            "the image is synthesized, not one sent from inside a running method)",
            selector=selector, receiver=o._uuid,
        )
    raise NeedsSynthesis(o._uuid, selector, args)


def become_object(obj: UvmObject, other: UvmObject) -> UvmObject:
    """Swap the states of two objects, Smalltalk's two-way ``become:``.

    Every reference to ``obj`` (a slot, a parent link, its uuid, its names)
    sees ``other``'s former slots afterwards, and every reference to ``other``
    sees ``obj``'s. Identity (uuid, names, persistent oid) stays where it was;
    the state moves. Both objects are written in the message's transaction, so
    an abort leaves both as they were. Answers the receiver.
    """
    a, b = _obj(obj), _obj(other, "argument of become:")
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


def review_proposal(obj: UvmObject, proposal: Any) -> dict[str, Any]:
    """Run the crucible on a proposal for ``obj`` without installing it; answers the verdict.

    ``proposal`` is ``{"source": str | "acts": list, "selector": str,
    "arguments": list}``. Uses the incarnation's configured crucible.
    """
    o = _obj(obj)
    if not isinstance(proposal, dict) or not isinstance(proposal.get("selector"), str):
        raise BadArguments(
            "reviewProposal: takes {'selector': str, 'source': str (or 'acts': list), "
            "'arguments': list}"
        )
    mind = current().mind
    if mind is None or mind.crucible is None:
        raise NoMind(
            "no crucible is configured for this incarnation: configure a mind (see "
            "docs/operations.md) or run `batos crucible check --image`",
            selector="reviewProposal:", receiver=o._uuid,
        )
    body = {k: proposal[k] for k in ("thought", "source", "acts") if k in proposal}
    args = proposal.get("arguments", [])
    return mind.crucible.review(
        body, receiver=o._uuid, selector=proposal["selector"],
        args=list(args) if isinstance(args, list | tuple) else [args],
    ).to_plain()


def not_understood(obj: UvmObject, message: Any) -> None:
    """The default doesNotUnderstand: until a mind exists: a clear error, nothing changed."""
    selector = message.get("selector", "?") if isinstance(message, dict) else "?"
    raise DoesNotUnderstand(
        f"{label(_obj(obj))} does not understand {selector!r}, and no mind is configured to "
        "create it: define it with defineMethod:source: (or an applyActs: DEFINE_METHOD), "
        "or configure a mind (weaver)",
        selector=str(selector), receiver=obj._uuid,
    )


def composite_entropy_of(obj: UvmObject, window_seconds: float = 3600.0) -> dict[str, Any]:
    """The image's Composite Entropy Metric over the last ``window_seconds`` (uvm.entropy)."""
    from .entropy import composite_entropy

    _obj(obj)
    return composite_entropy(current().connection.root(), window_seconds=window_seconds)


# The CognitiveWeaver's primitives: thin doors to uvm.facets (which builds on the above).


def weaver_register_adapter(weaver: UvmObject, info: Any) -> str:
    from .facets import register_adapter

    return register_adapter(weaver, info)


def weaver_facet_for(weaver: UvmObject, facet: str) -> str | None:
    from .facets import facet_for

    return facet_for(weaver, facet)


def weaver_facet_object(weaver: UvmObject, facet: str) -> UvmObject:
    from .facets import facet_object

    return facet_object(weaver, facet)


def weaver_switch_facet(weaver: UvmObject, facet: str, adapter: str | None) -> str | None:
    from .facets import switch_facet

    return switch_facet(weaver, facet, adapter)


def weaver_record_cycle(weaver: UvmObject, summary: Any) -> Any:
    from .facets import record_cycle

    return record_cycle(weaver, summary)


def weaver_inquiry_config(weaver: UvmObject) -> dict[str, Any]:
    from .facets import inquiry_config

    return inquiry_config(weaver)


def weaver_set_inquiry(weaver: UvmObject, key: str, value: Any) -> dict[str, Any]:
    from .facets import set_inquiry

    return set_inquiry(weaver, key, value)


PRIMITIVES: dict[str, Any] = {
    f.__name__: f
    for f in (
        clone_object, set_slot, remove_slot, slot_names, slot_kinds, object_responds_to,
        print_object, uuid_of, describe_object, object_named, name_object, define_method,
        method_history, rollback_method, apply_acts, truth, not_understood, synthesize,
        become_object, review_proposal, composite_entropy_of, weaver_register_adapter,
        weaver_facet_for, weaver_facet_object, weaver_switch_facet, weaver_record_cycle,
        weaver_inquiry_config, weaver_set_inquiry,
    )
}
methods.method_globals(PRIMITIVES)
