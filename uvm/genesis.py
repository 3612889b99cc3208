"""The Genesis bootstrap and the Phase 1 check, from one table.

``GENESIS`` is the seed's slot table made concrete: the objects bootstrap
plants, each with its name, parent and slots. Method slots are given as
source (author ``genesis``); data slots as values. ``bootstrap`` creates what
is missing and nothing else, so running it twice changes nothing (not even a
new transaction), and it never overwrites a slot the image has since
redefined. ``verify`` reads the image in a separate connection and reports
everything the table requires that is missing or does not compile.

Objects, by name:

    traits   behaviour common to all objects (clone, setSlot:value:, ...)
    genesis  the primordial prototype; parent* -> traits
    true     ifTrue:ifFalse:, ifTrue:, ifFalse:, not; truthValue = True
    false    the same with the branches swapped; truthValue = False
    nil      isNil -> True
    block    value (answers nil; clones redefine it) and whileTrue:
    checks   the image's self-checks; parent* -> traits
    weaver   the CognitiveWeaver's registry: adapters, facets, inquiry settings and
             cycles (uvm.facets); parent* -> traits

Self-checks: every method slot of the object named ``checks`` is one. A
check takes only the receiver and answers True when its invariant holds;
answering anything else, or raising, is a failure. Living in ``checks`` is
what marks a method as a check (rather than a naming convention or a flag on
``Method``): the image lists, adds and redefines its checks with the same
messages as any other method (``checks slotNames``, ``defineMethod:source:``),
and nothing about ``Method`` or the kernel changes. ``uvm.validation`` runs
each check through the kernel's dispatch in its own transaction, which is
always aborted, so a check may clone, define and write freely. The bootstrap
checks below cover the kernel's physics: traits answers the core messages,
booleans branch, ``whileTrue:`` loops, clones delegate, and every Genesis
method has a history.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import transaction

from . import conversion, protection
from .errors import ImageError, UnknownTarget
from .facets import WEAVER_MEMBERS, WEAVER_PROTECTED, WEAVER_SLOTS
from .methods import Method, compile_method
from .obj import UvmObject, write_slot
from .pickles import forbidden_records
from .registry import Registry
from .replies import ReplyStore
from .selectors import PARENT_SLOT

__all__ = ["CHECK_METHODS", "GENESIS", "GENESIS_VERSION", "BootstrapReport", "bootstrap", "verify"]

GENESIS_VERSION = 4  # 2: the checks object; 3: synthesis, become:, display_yourself;
# 4: the weaver object, entropy / entropyOver:
META_KEY = "batos.genesis"
#: root key: the version of the container conversion this image went through (uvm.conversion)
CONTAINERS_KEY = "batos.containers"
CONTAINERS_VERSION = 1
log = logging.getLogger("batos.genesis")


def _m(source: str) -> str:
    return source.strip() + "\n"


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


# Raw strings: the checks hold method sources inside string literals, with "\n".
CHECK_METHODS = {
    "checkTraitsAnswersCore": _m(r'''
def checkTraitsAnswersCore(self):
    """traits answers clone, setSlot:value:, doesNotUnderstand: and defineMethod:source:."""
    traits = object_named("traits")
    for selector in ["clone", "setSlot:value:", "doesNotUnderstand:", "defineMethod:source:"]:
        if not object_responds_to(traits, selector):
            return False
    return True
'''),
    "checkBooleansBranch": _m(r'''
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
    "checkWhileTrueCounts": _m(r'''
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
    "checkCloneDelegates": _m(r'''
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
    "checkMethodHistories": _m(r'''
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


def _is_source(value: Any) -> bool:
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
        methods_ = {slot for slot, value in slots.items() if _is_source(value)}
        table[name] = frozenset(methods_ | PROTECTED_DATA | PROTECTED_STATE.get(name, frozenset()))
        sources.extend(value for value in slots.values() if _is_source(value))
    return table, sources


protection.declare(*_protection())
protection.declare_members({"weaver": WEAVER_MEMBERS},
                           [("weaver", slot) for slot in sorted(WEAVER_PROTECTED)])


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
                if _is_source(value):
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
                elif _is_source(value) and not isinstance(obj._slots[slot], Method):
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
