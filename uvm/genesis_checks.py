"""The image's self-checks, as the Genesis table plants them in ``checks``.

Every method slot of the object named ``checks`` is a self-check: it takes
only the receiver and answers True when its invariant holds; answering
anything else, or raising, is a failure. Living in ``checks`` is what marks a
method as a check (rather than a naming convention or a flag on ``Method``):
the image lists, adds and redefines its checks with the same messages as any
other method (``checks slotNames``, ``defineMethod:source:``), and nothing
about ``Method`` or the kernel changes. ``uvm.validation`` runs each check
through the kernel's dispatch in its own transaction, which is always
aborted, so a check may clone, define and write freely.

The checks below cover the kernel's physics: traits answers the core
messages, booleans branch, ``whileTrue:`` loops, clones delegate, and every
Genesis method has a history. This module is text only: ``source`` is how
every Genesis method source is written down (``uvm.genesis_table`` uses it too).
"""

from __future__ import annotations

__all__ = ["CHECK_METHODS", "source"]


def source(text: str) -> str:
    """A method source as the Genesis table stores it: stripped, one final newline."""
    return text.strip() + "\n"


# Raw strings: the checks hold method sources inside string literals, with "\n".
CHECK_METHODS = {
    "checkTraitsAnswersCore": source(r'''
def checkTraitsAnswersCore(self):
    """traits answers clone, setSlot:value:, doesNotUnderstand: and defineMethod:source:."""
    traits = object_named("traits")
    for selector in ["clone", "setSlot:value:", "doesNotUnderstand:", "defineMethod:source:"]:
        if not object_responds_to(traits, selector):
            return False
    return True
'''),
    "checkBooleansBranch": source(r'''
def checkBooleansBranch(self):
    """true and false each run the right one of two blocks, and are truthy/falsy."""
    yes = clone_object(object_named("block"))
    define_method(yes, "value", "def value(self):\n    return 'yes'\n")
    no = clone_object(object_named("block"))
    define_method(no, "value", "def value(self):\n    return 'no'\n")
    t = object_named("true")
    f = object_named("false")
    return (t.ifTrue_ifFalse(yes, no) == "yes" and f.ifTrue_ifFalse(yes, no) == "no"
            and t.ifTrue(yes) == "yes" and f.ifFalse(no) == "no"
            and truth(t) is True and truth(f) is False)
'''),
    "checkWhileTrueCounts": source(r'''
def checkWhileTrueCounts(self):
    """block whileTrue: runs its body until the condition fails, answering the count."""
    body = clone_object(object_named("block"))
    set_slot(body, "n", 0)
    define_method(body, "value", "def value(self):\n    self.n = self.n + 1\n    return self.n\n")
    condition = clone_object(object_named("block"))
    set_slot(condition, "body", body)
    define_method(condition, "value", "def value(self):\n    return self.body.n < 3\n")
    return condition.whileTrue(body) == 3 and body.n == 3
'''),
    "checkCloneDelegates": source(r'''
def checkCloneDelegates(self):
    """A clone is a new object whose lookups reach its parent's ancestors, live."""
    proto = object_named("genesis")
    child = clone_object(proto)
    if uuid_of(child) == uuid_of(proto) or slot_kinds(child).get("parent*") != "parent":
        return False
    traits = object_named("traits")
    set_slot(traits, "validationProbe", 42)
    delegates = child.validationProbe == 42 and object_responds_to(child, "clone")
    remove_slot(traits, "validationProbe")
    return delegates
'''),
    "checkMethodHistories": source(r'''
def checkMethodHistories(self):
    """Every method of the Genesis objects has at least one version in its history."""
    for name in ["traits", "true", "false", "nil", "block", "checks"]:
        holder = object_named(name)
        kinds = slot_kinds(holder)
        for slot in kinds:
            if kinds[slot] == "method" and len(method_history(holder, slot)) < 1:
                return False
    return True
'''),
}

