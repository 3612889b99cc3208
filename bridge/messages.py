"""The whole wire schema: every message that crosses a process boundary.

Three conversations, all msgpack maps with a protocol version ``v``:

* client <-> supervisor (frontend, ZMQ DEALER -> ROUTER): a ``Request``
  (discriminated on ``kind``) and a ``Reply``. Every request carries a
  client-chosen ``id`` (a uuid4 by default); the reply carries the same id, ``ok``,
  and ``result`` or ``error``, never both (``Reply.wire``; the old both-keys form is read).
* supervisor <-> incarnation (backend, ZMQ DEALER -> ROUTER): ``Ready``, ``Attach``
  (from each of its lanes), ``Heartbeat``, ``Bye``, ``Validated``, ``Publish`` and
  ``Suspect`` from the incarnation;
  ``Stop``, ``Validate`` and ``Quarantine`` from the supervisor; requests and replies
  travel as the client's own bytes.
* supervisor -> anyone (event stream, ZMQ PUB): ``Event``.

The frame layout of each conversation is in docs/protocol.md. Codec concerns (msgpack,
size limits) live in ``bridge.codec``; this module is only schema. Every limit and default
is a ``Field`` here, so it is in the JSON Schema (``bridge.schema``; ``v`` and ``kind`` are
required there). ``PROTOCOL`` is "major.minor", ``v`` the major: a compatible addition (an
optional field, a request kind, an error type, an event) raises the minor, keeps ``v``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "INCARNATION_ERROR_TYPES", "MAX_QUARANTINED_REPORTED", "PROTOCOL",
    "PROTOCOL_VERSION", "SUPERVISOR_ERROR_TYPES", "Attach", "Bye", "Control", "DescribeRequest",
    "ErrorInfo", "Event", "EvolveRequest", "HandoversRequest", "Heartbeat",
    "PingRequest", "Publish", "Quarantine", "QuarantinedMethod", "Ready", "Reply",
    "Request", "RollbackRequest", "SendRequest", "StatusRequest", "Stop", "Suspect",
    "Validate", "Validated",
]

#: the protocol's version, "major.minor"
PROTOCOL = "1.0"
#: ``v`` on the wire: the protocol's major version
PROTOCOL_VERSION = 1

RequestId = Annotated[str, Field(
    min_length=1, max_length=128,
    description="chosen by the client (bridge.Client: a uuid4), unique across clients; "
                "a resend with the same id is the same request")]
Target = Annotated[str, Field(min_length=1, max_length=256,
                              description="an object's uuid or a registered name (genesis, ...)")]
Selector = Annotated[str, Field(min_length=1, max_length=256,
                                description="a selector, e.g. printString, setSlot:value:")]


def _on_the_wire(schema: dict[str, Any], model: type[Any]) -> None:
    """JSON Schema: ``v`` and ``kind`` are required on the wire (the models' defaults
    only spare Python callers writing them)."""
    wire = [name for name in ("v", "kind") if name in schema.get("properties", {})]
    schema["required"] = wire + [n for n in schema.get("required", []) if n not in wire]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_on_the_wire)
    v: Literal[1] = Field(default=PROTOCOL_VERSION, description="the protocol's major version")


# --- client -> supervisor ---------------------------------------------------------------


class _Request(_Message):
    """A client's request: every field takes exactly its wire type (strict: ``"3"``, ``2.0``
    or ``true`` is no integer, msgpack bin is no string); only an integer is also a float."""

    model_config = ConfigDict(strict=True)



class SendRequest(_Request):
    """Send one message to an image object: one transaction in the incarnation."""

    kind: Literal["send"] = "send"
    id: RequestId
    target: Target
    selector: Selector
    args: list[Any] = Field(default=[], description="the arguments (protocol values)")
    author: str | None = Field(default=None, max_length=64,
                               description="who sends it, recorded with what it changes")


class DescribeRequest(_Request):
    """An object's uuid, names and slots with their kinds (read-only)."""

    kind: Literal["describe"] = "describe"
    id: RequestId
    target: Target = "genesis"


class StatusRequest(_Request):
    """The supervisor's state: incarnations, routing, restarts (answered by the supervisor)."""

    kind: Literal["status"] = "status"
    id: RequestId


class PingRequest(_Request):
    """Liveness of the supervisor itself (answered without an incarnation)."""

    kind: Literal["ping"] = "ping"
    id: RequestId


Requirement = Annotated[str, Field(min_length=1, max_length=512)]
Probation = Annotated[float | None, Field(
    ge=0, le=3600,
    description="seconds the old incarnation stays ready to take over again after the "
                "switch; null: the supervisor's probation setting (30 unless configured)")]
Who = Annotated[str, Field(max_length=128, description="who asked, for the handover log "
                                                       "(bridge.Client: user@host)")]


class EvolveRequest(_Request):
    """Change the incarnation's libraries through a validated handover (answered when the
    switch happened or the handover failed; probation goes on after the reply)."""

    kind: Literal["evolve"] = "evolve"
    id: RequestId
    add: list[Requirement] = Field(default=[], max_length=100,
                                   description="requirements to add, e.g. 'six>=1.16'")
    remove: list[Requirement] = Field(default=[], max_length=100,
                                      description="distribution names to remove")
    offline: bool = Field(default=False, description="no network (uv --offline)")
    find_links: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default=[], max_length=20, description="extra folders or URLs to find wheels in")
    force: bool = Field(default=False, description="hand over even if methods still import "
                                                    "a removed package")
    probation: Probation = None
    who: Who = ""


class RollbackRequest(_Request):
    """Hand over to a previous generation's environment (a new handover)."""

    kind: Literal["rollback"] = "rollback"
    id: RequestId
    env_id: str | None = Field(default=None, max_length=64,
                               description="the env id to return to; null: the one before "
                                           "the current")
    force: bool = Field(default=False, description="hand over even if methods import a "
                                                    "package the target env lacks")
    probation: Probation = None
    who: Who = ""


class HandoversRequest(_Request):
    """The handover audit: one row per handover, and the chain's verification."""

    kind: Literal["handovers"] = "handovers"
    id: RequestId
    last: int | None = Field(default=None, ge=1, description="the newest N only; null: all")
    verify: bool = Field(default=False, description="verify the log's hash chain")


Request = Annotated[
    SendRequest | DescribeRequest | StatusRequest | PingRequest | EvolveRequest
    | RollbackRequest | HandoversRequest,
    Field(discriminator="kind"),
]
#: kinds the supervisor forwards to the active incarnation
FORWARDED_KINDS = frozenset({"send", "describe"})


class ErrorInfo(BaseModel):
    """What went wrong: the error's type name, a message for a person, and who answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(description="the error's name: one of the supervisor's, an "
                                  "incarnation's or the image's (docs/protocol.md)")
    message: str
    where: str = Field(default="", description="'supervisor', or the answering incarnation's id")


def _reply_schema(schema: dict[str, Any], model: type[Any]) -> None:
    """JSON Schema of the reply as sent (``Reply.wire``): ``result`` when ok, ``error``
    when not, never both."""
    _on_the_wire(schema, model)
    props = schema["properties"]
    props["result"].pop("default", None)
    props["error"] = next(s for s in props["error"]["anyOf"] if "$ref" in s)
    schema["oneOf"] = [{"properties": {"ok": {"const": ok}}, "required": [has],
                        "not": {"required": [lacks]}}
                       for ok, has, lacks in ((True, "result", "error"), (False, "error", "result"))]


class Reply(_Message):
    """The answer to one request: ``{v, id, ok: true, result}`` or ``{v, id, ok: false,
    error}``, never both ``result`` and ``error``. Readers also take the older form that
    had both keys, the other one null."""

    model_config = ConfigDict(json_schema_extra=_reply_schema)
    id: str = Field(max_length=128, description="the request's id; '' only when the frame "
                                                "did not decode to a map with a valid id")
    ok: bool
    result: Any = Field(default=None, description="the answer (ok replies; may be null)")
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Reply:
        if self.ok == (self.error is not None):
            raise ValueError("a reply has an error exactly when ok is false")
        return self

    def wire(self) -> dict[str, Any]:
        """The map that goes on the wire: ``result`` when ok, ``error`` when not."""
        if self.ok:
            return {"v": self.v, "id": self.id, "ok": True, "result": self.result}
        return {"v": self.v, "id": self.id, "ok": False, "error": self.error}


#: error types the supervisor itself answers (``ErrorInfo.type`` with ``where: supervisor``)
SUPERVISOR_ERROR_TYPES = frozenset({
    "MalformedFrame", "InvalidMessage", "InvalidValue", "UnsupportedVersion", "FrameTooLarge",
    "InvalidRequest", "Busy", "HandoverFailed", "Unavailable", "PoisonMessage",
})
#: error types an incarnation answers besides the image's own (``uvm.errors``): over budget,
#: a quarantined method, a reply too large, a result msgpack cannot carry, a failure
INCARNATION_ERROR_TYPES = frozenset({
    "BudgetExceeded", "Quarantined", "ReplyTooLarge", "UnserializableResult", "InternalError",
})


# --- incarnation <-> supervisor ---------------------------------------------------------


class QuarantinedMethod(BaseModel):
    """One method the image holds quarantined, as an incarnation reports it.

    ``holder`` is the object whose slot holds the method (its uuid, or a name),
    ``request`` the id of the request whose ``Quarantine`` marked it ("" when a
    person did), ``since`` wall-clock seconds, ``by`` who marked it, ``method``
    False when the message reached no method (nothing is blocked then). The
    supervisor shows the list in ``status`` and stops resending a ``Quarantine``
    once its request id is listed. Unknown keys are ignored, not refused: a
    report is informational, and a refused one would cost its Heartbeat.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    holder: str
    selector: str
    reason: str = ""
    request: str = ""
    since: float = 0.0
    by: str = ""
    method: bool = True


#: the most quarantined methods an incarnation should list in one Ready or Heartbeat (the
#: newest); not a validation limit, so a longer list never costs a heartbeat: the
#: supervisor keeps this many and says how many there were
MAX_QUARANTINED_REPORTED = 100


class Ready(_Message):
    kind: Literal["ready"] = "ready"
    incarnation: str
    pid: int
    env_id: str
    packages: dict[str, str] = Field(default={})
    python: str = ""
    #: the image's quarantined methods (None: this incarnation does not report them)
    quarantined: list[QuarantinedMethod] | None = None
    #: what the process lock applied (``envs.confine.lock``'s answer), or
    #: ``{"mode": "off"}`` for ``--unconfined``; None: not reported
    confinement: dict[str, Any] | None = None
    lanes: int = Field(default=0, ge=0, description="lanes ('<incarnation>#<k>', k < lanes) "
                       "that said Attach before this; 0: all requests to the incarnation")


class Attach(_Message):
    """A lane -> supervisor, first on the lane's DEALER (identity ``incarnation#lane``):
    requests may go to this lane now; each is received, run and answered on it."""

    kind: Literal["attach"] = "attach"
    incarnation: str
    lane: int = Field(ge=0, description="the lane's index k, 0-based")


class Heartbeat(_Message):
    kind: Literal["heartbeat"] = "heartbeat"
    incarnation: str
    served: int = 0
    busy: int = 0
    #: as in ``Ready``; None: not reported (the supervisor keeps the last list it got)
    quarantined: list[QuarantinedMethod] | None = None


class Suspect(_Message):
    """Incarnation -> supervisor: "if I die now, request ``request`` is why".

    Sent when a message is over its budget and the incarnation may not get it
    back (code holding the GIL in C), and just before an incarnation ends itself
    over a budget. If the incarnation then dies, the supervisor blames that
    request alone: it is answered ``PoisonMessage`` at once and the other
    requests in flight are resent without counting the death against them.
    ``reason`` says which budget, e.g. ``"cpu 5.0s over its budget of 5s"``.
    """

    kind: Literal["suspect"] = "suspect"
    incarnation: str
    request: RequestId
    reason: str = ""


class Quarantine(_Message):
    """Supervisor -> incarnation: mark the method ``selector`` of ``target`` quarantined.

    Sent to the next ready incarnation after request ``request`` was answered
    ``PoisonMessage``; ``target`` and ``selector`` are as the client sent them,
    ``reason`` names the request and the deaths (exit codes and signals). The
    incarnation marks the method the message resolves to (history says why) and
    then lists it in ``quarantined``; marking it again is a no-op. Until it is
    listed, the supervisor resends this to the next incarnations that become ready.
    """

    kind: Literal["quarantine"] = "quarantine"
    request: RequestId
    target: Target
    selector: Selector
    reason: str = ""


class Bye(_Message):
    kind: Literal["bye"] = "bye"
    incarnation: str
    reason: str = ""


class Stop(_Message):
    kind: Literal["stop"] = "stop"
    reason: str = ""
    grace: float = 10.0


class Validate(_Message):
    """Supervisor -> candidate: prove yourself against the image."""

    kind: Literal["validate"] = "validate"
    handover: str
    #: distributions whose top-level modules must import (the env spec's packages)
    packages: list[str] = Field(default=[])
    #: top-level modules an evolve removed: methods still importing them are reported
    removed_modules: list[str] = Field(default=[])


class Validated(_Message):
    """Candidate -> supervisor: the validation record (see uvm.validation)."""

    kind: Literal["validated"] = "validated"
    incarnation: str
    handover: str
    ok: bool
    record: dict[str, Any] = Field(default={})


#: what an image event's kind looks like: the "image." topic, then words and dots
IMAGE_EVENT_PATTERN = r"^image\.[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}$"
#: the most bytes a Publish control frame may take (the supervisor drops larger ones)
MAX_PUBLISH_BYTES = 64 * 1024


class Publish(_Message):
    """Incarnation -> supervisor: re-publish ``data`` as an event of kind ``event``.

    The image's own events (the inquiry loop's steps, ``image.inquiry.*``). The
    kind must start with ``image.``, so an incarnation cannot forge the
    supervisor's events; the frame may take at most ``MAX_PUBLISH_BYTES``. The
    event's own ``kind`` is carried as ``event`` because ``kind`` names this
    control message; the supervisor adds ``incarnation`` to ``data``.
    """

    kind: Literal["publish"] = "publish"
    incarnation: str
    event: str = Field(pattern=IMAGE_EVENT_PATTERN)
    data: dict[str, Any] = Field(default={})


Control = Annotated[
    Ready | Attach | Heartbeat | Bye | Stop | Validate | Validated | Publish | Suspect
    | Quarantine,
    Field(discriminator="kind"),
]


# --- supervisor -> event stream ---------------------------------------------------------


class Event(_Message):
    """One event on the PUB stream; the topic frame is ``kind`` up to its first dot."""

    kind: str = Field(description="topic.what, e.g. handover.phase; the topic frame is the "
                                  "part before the first dot")
    ts: float = Field(description="wall-clock seconds (Unix time) when it was published")
    data: dict[str, Any] = Field(default={})
