"""The errors a client provokes at the frontend, and the id each reply carries (W2-W4).

Each probe goes on a raw DEALER followed by a fence ping (``Conn.probe``): exactly one
reply must come back, from the supervisor, of the documented type, naming what was
wrong, carrying the request's id whenever the frame decoded to a map with a valid id
(a string of 1-128 characters), else ``id: ""`` (not msgpack, not a map, over
``max_frame``, or the id itself missing or invalid). A check runs all its rows and
fails naming every row that did not answer as the spec says.
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .registry import Failed, check
from .shapes import SUPERVISOR, expect_error, expect_ok, short
from .wire import Conn, Ext, new_id, pack, request

#: (what, payload, the id the reply must carry, words the message must name)
Row = tuple[str, bytes, str, tuple[str, ...]]


def _answered(conn: Conn, row: Row, types: str) -> None:
    what, payload, rid, mentions = row
    seen = conn.probe(payload)
    if len(seen) != 1:
        raise Failed(f"{what}: expected exactly one reply, got {len(seen)}: "
                     f"{[short(s.reply, 160) for s in seen]}")
    if seen[0].envelope:
        raise Failed(f"{what}: a reply to an envelope-less message is one frame, got "
                     f"{seen[0].frames!r}")
    expect_error(seen[0].reply, types, rid=rid, what=what, mentions=mentions, where=SUPERVISOR)


def _all_rows(ctx: Context, rows: list[Row], types: str) -> str:
    _judged(ctx, [(row, types) for row in rows])
    return f"{len(rows)} case(s) answered {types}"


def _judged(ctx: Context, cases: list[tuple[Row, str]]) -> None:
    """Every case probed on one DEALER; ``Failed`` naming each that was answered wrong."""
    conn = ctx.wire.dealer()
    failures = []
    for row, types in cases:
        try:
            _answered(conn, row, types)
        except Failed as exc:
            failures.append(str(exc))
    if failures:
        raise Failed(f"{len(failures)} of {len(cases)} wrong: " + " | ".join(failures))


def _row(what: str, message: dict[str, Any], *, echo: bool = True,
         mentions: tuple[str, ...] = ()) -> Row:
    rid = message.get("id") if echo else ""
    return what, pack(message), rid if isinstance(rid, str) else "", mentions


#: a field value for ``_bare`` that removes the field
_REMOVE = object()


def _bare(**fields: Any) -> dict[str, Any]:
    """A ping map with a fresh id, then ``fields`` laid over it (``_REMOVE`` drops one)."""
    message = request("ping")
    message.update(fields)
    return {k: v for k, v in message.items() if v is not _REMOVE}


@check("malformed-frame", "4.3 MalformedFrame")
def malformed_frame(ctx: Context) -> str:
    """A payload that is not msgpack, or not a map: ``MalformedFrame`` with id ""."""
    whole = pack(request("ping"))
    rows: list[Row] = [
        ("the byte 0xc1 (never msgpack)", b"\xc1", "", ()),
        ("a truncated map", whole[: len(whole) // 2], "", ()),
        ("an empty payload", b"", "", ()),
        ("a msgpack array", pack(["ping", new_id()]), "", ()),
        ("a msgpack string", pack("ping"), "", ()),
        ("msgpack nil", pack(None), "", ()),
    ]
    return _all_rows(ctx, rows, "MalformedFrame")


@check("unsupported-version", "2 Versioning")
def unsupported_version(ctx: Context) -> str:
    """A missing or wrong ``v``: ``UnsupportedVersion`` naming what was found, id echoed (W3)."""
    rows = [
        _row("no v", _bare(v=_REMOVE)),
        _row("v 2", _bare(v=2), mentions=("2",)),
        _row("v 0", _bare(v=0), mentions=("0",)),
        _row("v nil", _bare(v=None)),
        _row("v 'conformance'", _bare(v="conformance"), mentions=("conformance",)),
        _row("v 2 on a send", request("send", target="genesis", selector="printString") | {"v": 2},
             mentions=("2",)),
    ]
    return _all_rows(ctx, rows, "UnsupportedVersion")


@check("invalid-message-fields", "4.3 InvalidMessage")
def invalid_message_fields(ctx: Context) -> str:
    """A field of the wrong type, missing, or unknown: ``InvalidMessage`` naming it, id echoed."""
    rows = [
        _row("no kind", _bare(kind=_REMOVE), mentions=("kind",)),
        _row("kind 5", _bare(kind=5), mentions=("kind",)),
        _row("an unknown field", _bare(bogus_field=1), mentions=("bogus_field",)),
        _row("send without target", request("send", selector="printString"), mentions=("target",)),
        _row("send target 5", request("send", target=5, selector="printString"),
             mentions=("target",)),
        _row("send without selector", request("send", target="genesis"), mentions=("selector",)),
        _row("send args a string", request("send", target="genesis", selector="printString",
                                           args="x"), mentions=("args",)),
        _row("send author 5", request("send", target="genesis", selector="printString", author=5),
             mentions=("author",)),
        _row("evolve add a string", request("evolve", add="greetlib"), mentions=("add",)),
        _row("evolve offline a list", request("evolve", offline=[1]), mentions=("offline",)),
        _row("rollback force a map", request("rollback", force={"a": 1}), mentions=("force",)),
        _row("handovers last a string", request("handovers", last="x"), mentions=("last",)),
        _row("handovers verify a list", request("handovers", verify=[1]), mentions=("verify",)),
    ]
    return _all_rows(ctx, rows, "InvalidMessage")


@check("invalid-message-limits", "3 Requests: limits")
def invalid_message_limits(ctx: Context) -> str:
    """Each documented field limit is enforced: ``InvalidMessage`` naming the field, id echoed."""
    long = "x" * 257
    rows = [
        _row("send target of 257", request("send", target=long, selector="printString"),
             mentions=("target",)),
        _row("send target empty", request("send", target="", selector="printString"),
             mentions=("target",)),
        _row("send selector of 257", request("send", target="genesis", selector=long),
             mentions=("selector",)),
        _row("send author of 65", request("send", target="genesis", selector="printString",
                                          author="a" * 65), mentions=("author",)),
        _row("describe target of 257", request("describe", target=long), mentions=("target",)),
        _row("evolve 101 adds", request("evolve", add=[f"p{i}" for i in range(101)]),
             mentions=("add",)),
        _row("evolve 101 removes", request("evolve", remove=[f"p{i}" for i in range(101)]),
             mentions=("remove",)),
        _row("evolve a requirement of 513", request("evolve", add=["p" * 513]), mentions=("add",)),
        _row("evolve 21 find_links", request("evolve", find_links=[f"/f{i}" for i in range(21)]),
             mentions=("find_links",)),
        _row("evolve probation -1", request("evolve", probation=-1), mentions=("probation",)),
        _row("evolve probation 3601", request("evolve", probation=3601), mentions=("probation",)),
        _row("evolve who of 129", request("evolve", who="w" * 129), mentions=("who",)),
        _row("rollback env_id of 65", request("rollback", env_id="e" * 65), mentions=("env_id",)),
        _row("rollback probation 3601", request("rollback", probation=3601),
             mentions=("probation",)),
        _row("rollback who of 129", request("rollback", who="w" * 129), mentions=("who",)),
        _row("handovers last 0", request("handovers", last=0), mentions=("last",)),
    ]
    return _all_rows(ctx, rows, "InvalidMessage")


@check("invalid-id", "4.2 The id")
def invalid_id(ctx: Context) -> str:
    """A missing or invalid id (not a string of 1-128 characters): ``InvalidMessage``
    naming ``id``, answered with id ""."""
    rows = [
        _row("no id", _bare(id=_REMOVE), echo=False, mentions=("id",)),
        _row("id ''", _bare(id=""), echo=False, mentions=("id",)),
        _row("id of 129", _bare(id="i" * 129), echo=False, mentions=("id",)),
        _row("id 5", _bare(id=5), echo=False, mentions=("id",)),
        _row("id nil", _bare(id=None), echo=False, mentions=("id",)),
    ]
    return _all_rows(ctx, rows, "InvalidMessage")


@check("id-echo", "4.2 The id")
def id_echo(ctx: Context) -> str:
    """Ids of 1 and 128 characters, ASCII or not, come back exactly."""
    conn = ctx.wire.dealer()
    for rid in ("i", "i" * 128, "é" * 128, "✓ conformance id with spaces"):
        message = request("ping", rid)
        seen = conn.probe(pack(message))
        if len(seen) != 1:
            raise Failed(f"ping with id {rid!r}: expected one reply, got {len(seen)}")
        expect_ok(seen[0].reply, rid, f"ping with id {short(rid, 40)}")
    return "4 ids echoed"


@check("invalid-value-keys", "1.3 Encoding")
def invalid_value_keys(ctx: Context) -> str:
    """A map with a non-string key anywhere: ``InvalidValue`` naming the path, id echoed (W4)."""
    def send(*args: Any) -> dict[str, Any]:
        return request("send", target="genesis", selector="printString", args=list(args))
    rows = [
        _row("an int key in args[0]", send({1: "x"}), mentions=("args[0]",)),
        _row("an int key deep in args[1]", send("a", {"k": [{2: "x"}]}), mentions=("args[1]",)),
        _row("a float key in args[0]", send({1.5: "x"}), mentions=("args[0]",)),
        _row("a bytes key in args[0]", send({b"k": "x"}), mentions=("args[0]",)),
        _row("an int key at the top level", {**_bare(), 7: "x"}),
    ]
    return _all_rows(ctx, rows, "InvalidValue")


@check("invalid-value-ext", "1.3 Encoding")
def invalid_value_ext(ctx: Context) -> str:
    """A msgpack extension value: ``InvalidValue`` naming the path and the type, id echoed (W4)."""
    rows = [
        _row("extension type 5 in args[1]", request(
            "send", target="genesis", selector="printString", args=["a", Ext(5, b"x")]),
             mentions=("args[1]", "5")),
        _row("extension type 42 deep in args[0]", request(
            "send", target="genesis", selector="printString", args=[{"k": [Ext(42, b"")]}]),
             mentions=("args[0]", "42")),
    ]
    return _all_rows(ctx, rows, "InvalidValue")


@check("frame-too-large", "1.4 Sizes")
def frame_too_large(ctx: Context) -> str:
    """A frame over ``max_frame`` bytes: ``FrameTooLarge`` with id ""."""
    size = ctx.options.max_frame
    message = request("ping", pad="x" * (size + 1024))
    rows: list[Row] = [(f"a ping of {size + 1024} bytes and more", pack(message), "", ())]
    return _all_rows(ctx, rows, "FrameTooLarge")


@check("error-precedence", "4.3 Order of checks")
def error_precedence(ctx: Context) -> str:
    """A message wrong in two ways is answered for the first in the documented order: size,
    msgpack and map, ``v``, values, schema."""
    def send(**fields: Any) -> dict[str, Any]:
        return request("send", target="genesis", selector="printString", **fields)
    junk = b"\xc1" * (ctx.options.max_frame + 1)
    cases: list[tuple[Row, str]] = [
        (("junk over max_frame", junk, "", ()), "FrameTooLarge"),
        (_row("v 2 and an int key", send(args=[{1: "x"}]) | {"v": 2}), "UnsupportedVersion"),
        (_row("v 2 and an unknown field", _bare(v=2, bogus_field=1)), "UnsupportedVersion"),
        (_row("no v and id 5", _bare(v=_REMOVE, id=5), echo=False), "UnsupportedVersion"),
        (_row("an int key and an unknown kind", {**_bare(kind="conformance_no_such_kind"), 3: 1}),
         "InvalidValue"),
        (_row("an extension and no target", request("send", selector="printString",
                                                    args=[Ext(7, b"")])), "InvalidValue"),
        (_row("an unknown field on an unknown kind", _bare(kind="conformance_no_such_kind",
                                                           bogus_field=1)), "InvalidMessage"),
    ]
    _judged(ctx, cases)
    return f"{len(cases)} cases, each answered for its first fault"
