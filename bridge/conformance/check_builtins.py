"""What a fresh image answers (docs/protocol.md, 7.1-7.3 and 7.5): the Genesis objects, the
built-in selectors every clone of ``genesis`` understands, and protection.

Everything it changes is on objects made for the run (``conformance_<tag>_*``); the
one message to a Genesis object that would change it is sent with author ``mind``
and must be refused ``Protected`` (it would set ``true``'s ``truthValue`` to the
value it already has, so even a server that wrongly takes it changes nothing).
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .registry import check, require
from .shapes import SUPERVISOR, expect_error, expect_ok, short

GENESIS_NAMES = ("traits", "genesis", "true", "false", "nil", "block", "checks", "weaver")
SELF_CHECKS = ("checkTraitsAnswersCore", "checkBooleansBranch", "checkWhileTrueCounts",
               "checkCloneDelegates", "checkMethodHistories")
HISTORY_KEYS = ("version", "source", "author", "timestamp", "reason", "digest")


def _hello(answer: str) -> str:
    return f"def hello(self):\n    return {answer!r}\n"


@check("genesis-objects", "7.1 Targets, 7.3 Genesis objects")
def genesis_objects(ctx: Context) -> str:
    """The Genesis objects are registered by name and answer as documented (``nil isNil``,
    ``true not``, the self-checks, ``block maxIterations``, ``entropy``)."""
    uuids = {}
    for name in GENESIS_NAMES:
        described = ctx.call("describe", target=name)
        require(name in described.get("names", []), f"{name} is registered as {name!r}: "
                f"{short(described.get('names'))}")
        uuids[name] = described["uuid"]
    require(ctx.image("nil", "isNil") is True, "nil isNil answers true")
    require(ctx.image("genesis", "isNil") is False, "genesis isNil answers false")
    require(ctx.image("true", "printString") == "true", "true printString answers 'true'")
    require(ctx.image("nil", "printString") == "nil", "nil printString answers 'nil'")
    negated = ctx.image("true", "not")
    require(negated == {"$ref": uuids["false"]}, f"true not answers false as a reference, got "
            f"{short(negated)}")
    require(ctx.image("true", "truthValue") is True, "true truthValue is true")
    require(ctx.image("block", "maxIterations") == 1_000_000, "block maxIterations is 1,000,000")
    for selector in SELF_CHECKS:
        require(ctx.image("checks", selector) is True, f"checks {selector} answers true")
    entropy = ctx.image("genesis", "entropy")
    require(isinstance(entropy, dict) and "cem" in entropy,
            f"genesis entropy answers a map with cem, got {short(entropy)}")
    return f"{len(GENESIS_NAMES)} objects, {len(SELF_CHECKS)} self-checks true"


@check("builtin-selectors", "7.2 Selectors, 7.3 Built-in selectors")
def builtin_selectors(ctx: Context) -> str:
    """A clone of ``genesis`` answers the built-in selectors as documented: slots, methods
    and their versions, both selector spellings, clone, registerAs:, become:, applyActs:."""
    name = ctx.make_object("builtins", {"a": 1})
    uuid = ctx.image(name, "uuid")
    me = {"$ref": uuid}
    require(uuid == ctx.call("describe", target=name)["uuid"], "uuid answers describe's uuid")
    names = ctx.image(name, "slotNames")
    require(isinstance(names, list) and "a" in names and names == sorted(names),
            f"slotNames answers the own slot names, sorted: {short(names)}")
    require(ctx.image(name, "respondsTo:", "clone") is True, "respondsTo: 'clone' is true")
    require(ctx.image(name, "respondsTo:", "conformanceNope") is False,
            "respondsTo: an unknown selector is false")
    text = ctx.image(name, "printString")
    require(isinstance(text, str) and text.startswith("<"), f"printString: {short(text)}")
    require(ctx.image(name, "setSlot:value:", "b", 2) == me, "setSlot:value: answers the receiver")
    require(ctx.image(name, "setSlot_value", "b", 3) == me, "setSlot_value is setSlot:value:")
    require(ctx.image(name, "b") == 3, "the slot set by setSlot_value reads back")
    require(ctx.image(name, "removeSlot:", "b") == me, "removeSlot: answers the receiver")
    require(ctx.image(name, "respondsTo:", "b") is False, "a removed slot is gone")
    _methods(ctx, name)
    copy = ctx.image(name, "clone")
    require(isinstance(copy, dict) and set(copy) == {"$ref"} and copy != me,
            f"clone answers a new reference, got {short(copy)}")
    require(ctx.image(copy["$ref"], "a") == 1, "a clone has the receiver's own slots")
    alias = f"conformance_{ctx.tag}_alias"
    require(ctx.image(name, "registerAs:", alias) == me, "registerAs: answers the receiver")
    require(ctx.call("describe", target=alias)["uuid"] == uuid, f"{alias} names the receiver")
    applied = ctx.image(name, "applyActs:", [{"action": "ADD_SLOT", "slot": "c", "value": 5}])
    require(applied == {"applied": 1, "created": {}}, f"applyActs: answers {{applied, created}}, "
            f"got {short(applied)}")
    other = ctx.make_object("become", {"a": 2})
    require(ctx.image(name, "become:", {"$ref": other}) == me, "become: answers the receiver")
    require(ctx.image(name, "a") == 2 and ctx.image(other, "a") == 1,
            "after become: the two objects' slots are swapped")
    require(ctx.image(name, "isNil") is False, "isNil answers false")
    return "slots, methods, versions, clone, names, acts, become:"


def _methods(ctx: Context, name: str) -> None:
    """defineMethod:source: answers the new version; methodHistory:, rollbackMethod:to:."""
    first = ctx.image(name, "defineMethod:source:", "hello", _hello("v1"))
    require(first == 1, f"defineMethod:source: of a new method answers 1, got {short(first)}")
    second = ctx.image(name, "defineMethod:source:", "hello", _hello("v2"), "why")
    require(second == 2, f"redefining answers the new version 2, got {short(second)}")
    require(ctx.image(name, "hello") == "v2", "the newest version runs")
    history = ctx.image(name, "methodHistory:", "hello")
    require(isinstance(history, list) and [h.get("version") for h in history] == [1, 2],
            f"methodHistory: answers the versions oldest first, got {short(history)}")
    missing = [k for k in HISTORY_KEYS if k not in history[0]]
    require(not missing, f"a history entry has {HISTORY_KEYS}; lacks {missing}")
    back = ctx.image(name, "rollbackMethod:to:", "hello", 1)
    require(back == 3, f"rollbackMethod:to: answers the new version 3, got {short(back)}")
    require(ctx.image(name, "hello") == "v1", "after the rollback the first version runs")
    source = "def greet(self, who):\n    return 'hi ' + who\n"
    require(ctx.image(name, "defineMethod:source:", "greet:", source) == 1, "greet: is version 1")
    require(ctx.image(name, "greet:", "a") == "hi a", "a keyword selector runs with its argument")
    require(ctx.image(name, "greet", "b") == "hi b", "greet and greet: are the same slot")


@check("protected", "7.5 Protection")
def protected(ctx: Context) -> str:
    """A Genesis slot changed with author ``mind`` is ``Protected`` and changes nothing."""
    message: dict[str, Any] = {"target": "true", "selector": "setSlot:value:",
                               "args": ["truthValue", True], "author": "mind"}
    rid, reply = ctx.ask("send", **message)
    err = expect_error(reply, "Protected", rid=rid, what="true setSlot: 'truthValue' as mind",
                       not_where=SUPERVISOR)
    rid, reply = ctx.ask("send", target="true", selector="truthValue")
    require(expect_ok(reply, rid, "true truthValue") is True, "true truthValue is still true")
    return short(err["message"], 120)
