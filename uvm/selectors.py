"""Selectors and slot names: the one mapping between them.

A message names what it wants with a *selector*, written either the Smalltalk
way (``setSlot:value:``) or the Python way (``setSlot_value``). Slots are keyed
by the Python spelling, so a method can be called from restricted Python as
``obj.setSlot_value(name, value)``.

The rule, in both directions:

* selector -> slot: drop one trailing ``:``, then replace every remaining
  ``:`` with ``_``. ``setSlot:value:`` -> ``setSlot_value``,
  ``value:`` -> ``value``, ``printString`` -> ``printString``.
* slot -> selector (for display only): given the number of arguments ``n``;
  with ``n == 0`` the slot name is the selector; otherwise each ``_`` becomes
  ``:`` and a ``:`` is appended. The mapping is not injective, so ``do_it``
  and ``do:it:`` name the same slot; this is by design.

Data slots may also carry names that are not identifiers (``parent*``); such
names are used as given and cannot be reached with keyword syntax.
"""

from __future__ import annotations

__all__ = ["PARENT_SLOT", "selector_for", "slot_name"]

#: The delegation slot: one object or a list of objects, searched in order.
PARENT_SLOT = "parent*"


def slot_name(selector: str) -> str:
    """The slot key a selector names (either spelling accepted)."""
    if not isinstance(selector, str) or not selector:
        raise ValueError("a selector is a non-empty string")
    if selector.endswith(":"):
        selector = selector[:-1]
    return selector.replace(":", "_")


def selector_for(slot: str, nargs: int) -> str:
    """The keyword spelling of a slot taking ``nargs`` arguments (display only)."""
    if nargs == 0 or not slot.isidentifier():
        return slot
    return slot.replace("_", ":") + ":"
