"""Exactly once by request id (docs/protocol.md, "5.1 Exactly once").

A ``send`` that changed something, resent with the same id, is answered with the
first reply and not run again; resent while it is in flight, the resend joins it
(every asker gets the one reply). Counted on an object made for the run: ``bump``
adds one to its slot ``n`` and answers it, so a second run of one id shows as a
count one too high. ``clone`` shows it too: run twice it would answer two objects.
"""

from __future__ import annotations

from .context import Context
from .registry import Failed, check, require
from .shapes import expect_ok, short
from .wire import new_id, request

BUMP = {"bump": "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"}


def _count(ctx: Context, name: str) -> int:
    value = ctx.image(name, "n")
    require(isinstance(value, int), f"{name} n is an integer, got {short(value)}")
    return value


@check("once-resend", "5.1 Exactly once")
def once_resend(ctx: Context) -> str:
    """``bump`` resent by its id after its reply: the same reply, and ``n`` counts it once."""
    name = ctx.make_object("once", {"n": 0}, BUMP)
    rid = new_id("bump")
    _, first = ctx.send(name, "bump", rid=rid)
    require(expect_ok(first, rid, "bump") == 1, f"the first bump answers 1, got {short(first)}")
    for attempt in (2, 3):
        _, again = ctx.send(name, "bump", rid=rid)
        require(again == first, f"resend {attempt} of {rid}: expected the first reply "
                f"{short(first)}, got {short(again)}")
    count = _count(ctx, name)
    require(count == 1, f"after one bump resent twice, n is 1, got {count}")
    rid2, other = ctx.send(name, "bump")
    require(expect_ok(other, rid2, "a new bump") == 2,
            f"a bump with a new id runs: answers 2, got {short(other)}")
    return "one effect for three sends of one id; a new id runs"


@check("once-concurrent", "5.1 Exactly once")
def once_concurrent(ctx: Context) -> str:
    """One id sent on three sockets at once: every socket gets the same reply, one effect."""
    name = ctx.make_object("joined", {"n": 0}, BUMP)
    message = request("send", new_id("bump"), target=name, selector="bump", args=[])
    conns = [ctx.wire.dealer() for _ in range(3)]
    for conn in conns:
        conn.send(message)
    replies = [conn.wait_reply(message["id"], what="joined bump") for conn in conns]
    for reply in replies:
        expect_ok(reply, message["id"], "joined bump")
    require(all(reply == replies[0] for reply in replies),
            f"every asker gets the one reply, got {[short(r) for r in replies]}")
    require(replies[0]["result"] == 1, f"the joined bump answers 1, got {short(replies[0])}")
    count = _count(ctx, name)
    require(count == 1, f"three sends of one id at once bump once: n is {count}")
    return "3 askers, 1 effect"


@check("once-clone", "5.1 Exactly once")
def once_clone(ctx: Context) -> str:
    """``clone`` resent by its id answers the same new object, not a second one."""
    name = ctx.make_object("proto")
    rid = new_id("clone")
    _, first = ctx.send(name, "clone", rid=rid)
    made = expect_ok(first, rid, f"{name} clone")
    require(isinstance(made, dict) and set(made) == {"$ref"},
            f"clone answers a reference {{$ref: uuid}}, got {short(made)}")
    _, again = ctx.send(name, "clone", rid=rid)
    if again != first:
        raise Failed(f"clone resent by id {rid} answered {short(again)}, not the first reply "
                     f"{short(first)}: it ran twice")
    return f"one clone, {made['$ref']}"
