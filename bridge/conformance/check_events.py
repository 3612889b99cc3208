"""The event stream (docs/protocol.md, "6 Events"): judged last, over what the run saw.

The suite subscribed before its first check (``Context.open_events``): one SUB socket
for every topic, one for ``handover`` alone. Every event that arrived must have the
documented shape (two frames, the topic, ``{v, kind, ts, data}``, the data keys of its
kind). The handover events of the suite's own evolve and rollback must name the
handover and the request that started it (W7) and arrive on topic ``handover``. The
other topics can not be provoked from outside without harm: an event seen on them
during the run is judged, and a topic with none is skipped saying why.
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .events import EventStream, Seen
from .registry import Failed, Skipped, check, require
from .shapes import short

#: why nothing was seen on a topic the suite does not provoke
UNPROVOKED = {
    "incarnation": "none seen: incarnations start and end with a handover or a crash "
                   "(give --evolve-requirement to see them)",
    "supervisor": "none seen: the supervisor publishes on degradation, a poison message or "
                  "shutdown, none of which the suite provokes",
    "zeo": "none seen: only a restart of the storage server publishes one",
    "vllm": "none seen: only a supervisor that runs a model server publishes them",
    "image": "none seen: a fresh image has no message that publishes (the inquiry loop "
             "needs a mind)",
}


def _stream(ctx: Context) -> EventStream:
    if ctx.events is None:
        raise Skipped(ctx.events_problem or "no event stream")
    ctx.drain()
    return ctx.events


@check("events-subscribe", "6 Events")
def events_subscribe(ctx: Context) -> str:
    """A SUB socket connects to the events address (every topic, and ``handover`` alone)."""
    if ctx.events is None:
        problem = ctx.events_problem or "no event stream"
        if ctx.options.events:
            raise Failed(problem)
        raise Skipped(problem)
    return f"subscribed to {ctx.events.address}"


@check("events-shape", "6 Events")
def events_shape(ctx: Context) -> str:
    """Every event that arrived is two frames, its topic, and ``{v, kind, ts, data}`` with
    its kind's data keys."""
    seen = _stream(ctx).seen
    if not seen:
        raise Skipped("no event arrived during the run")
    problems = sorted({p for s in seen for p in s.problems})
    require(not problems, f"{len(problems)} problem(s): " + " | ".join(problems))
    kinds = sorted({s.kind for s in seen})
    return f"{len(seen)} event(s): {', '.join(kinds)}"


def _own_handover(ctx: Context, stream: EventStream, kind: str) -> tuple[str, list[Seen]]:
    """The events of the handover the suite's ``kind`` request started (waited for until
    its ``handover.completed``)."""
    record = ctx.state[kind]
    rid = record["rid"]
    done = stream.wait_for(lambda s: s.kind == "handover.completed"
                           and s.data.get("request") == rid, ctx.options.handover_timeout)
    handovers = [s for s in stream.seen if s.kind.startswith("handover.")]
    mine = [s for s in handovers if s.data.get("request") == rid]
    if done is None:
        raise Failed(f"no handover.completed naming request {rid} within "
                     f"{ctx.options.handover_timeout:g}s; its events: {[s.kind for s in mine]}; "
                     f"every handover event: {[(s.kind, short(s.data, 80)) for s in handovers]}")
    hid = done.data.get("handover")
    require(isinstance(hid, str) and hid,
            f"handover.completed names its handover, got {short(done.data)}")
    result = record["reply"].get("result")
    if isinstance(result, dict) and "handover" in result:
        require(result["handover"] == hid, f"the {kind} reply names handover "
                f"{result['handover']!r}, its events {hid!r}")
    theirs = [s for s in handovers if s.data.get("handover") == hid]
    ends = [s for s in theirs if s.kind == "handover.completed"]
    require(len(ends) == 1,
            f"handover {hid} ends with exactly one handover.completed, got {len(ends)}")
    strays = [s.kind for s in theirs if s.data.get("request") != rid]
    require(not strays, f"events of handover {hid} that do not name request {rid}: {strays}")
    kinds = [s.kind for s in mine]
    require("handover.phase" in kinds, f"handover {hid}: no handover.phase event ({kinds})")
    outcome = done.data.get("outcome")
    require(isinstance(outcome, str) and outcome, f"handover.completed names the outcome, got "
            f"{short(done.data)}")
    if isinstance(result, dict) and result.get("outcome") == "switched":
        require("handover.switched" in kinds, f"a switched {kind}'s events include "
                f"handover.switched ({kinds})")
    if not record["reply"].get("ok"):
        require("handover.switched" not in kinds, f"a failed {kind} never has handover.switched")
    return hid, mine


def _ran(ctx: Context) -> list[str]:
    kinds = [k for k in ("evolve", "rollback") if k in ctx.state]
    ran = []
    for kind in kinds:
        reply: dict[str, Any] = ctx.state[kind]["reply"]
        result = reply.get("result") if reply.get("ok") else None
        if isinstance(result, dict) and result.get("outcome") == "unchanged":
            continue
        ran.append(kind)
    if not ran:
        raise Skipped("no handover ran (give --evolve-requirement to run one)")
    return ran


@check("events-handover", "6 Events: handover")
def events_handover(ctx: Context) -> str:
    """The suite's own evolve and rollback publish ``handover.phase`` ... ``handover.completed``,
    each naming the handover and the request that started it (W7)."""
    ran = _ran(ctx)
    stream = _stream(ctx)
    said = []
    for kind in ran:
        hid, mine = _own_handover(ctx, stream, kind)
        phases = [s.data.get("phase") for s in mine if s.kind == "handover.phase"]
        said.append(f"{kind} {hid}: {len(mine)} events, phases {phases}")
    return "; ".join(said)


@check("events-handover-topic", "6 Events: handover")
def events_handover_topic(ctx: Context) -> str:
    """A subscriber to the topic ``handover`` alone gets every ``handover.*`` event, and only
    those."""
    ran = _ran(ctx)
    stream = _stream(ctx)
    for kind in ran:
        _own_handover(ctx, stream, kind)
    only = ctx.handover_events
    assert only is not None  # opened with the main stream
    only.drain()
    wrong = sorted({s.kind for s in only.seen if not s.kind.startswith("handover.")})
    require(not wrong, f"the handover subscription got other kinds: {wrong}")
    everywhere = [s.frames for s in stream.seen if s.kind.startswith("handover.")]
    here = [s.frames for s in only.seen]
    missing = [f for f in everywhere if f not in here]
    require(everywhere and not missing, f"the handover subscription missed {len(missing)} of "
            f"{len(everywhere)} handover event(s)")
    return f"{len(here)} handover event(s) on topic 'handover'"


def _topic_check(topic: str) -> None:
    def seen_on_topic(ctx: Context) -> str:
        seen = [s for s in _stream(ctx).seen if s.frames and s.frames[0] == topic.encode()]
        if not seen:
            raise Skipped(UNPROVOKED[topic])
        problems = sorted({p for s in seen for p in s.problems})
        require(not problems, " | ".join(problems))
        return f"{len(seen)} event(s): {', '.join(sorted({s.kind for s in seen}))}"
    seen_on_topic.__doc__ = (f"Events seen on topic ``{topic}`` during the run have the "
                             "documented shape.")
    check(f"events-{topic}", f"6 Events: {topic}")(seen_on_topic)


for _topic in ("incarnation", "supervisor", "zeo", "vllm", "image"):
    _topic_check(_topic)
