"""The Genesis table: the objects bootstrap plants, each with its parent and slots.

``GENESIS`` is the seed's slot table made concrete: name -> (parent name or
None, slots). Method slots are given as source (``def ...``; author
``genesis`` once planted), data slots as values. ``uvm.genesis`` plants and
verifies it. Objects, by name:

    traits   behaviour common to all objects (clone, setSlot:value:, ...)
    genesis  the primordial prototype; parent* -> traits
    true     ifTrue:ifFalse:, ifTrue:, ifFalse:, not; truthValue = True
    false    the same with the branches swapped; truthValue = False
    nil      isNil -> True
    block    value (answers nil; clones redefine it) and whileTrue:
    checks   the image's self-checks (``uvm.genesis_checks``); parent* -> traits
    weaver   the CognitiveWeaver's registry: adapters, facets, inquiry settings and
             cycles (``uvm.facets``); parent* -> traits

``SUPERSEDED`` lists sources a later Genesis version replaces (bootstrap
upgrades a slot only while it still holds one of them, written by genesis).

At import the table declares to ``uvm.protection`` which slots of its objects
only a person changes: every Genesis method, the identity and truth slots
(``PROTECTED_DATA``), and per object the state its own methods keep
(``PROTECTED_STATE``). The seed window's source is read as a resource of
``ui_seed``; nothing of the UI is imported.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from . import protection
from .facets import WEAVER_MEMBERS, WEAVER_PROTECTED, WEAVER_SLOTS
from .genesis_checks import CHECK_METHODS
from .genesis_checks import source as _m
from .selectors import PARENT_SLOT

__all__ = ["GENESIS", "GENESIS_VERSION", "PROTECTED_DATA", "PROTECTED_STATE", "SUPERSEDED",
           "TRAITS_METHODS", "is_source"]

GENESIS_VERSION = 4  # 2: the checks object; 3: synthesis, become:, display_yourself;
# 4: the weaver object, entropy / entropyOver:


TRAITS_METHODS = {
    "clone": _m('''
def clone(self):
    """A shallow copy of the receiver, registered in the image; its parent is the receiver's."""
    return clone_object(self)
'''),
    "setSlot_value": _m('''
def setSlot_value(self, name, value):
    """Add or overwrite a data slot; answers the receiver."""
    return set_slot(self, name, value)
'''),
    "removeSlot": _m('''
def removeSlot(self, name):
    return remove_slot(self, name)
'''),
    "slotNames": _m('''
def slotNames(self):
    return slot_names(self)
'''),
    "respondsTo": _m('''
def respondsTo(self, selector):
    return object_responds_to(self, selector)
'''),
    "printString": _m('''
def printString(self):
    return print_object(self)
'''),
    "describe": _m('''
def describe(self):
    """uuid, names, and each own slot's kind (methods with selector and version)."""
    return describe_object(self)
'''),
    "uuid": _m('''
def uuid(self):
    return uuid_of(self)
'''),
    "registerAs": _m('''
def registerAs(self, name):
    """Make the receiver findable by name; answers the receiver."""
    return name_object(self, name)
'''),
    "defineMethod_source": _m('''
def defineMethod_source(self, selector, source, reason=""):
    """Install or redefine a method on the receiver; answers the new version number."""
    return define_method(self, selector, source, reason)
'''),
    "methodHistory": _m('''
def methodHistory(self, selector):
    return method_history(self, selector)
'''),
    "rollbackMethod_to": _m('''
def rollbackMethod_to(self, selector, version, reason=""):
    """Make an earlier version of an own method current again (as a new version)."""
    return rollback_method(self, selector, version, reason)
'''),
    "applyActs": _m('''
def applyActs(self, acts):
    """Apply a list of autopoietic_acts atomically."""
    return apply_acts(self, acts)
'''),
    "isNil": _m('''
def isNil(self):
    return False
'''),
    "doesNotUnderstand": _m('''
def doesNotUnderstand(self, message):
    """The prime mover: ask the mind to create what is missing (a clear error without one)."""
    return synthesize(self, message)
'''),
    "become": _m('''
def become(self, other):
    """Swap states with other in this transaction: references to each now see the other's."""
    return become_object(self, other)
'''),
    "reviewProposal": _m('''
def reviewProposal(self, proposal):
    """Run the crucible on {source|acts, selector, arguments} for the receiver; installs nothing."""
    return review_proposal(self, proposal)
'''),
    "entropy": _m('''
def entropy(self):
    """The image's Composite Entropy Metric over the last hour: cem, h_cog, structure,
    novelty, weights and counts (uvm.entropy)."""
    return composite_entropy_of(self)
'''),
    "entropyOver": _m('''
def entropyOver(self, seconds):
    """The Composite Entropy Metric over the last seconds."""
    return composite_entropy_of(self, seconds)
'''),
}

#: Genesis method sources that later Genesis versions replace, by (object, slot).
#: ``bootstrap`` upgrades a slot only while its current version is one of these,
#: written by genesis: a slot the image or the mind has redefined is left alone.
SUPERSEDED = {
    ("traits", "doesNotUnderstand"): [_m('''
def doesNotUnderstand(self, message):
    """Default until a mind exists: a clear error naming the selector."""
    return not_understood(self, message)
''')],
}


def _ui_source() -> str | None:
    """The seed window (``ui_seed/window.py``) as a method that answers its source.

    Read as a resource: the image stores the text; nothing of the UI is imported here.
    """
    try:
        text = resources.files("ui_seed").joinpath("window.py").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None
    return _m(
        "def display_yourself(self):\n"
        '    """The source of this image\'s window (a Kivy app); `batos ui` runs it."""\n'
        f"    return {text!r}\n"
    )


def _boolean(value: bool) -> dict[str, Any]:
    taken = "trueBlock" if value else "falseBlock"
    word = "true" if value else "false"
    return {
        "name": word,
        "truthValue": value,
        "ifTrue_ifFalse": _m(f'''
def ifTrue_ifFalse(self, trueBlock, falseBlock):
    return {taken}.value()
'''),
        "ifTrue": _m(f'''
def ifTrue(self, trueBlock):
    return {"trueBlock.value()" if value else "None"}
'''),
        "ifFalse": _m(f'''
def ifFalse(self, falseBlock):
    return {"None" if value else "falseBlock.value()"}
'''),
        "not": _m(f'''
def not_(self):
    return object_named("{"false" if value else "true"}")
'''),
        "printString": _m(f'''
def printString(self):
    return "{word}"
'''),
    }


#: name -> (parent name or None, slots). Strings that start with "def " are method sources.
GENESIS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "traits": (None, {"name": "traits", **TRAITS_METHODS}),
    "genesis": ("traits", {
        "name": "genesis",
        "description": "The primordial prototype: clone it to make new objects.",
        **({"display_yourself": _UI} if (_UI := _ui_source()) else {}),
    }),
    "true": ("traits", _boolean(True)),
    "false": ("traits", _boolean(False)),
    "nil": ("traits", {
        "name": "nil",
        "isNil": _m('''
def isNil(self):
    return True
'''),
        "printString": _m('''
def printString(self):
    return "nil"
'''),
    }),
    "block": ("traits", {
        "name": "block",
        "maxIterations": 1_000_000,
        "value": _m('''
def value(self):
    """An empty block answers nil; clone the block and redefine value."""
    return None
'''),
        "whileTrue": _m('''
def whileTrue(self, body):
    """Send value to body while the receiver's value is true; answers the count."""
    count = 0
    while truth(self.value()):
        body.value()
        count = count + 1
        if count >= self.maxIterations:
            raise RuntimeError("whileTrue: stopped after " + str(count) + " iterations (maxIterations)")
    return count
'''),
    }),
    "checks": ("traits", {
        "name": "checks",
        "description": "The image's self-checks: each method answers True when its invariant "
                       "holds. Validation runs them in aborted transactions; a check sent "
                       "directly commits the clones it makes.",
        **CHECK_METHODS,
    }),
    "weaver": ("traits", WEAVER_SLOTS),
}


def is_source(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("def ")


#: Data slots of the Genesis objects that are protected like their methods: the
#: identity (name, parent*) and what truth() believes. Other data slots hold state
#: a person tunes (descriptions, block's maxIterations, the weaver's registry).
PROTECTED_DATA = frozenset({"name", PARENT_SLOT, "truthValue"})
#: per Genesis object, state its own Genesis methods keep for the operator
PROTECTED_STATE = {"weaver": WEAVER_PROTECTED}


def _protection() -> tuple[dict[str, frozenset[str]], list[str]]:
    """(Genesis name -> protected slots, the Genesis method sources) for uvm.protection."""
    table: dict[str, frozenset[str]] = {}
    sources: list[str] = []
    for name, (_parent, slots) in GENESIS.items():
        methods_ = {slot for slot, value in slots.items() if is_source(value)}
        table[name] = frozenset(methods_ | PROTECTED_DATA | PROTECTED_STATE.get(name, frozenset()))
        sources.extend(value for value in slots.values() if is_source(value))
    return table, sources


protection.declare(*_protection())
protection.declare_members({"weaver": WEAVER_MEMBERS},
                           [("weaver", slot) for slot in sorted(WEAVER_PROTECTED)])

