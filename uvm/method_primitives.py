"""The primitives on an object's methods: define, read the history, roll back.

History is the kernel's: a method version's author is the current message's
(``Cycle.author``), never an argument, and its ``meta`` (the mind's digest and
verdict) is set only by ``uvm.synthesis`` on the install path; what these
primitives hand out of a history is a deep copy. Redefining or rolling back a
Genesis object's method is checked by ``uvm.protection``.

Like every primitive they run inside the current message's transaction
(``registry.current()``); ``uvm.primitives`` puts them in method code's table,
``uvm.acts`` applies ``DEFINE_METHOD`` and ``ROLLBACK_METHOD`` with them.
"""

from __future__ import annotations

from typing import Any

from .errors import BadArguments
from .methods import Method
from .obj import UvmObject, find_slot, label, write_slot
from .object_primitives import image_object, plain_copy
from .protection import check_slot
from .registry import current
from .selectors import PARENT_SLOT, slot_name

__all__ = ["define_method", "method_history", "rollback_method"]


def define_method(obj: UvmObject, selector: str, source: str, reason: str = "") -> int:
    """Install ``source`` in ``obj``'s own slot for ``selector``; returns the new version number."""
    o = image_object(obj)
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
    o = image_object(obj)
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
    return [plain_copy(v) for v in _own_method(obj, selector).versions]


def rollback_method(obj: UvmObject, selector: str, version: int, reason: str = "") -> int:
    o = image_object(obj)
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
