"""The shapes docs/protocol.md promises, written down here as the suite reads the spec.

Deliberately not ``bridge.messages``: the suite holds a server to the document, so a
drift between our schema and the spec shows as a failure instead of passing along.

* ``reply_problems``: a reply is exactly ``{v, id, ok: true, result}`` or
  ``{v, id, ok: false, error: {type, message, where}}`` (W1), never both keys;
* ``expect_ok`` / ``expect_error``: a reply to a request of ours, judged (the id it
  must carry, the error type, words its message must name, who answered);
* ``event_problems``: an event on the PUB stream is two frames, the topic (``kind`` up
  to its first dot: ``EVENT_TOPICS`` in 1.0, any other a later addition) and ``{v, kind, ts, data}``; the kinds in
  ``EVENT_DATA`` carry at least the data keys listed there, a handover's phase and
  outcome are among the documented ones.

Section numbers in the checks are docs/protocol.md's (protocol 1.0).

Pure functions over decoded values; every problem is a sentence a person can act on.
"""

from __future__ import annotations

from typing import Any

from .registry import Failed
from .wire import PROTOCOL_VERSION, unpack

__all__ = ["EVENT_DATA", "EVENT_TOPICS", "HANDOVER_OUTCOMES", "HANDOVER_PHASES",
           "MAX_ERROR_MESSAGE", "MAX_ID", "SUPERVISOR", "event_problems", "expect_error",
           "expect_ok", "reply_problems", "short"]

MAX_ID = 128
#: error messages are at most 4 KiB of text
MAX_ERROR_MESSAGE = 4096
#: the ``where`` of an error the supervisor answers itself
SUPERVISOR = "supervisor"
EVENT_TOPICS = frozenset({"incarnation", "supervisor", "zeo", "handover", "vllm", "image"})
#: data keys each documented event kind carries at least (6 Events; W7: every handover.*
#: event names its handover and the request that started it). A kind not listed here is
#: a compatible addition (2 Versioning): its shape is judged, its data is not.
EVENT_DATA: dict[str, tuple[str, ...]] = {
    "incarnation.spawned": ("incarnation", "env_id"),
    "incarnation.ready": ("incarnation", "pid", "env_id", "role"),
    "incarnation.exited": ("incarnation", "exit_code", "expected", "poisoned", "role"),
    "supervisor.degraded": ("reason",),
    "supervisor.stopping": (),
    "supervisor.poisoned": ("request", "target", "selector", "deaths"),
    "zeo.restarted": ("restarts",),
    "handover.phase": ("handover", "request", "phase"),
    "handover.switched": ("handover", "request", "old", "new", "env_id"),
    "handover.rolled_back": ("handover", "request", "to", "reason"),
    "handover.completed": ("handover", "request", "outcome"),
    "vllm.starting": ("pid", "port", "base_url"),
    "vllm.ready": ("pid", "base_url", "seconds"),
    "vllm.exited": ("pid", "exit_code", "restarts"),
    "vllm.failed": ("reason",),
}
HANDOVER_PHASES = ("build", "incarnate", "validate", "switch", "drain", "probation", "retire")
#: ``interrupted``: reverted by a restarted supervisor (``request: ""``, ``after_restart``)
HANDOVER_OUTCOMES = ("completed", "failed", "rolled_back", "interrupted")
#: data keys every image event carries (the supervisor adds the incarnation)
IMAGE_EVENT_DATA = ("incarnation",)


def short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def reply_problems(reply: Any) -> list[str]:
    """What is wrong with a decoded reply's shape (W1); empty when it is one of the two forms."""
    if not isinstance(reply, dict):
        return [f"a reply is a msgpack map, got {type(reply).__name__}: {short(reply)}"]
    problems = []
    if any(not isinstance(k, str) for k in reply):
        problems.append(f"a reply's keys are strings: {short(list(reply))}")
    ok = reply.get("ok")
    if not isinstance(ok, bool):
        return [*problems, f"'ok' is a boolean, got {short(ok)} in {short(reply)}"]
    wanted = {"v", "id", "ok", "result"} if ok else {"v", "id", "ok", "error"}
    keys = set(reply)
    if keys != wanted:
        extra, missing = sorted(map(str, keys - wanted)), sorted(wanted - keys)
        problems.append(f"an ok={ok} reply has exactly the keys {sorted(wanted)} "
                        f"(extra: {extra}, missing: {missing})")
    if reply.get("v") != PROTOCOL_VERSION:
        problems.append(f"a reply carries v: {PROTOCOL_VERSION}, got {short(reply.get('v'))}")
    rid = reply.get("id")
    if not isinstance(rid, str) or len(rid) > MAX_ID:
        problems.append(f"a reply's id is a string of at most {MAX_ID} characters, "
                        f"got {short(rid)}")
    if not ok:
        problems += _error_problems(reply.get("error"))
    return problems


def _error_problems(error: Any) -> list[str]:
    if not isinstance(error, dict):
        return [f"'error' is a map {{type, message, where}}, got {short(error)}"]
    problems = []
    if set(error) != {"type", "message", "where"}:
        problems.append("'error' has exactly the keys type, message, where; "
                        f"got {sorted(map(str, error))}")
    for key in ("type", "message", "where"):
        if not isinstance(error.get(key), str):
            problems.append(f"error.{key} is a string, got {short(error.get(key))}")
    if isinstance(error.get("type"), str) and not error["type"]:
        problems.append("error.type is not empty")
    if isinstance(error.get("message"), str) and len(error["message"]) > MAX_ERROR_MESSAGE:
        problems.append(f"error.message is at most {MAX_ERROR_MESSAGE} characters, "
                        f"got {len(error['message'])}")
    return problems


def _well_formed(reply: Any, what: str) -> dict[str, Any]:
    problems = reply_problems(reply)
    if problems:
        raise Failed(f"{what}: " + "; ".join(problems))
    return reply


def expect_ok(reply: Any, rid: str, what: str = "reply") -> Any:
    """The result of a well-formed ok reply to request ``rid``; else ``Failed`` saying why."""
    reply = _well_formed(reply, what)
    if reply["id"] != rid:
        raise Failed(f"{what}: the reply carries id {reply['id']!r}, not the request's {rid!r}")
    if not reply["ok"]:
        err = reply["error"]
        raise Failed(f"{what}: answered {err['type']}: {err['message']} (from {err['where']})")
    return reply["result"]


def expect_error(reply: Any, types: str | tuple[str, ...], *, rid: str, what: str = "reply",
                 mentions: tuple[str, ...] = (), where: str | None = None,
                 not_where: str | None = None) -> dict[str, str]:
    """The error of a well-formed error reply of one of ``types`` carrying id ``rid``
    ("" for frames that could not be read that far), whose message names each of
    ``mentions`` (case-insensitive); ``where`` is who must have answered, ``not_where``
    who must not have. Else ``Failed`` saying what came instead."""
    types = (types,) if isinstance(types, str) else types
    reply = _well_formed(reply, what)
    if reply["ok"]:
        raise Failed(f"{what}: expected {' or '.join(types)}, got ok with {short(reply['result'])}")
    err = reply["error"]
    said = f"{err['type']}: {err['message']}"
    if err["type"] not in types:
        raise Failed(f"{what}: expected {' or '.join(types)}, got {said}")
    if reply["id"] != rid:
        raise Failed(f"{what}: the {err['type']} reply carries id {reply['id']!r}; "
                     f"expected {rid!r}")
    missing = [m for m in mentions if m.lower() not in err["message"].lower()]
    if missing:
        raise Failed(f"{what}: the message does not name {missing}: {said}")
    if where is not None and err["where"] != where:
        raise Failed(f"{what}: where is {err['where']!r}, expected {where!r} ({said})")
    if not_where is not None and err["where"] == not_where:
        raise Failed(f"{what}: answered by {not_where!r}, expected the image ({said})")
    return err


def event_problems(frames: list[bytes]) -> tuple[dict[str, Any] | None, list[str]]:
    """The decoded event and what is wrong with it (empty when it has the documented shape)."""
    if len(frames) != 2:
        return None, [f"an event is two frames (topic, payload), got {len(frames)}"]
    topic_bytes, payload = frames
    try:
        event = unpack(payload)
    except (ValueError, TypeError) as exc:
        return None, [f"an event's payload is msgpack: {exc}"]
    if not isinstance(event, dict):
        return None, [f"an event is a map, got {type(event).__name__}"]
    problems = []
    if set(event) != {"v", "kind", "ts", "data"}:
        problems.append("an event has exactly the keys v, kind, ts, data; "
                        f"got {sorted(map(str, event))}")
    kind = event.get("kind")
    if event.get("v") != PROTOCOL_VERSION:
        problems.append(f"an event carries v: {PROTOCOL_VERSION}, got {short(event.get('v'))}")
    if not isinstance(kind, str) or not kind:
        return event, [*problems, f"an event's kind is a string, got {short(kind)}"]
    topic = kind.split(".")[0]
    if topic_bytes != topic.encode():
        problems.append(f"event {kind}: the topic frame is the kind up to its first dot "
                        f"({topic!r}), got {topic_bytes!r}")
    # a topic outside EVENT_TOPICS is a later 1.x server's compatible addition: not judged
    ts = event.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or ts < 1e9:
        problems.append(f"event {kind}: ts is wall-clock seconds (a number), got {short(ts)}")
    data = event.get("data")
    if not isinstance(data, dict):
        return event, [*problems, f"event {kind}: data is a map, got {short(data)}"]
    needed = IMAGE_EVENT_DATA if topic == "image" else EVENT_DATA.get(kind, ())
    missing = [key for key in needed if key not in data]
    if missing:
        problems.append(f"event {kind}: data lacks {missing} (has {sorted(map(str, data))})")
    return event, problems + _handover_problems(kind, data)


def _handover_problems(kind: str, data: dict[str, Any]) -> list[str]:
    problems = []
    if kind.startswith("handover.") and not isinstance(data.get("request", ""), str):
        problems.append(f"event {kind}: request is a string, got {short(data.get('request'))}")
    if kind == "handover.phase" and data.get("phase") not in HANDOVER_PHASES:
        problems.append(f"event {kind}: phase is one of {HANDOVER_PHASES}, got "
                        f"{short(data.get('phase'))}")
    if kind == "handover.completed":
        outcome = data.get("outcome")
        if outcome not in HANDOVER_OUTCOMES:
            problems.append(f"event {kind}: outcome is one of {HANDOVER_OUTCOMES}, got "
                            f"{short(outcome)}")
        elif ((outcome != "completed" or data.get("after_restart"))
              and not {"failed_phase", "reason"} <= set(data)):
            problems.append(f"event {kind}: a {outcome} handover names failed_phase and reason")
    return problems
