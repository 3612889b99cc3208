"""A real evolve and its rollback, asked twice each (docs/protocol.md, "evolve", "rollback",
"Exactly once"; W6). Only with ``--evolve-requirement``: they change the server's env.

``evolve-switch`` adds the requirement: sent on one socket, resent by its id on a
second while it runs (the resend joins it: both get the one reply), and a different
id asked meanwhile is ``Busy`` (``busy``). ``evolve-resend`` resends the id after
the reply and again after the handover ended: the same reply each time, and the
handover log holds one handover more, not two. ``evolve-unchanged`` adds the same
requirement again (``unchanged``). ``rollback-switch`` hands back to the env before
(the server is left on the env it had), asked and resent the same way.
What they did stays in ``Context.state`` for the event checks (W7).
"""

from __future__ import annotations

import time
from typing import Any

from .context import Context
from .registry import Failed, Skipped, check, require
from .shapes import SUPERVISOR, expect_error, expect_ok, reply_problems, short
from .wire import Conn, new_id, request

SWITCHED_KEYS = ("handover", "outcome", "env_before", "env_after", "timings", "validation")
POLL = 0.2  # s between status polls while waiting for a handover to end


def _wait(ctx: Context, predicate: Any, what: str) -> dict[str, Any]:
    """Poll ``status`` until ``predicate(status)``; ``Failed`` after the handover timeout."""
    deadline = time.monotonic() + ctx.options.handover_timeout
    while True:
        state = ctx.status()
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise Failed(f"{what} within {ctx.options.handover_timeout:g}s (status: "
                         f"state {state.get('state')}, handover {short(state.get('handover'))})")
        time.sleep(POLL)


def _idle(ctx: Context, what: str) -> dict[str, Any]:
    return _wait(ctx, lambda s: s.get("handover") is None and s.get("state") == "serving",
                 f"no handover idle and serving {what}")


def _rows(ctx: Context) -> list[dict[str, Any]]:
    rows = ctx.call("handovers")["handovers"]
    require(isinstance(rows, list), f"handovers answers {{handovers: [rows]}}, got {short(rows)}")
    return rows


def _asked_twice(ctx: Context, kind: str, fields: dict[str, Any], *,
                 busy_probe: bool) -> dict[str, Any]:
    """Ask ``kind`` on one socket, resend its id on another while it runs, and (with
    ``busy_probe``) ask an evolve of another id meanwhile; the record of what came back:
    ``message``, ``count`` (handovers before), ``reply``, ``joined`` (the resend's
    reply, when it ran long enough to be seen running), ``busy`` (id, reply)."""
    first, second, other = ctx.wire.dealer(), ctx.wire.dealer(), ctx.wire.dealer()
    message = request(kind, new_id(kind), who="conformance", **fields)
    record: dict[str, Any] = {"rid": message["id"], "message": message, "busy": None,
                              "count": len(_rows(ctx))}
    first.send(message)
    running = _wait(ctx, lambda s: s.get("handover") is not None or _answered(first), f"{kind} not "
                    "seen running nor answered")
    if running.get("handover") is not None:
        second.send(message)
        if busy_probe:  # an evolve that changes nothing: harmless if it is not refused
            busy = request("evolve", new_id("busy"), who="conformance")
            other.send(busy)
            answer = other.wait_reply(busy["id"], what="evolve asked meanwhile")
            record["busy"] = (busy["id"], answer)
        record["joined"] = second.wait_reply(message["id"], ctx.options.handover_timeout,
                                             what=f"{kind} resent while it runs")
    record["reply"] = first.wait_reply(message["id"], ctx.options.handover_timeout, what=kind)
    return record


def _answered(conn: Conn) -> bool:
    return bool(conn.sock.poll(0))


def _judge(kind: str, record: dict[str, Any]) -> str:
    reply = record["reply"]
    problems = reply_problems(reply)
    require(not problems, f"{kind} reply: " + "; ".join(problems))
    require(reply["id"] == record["rid"], f"{kind} reply carries id {reply['id']!r}")
    if "joined" in record:
        require(record["joined"] == reply, f"{kind} resent while it ran: expected the one reply "
                f"{short(reply)}, got {short(record['joined'])}")
    if not reply["ok"]:
        err = expect_error(reply, "HandoverFailed", rid=record["rid"], what=kind, where=SUPERVISOR)
        return f"HandoverFailed: {short(err['message'], 120)}"
    result = reply["result"]
    require(isinstance(result, dict), f"{kind} answers a map, got {short(result)}")
    if result.get("outcome") == "unchanged":
        return "unchanged"
    missing = [k for k in SWITCHED_KEYS if k not in result]
    require(not missing, f"a switched {kind} reply has {list(SWITCHED_KEYS)}; lacks {missing}")
    require(result["outcome"] == "switched",
            f"outcome is 'switched', got {short(result['outcome'])}")
    return f"switched to {short(result['env_after'], 60)}"


@check("evolve-switch", "3.5 evolve")
def evolve_switch(ctx: Context) -> str:
    """A real ``evolve`` (``--evolve-requirement``) answers ``{handover, outcome: switched,
    ...}``; its id resent while it runs joins it (both sockets get the one reply)."""
    requirement = ctx.options.evolve_requirement
    if not requirement:
        raise Skipped("no --evolve-requirement given: the suite changes no environment")
    _idle(ctx, "before the evolve")
    fields: dict[str, Any] = {"add": [requirement], "offline": ctx.options.offline,
                              "find_links": list(ctx.options.find_links)}
    record = _asked_twice(ctx, "evolve", fields, busy_probe=True)
    reply = record["reply"]
    if not reply.get("ok") and (reply.get("error") or {}).get("type") == "InvalidRequest":
        raise Skipped(f"evolve adding {requirement!r} was refused: InvalidRequest: "
                      f"{reply['error'].get('message')}")
    ctx.state["evolve"] = record
    verdict = _judge("evolve", record)
    if verdict == "unchanged":
        raise Skipped(f"evolve adding {requirement!r} answered unchanged (already installed): "
                      "no handover ran, none to join")
    require("joined" in record, f"the evolve was answered before the suite saw it run "
            f"({verdict}): a resend could not join it")
    return verdict + "; the resend joined it"


@check("busy", "4.3 Busy")
def busy(ctx: Context) -> str:
    """Another ``evolve`` (a different id) while a handover runs is ``Busy``, id echoed."""
    record = ctx.state.get("evolve")
    if record is None:
        raise Skipped("no evolve ran (evolve-switch)")
    if record.get("busy") is None:
        raise Skipped("the evolve ended before a second one could be asked")
    rid, reply = record["busy"]
    err = expect_error(reply, "Busy", rid=rid, what="evolve while another runs", where=SUPERVISOR)
    return short(err["message"], 120)


def _resent(ctx: Context, kind: str, record: dict[str, Any]) -> str:
    message = record["message"]
    conn = ctx.wire.dealer()
    timeout = ctx.options.handover_timeout
    soon = conn.ask(message, timeout)
    require(soon == record["reply"], f"{kind} resent by id right after its reply: expected "
            f"{short(record['reply'])}, got {short(soon)}")
    _idle(ctx, f"after the {kind}")
    later = conn.ask(message, timeout)
    require(later == record["reply"], f"{kind} resent by id after its handover ended: expected "
            f"{short(record['reply'])}, got {short(later)}")
    _idle(ctx, f"after the {kind} was resent")
    rows = _rows(ctx)
    count = len(rows)
    reply = record["reply"]
    unchanged = reply.get("ok") and (reply.get("result") or {}).get("outcome") == "unchanged"
    wanted = record["count"] + (0 if unchanged else 1)
    require(count == wanted, f"one {kind} asked three times is {wanted - record['count']} "
            f"handover(s): the log went from {record['count']} to {count}")
    hid = reply["result"].get("handover") if reply.get("ok") else None
    if hid is not None:
        row = next((r for r in rows if r.get("handover") == hid), None)
        require(row is not None, f"the handover log has no row for handover {hid}")
        require(row.get("request") == record["rid"], f"handover {hid}'s row names request "
                f"{short(row.get('request'))}, not {record['rid']!r}")
    return "the same reply twice, one handover"


@check("evolve-resend", "5.2 evolve and rollback")
def evolve_resend(ctx: Context) -> str:
    """The evolve's id resent after its reply and after its handover ended: the same reply,
    and no second handover (W6)."""
    record = ctx.state.get("evolve")
    if record is None:
        raise Skipped("no evolve ran (evolve-switch)")
    return _resent(ctx, "evolve", record)


@check("evolve-unchanged", "3.5 evolve")
def evolve_unchanged(ctx: Context) -> str:
    """An ``evolve`` adding the requirement just installed answers ``{outcome: "unchanged",
    env, message}``, starts nothing, and answers the same when resent by its id."""
    record = ctx.state.get("evolve")
    if record is None:
        raise Skipped("no evolve ran (evolve-switch)")
    if _outcome(record["reply"]) == "unchanged":
        message, first = record["message"], record["reply"]  # it was installed already
    else:
        if _outcome(record["reply"]) != "switched":
            raise Skipped("the evolve did not switch: nothing is installed to add again")
        _idle(ctx, "after the evolve")
        message = request("evolve", new_id("evolve"), **{
            k: v for k, v in record["message"].items() if k not in ("v", "id", "kind")})
        first = ctx.conn.ask(message, ctx.options.handover_timeout)
    result = expect_ok(first, message["id"], "evolve adding what is installed")
    require(isinstance(result, dict) and result.get("outcome") == "unchanged"
            and {"env", "message"} <= set(result),
            f"answers {{outcome: 'unchanged', env, message}}, got {short(result)}")
    again = ctx.conn.ask(message, ctx.options.handover_timeout)
    require(again == first, f"an unchanged evolve resent by id: expected {short(first)}, got "
            f"{short(again)}")
    status = ctx.status()
    require(status.get("handover") is None, f"an unchanged evolve started a handover: "
            f"{short(status.get('handover'))}")
    return "unchanged, the same when resent"


def _outcome(reply: dict[str, Any]) -> str | None:
    result = reply.get("result") if reply.get("ok") else None
    return result.get("outcome") if isinstance(result, dict) else None


@check("rollback-switch", "3.6 rollback")
def rollback_switch(ctx: Context) -> str:
    """``rollback`` to the env before the evolve switches back; resent by id it answers the
    same and hands over once (W6)."""
    record = ctx.state.get("evolve")
    if record is None:
        raise Skipped("no evolve ran (evolve-switch)")
    if _outcome(record["reply"]) != "switched":
        raise Skipped("the evolve did not switch: nothing to roll back")
    before = record["reply"]["result"].get("env_before")
    env_id = before.get("id") if isinstance(before, dict) else before
    _idle(ctx, "before the rollback")
    fields = {"env_id": env_id} if isinstance(env_id, str) else {}
    back = _asked_twice(ctx, "rollback", fields, busy_probe=False)
    ctx.state["rollback"] = back
    verdict = _judge("rollback", back)
    resent = _resent(ctx, "rollback", back)
    return f"{verdict}; {resent}"
