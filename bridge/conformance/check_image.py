"""The image's errors, provoked from outside (docs/protocol.md, "Replies and errors").

Each is a ``send`` (or ``describe``) the active incarnation answers: the reply carries
the request's id, the error type the spec lists, and ``where`` names the incarnation,
not the supervisor. The objects it needs are made for the run (``conformance_<tag>_*``,
``Context.make_object``); nothing here reaches ``doesNotUnderstand:`` on an object with
a mind behind it (that would ask the mind to write a method): the one not-understood
message goes to an object without parents.
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .registry import Failed, check, require
from .shapes import SUPERVISOR, expect_error, short


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


ERROR_METHODS = {
    "fail": "def fail(self):\n    return 1 / 0\n",
    "big": "def big(self):\n    return 'x' * 1100000\n",
}


def _refused(ctx: Context, types: str, target: str, selector: str, *args: Any,
             mentions: tuple[str, ...] = ()) -> str:
    rid, reply = ctx.send(target, selector, *args)
    what = f"send {target} {selector} {short(list(args), 80)}"
    err = expect_error(reply, types, rid=rid, what=what, mentions=mentions, not_where=SUPERVISOR)
    require(err["where"], f"{types}: where names the incarnation that answered, got ''")
    return err["where"]


@check("unknown-target", "4.4 Image errors")
def unknown_target(ctx: Context) -> str:
    """A target that names nothing: ``UnknownTarget`` (``send``, ``describe``, and a
    ``{$ref}`` argument)."""
    absent = f"conformance_{ctx.tag}_absent"
    where = _refused(ctx, "UnknownTarget", absent, "printString", mentions=(absent,))
    rid, reply = ctx.ask("describe", target=absent)
    expect_error(reply, "UnknownTarget", rid=rid, what=f"describe {absent}", not_where=SUPERVISOR)
    uuid = "00000000-0000-4000-8000-000000000000"
    _refused(ctx, "UnknownTarget", uuid, "printString")
    _refused(ctx, "UnknownTarget", "genesis", "respondsTo:", {"$ref": absent})
    return f"answered by {where}"


@check("does-not-understand", "4.4 Image errors")
def does_not_understand(ctx: Context) -> str:
    """A selector nothing answers, on an object without ``doesNotUnderstand:``:
    ``DoesNotUnderstand`` naming the selector."""
    name = ctx.make_object("orphan", parentless=True)
    _refused(ctx, "DoesNotUnderstand", name, "conformanceNoSuchSelector",
             mentions=("conformanceNoSuchSelector",))
    return "DoesNotUnderstand"


@check("image-errors", "4.4 Image errors")
def image_errors(ctx: Context) -> str:
    """``BadArguments`` (arity, a data slot, nesting over 64), ``InvalidValue``,
    ``MethodFailed``, ``MethodSourceError``, ``InvalidAct`` and ``ReplyTooLarge``, each
    provoked by one message."""
    name = ctx.make_object("errors", {"n": 0}, ERROR_METHODS)
    cases: list[tuple[str, str, str, tuple[Any, ...], tuple[str, ...]]] = [
        ("BadArguments", "genesis", "clone", (1,), ()),
        ("BadArguments", name, "n", (1,), ()),
        ("BadArguments", "genesis", "respondsTo:", (_nested(70),), ()),
        ("InvalidValue", name, "registerAs:", ("not a valid name!",), ()),
        ("MethodFailed", name, "fail", (), ("ZeroDivisionError",)),
        ("MethodSourceError", name, "defineMethod:source:", ("broken", "def broken(self:\n"), ()),
        ("InvalidAct", "genesis", "applyActs:", ([{"action": "CONFORMANCE_NO_SUCH_ACT"}],), ()),
        ("ReplyTooLarge", name, "big", (), ()),
    ]
    failures = []
    for types, target, selector, args, mentions in cases:
        try:
            _refused(ctx, types, target, selector, *args, mentions=mentions)
        except Failed as exc:
            failures.append(str(exc))
    if failures:
        raise Failed(f"{len(failures)} of {len(cases)} wrong: " + " | ".join(failures))
    return f"{len(cases)} errors, each of its documented type"


@check("failed-changes-nothing", "4.4 Image errors")
def failed_changes_nothing(ctx: Context) -> str:
    """A message that fails changes nothing: ``applyActs:`` whose last act is invalid
    leaves no trace of its first (the object it would have made is unknown)."""
    name = f"conformance_{ctx.tag}_never"
    acts = [{"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "o", "name": name,
             "slots": {}}, {"action": "CONFORMANCE_NO_SUCH_ACT"}]
    _refused(ctx, "InvalidAct", "genesis", "applyActs:", acts)
    _refused(ctx, "UnknownTarget", name, "printString")
    return f"{name} was not made"
