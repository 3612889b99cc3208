"""msgpack encoding of the bridge's messages, with the frame-size limit.

Schema lives in ``bridge.messages``; this module only turns models into
bytes and bytes back into validated models, raising ``ProtocolError``
subclasses that name what was wrong. Never pickle over the bridge.

``unpack`` checks, in this order: the size (``FrameTooLarge``), msgpack
(``MalformedFrame``), a map (``MalformedFrame``), ``v`` present and 1
(``UnsupportedVersion``), string keys and no extension values anywhere
(``InvalidValue``, naming the path; ``bridge.wire_values``). Every error past
"a map" carries the frame's ``id`` when it is a valid one (``request_id``), so
its reply can be matched to the request. ``encode`` writes a ``Reply`` in its
wire form (``Reply.wire``: ``result`` or ``error``, never both).

``check_forwarded`` is the supervisor's fast check of a ``send`` or ``describe`` it
forwards as the client's own bytes: hand-written, it refuses exactly what pydantic's
``SendRequest``/``DescribeRequest`` refuse, with the same ``InvalidMessage`` naming the
same field (the first in the model's order, then unknown fields), and answers only what
routing needs (``Forwarded``); the incarnation validates the request fully once
(tests/unit/test_fast_check.py holds the two to agreement).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ormsgpack
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import wire_values
from .errors import (
    FrameTooLarge,
    InvalidMessage,
    InvalidValue,
    MalformedFrame,
    UnsupportedVersion,
)
from .messages import PROTOCOL_VERSION, Control, DescribeRequest, Reply, Request, SendRequest

__all__ = [
    "MAX_FRAME",
    "Forwarded",
    "check_forwarded",
    "decode_control",
    "decode_reply",
    "decode_request",
    "encode",
    "peek_id",
    "unpack",
    "validate_request",
]

#: Largest frame either side accepts (1 MiB); larger frames get a FrameTooLarge error reply.
MAX_FRAME = 1 << 20

#: the largest frame read byte by byte (in Python) to locate a map or array used as a map
#: key; a larger one is refused without the path, so no frame holds the loop for long
SCAN_LIMIT = 64 << 10

_OPTS = ormsgpack.OPT_SERIALIZE_PYDANTIC | ormsgpack.OPT_NON_STR_KEYS
_requests: TypeAdapter[Any] = TypeAdapter(Request)
_controls: TypeAdapter[Any] = TypeAdapter(Control)


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    wire = message.wire() if isinstance(message, Reply) else message
    try:
        return ormsgpack.packb(wire, option=_OPTS)
    except (TypeError, ormsgpack.MsgpackEncodeError) as exc:
        raise InvalidMessage(f"cannot encode message: {exc}") from exc


def unpack(frame: bytes, *, max_size: int = MAX_FRAME) -> dict[str, Any]:
    """Bytes -> a msgpack map of this protocol version with plain values (not yet validated)."""
    if len(frame) > max_size:
        raise FrameTooLarge(f"frame of {len(frame)} bytes is over the {max_size}-byte limit")
    problem = None
    try:
        data = ormsgpack.unpackb(frame)
    except (ormsgpack.MsgpackDecodeError, ValueError, TypeError) as exc:
        data, problem = _diagnose(frame, exc)
    if not isinstance(data, dict):
        raise MalformedFrame(f"a message is a msgpack map, got {_kind(data)}")
    rid = peek_id(data)
    version = data.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        found = "has no protocol version field 'v'" if "v" not in data else (
            f"has protocol version {wire_values.describe(version)}, which is not spoken here")
        raise UnsupportedVersion(f"the message {found}; this side speaks {PROTOCOL_VERSION}",
                                 request_id=rid)
    if problem is not None:
        raise InvalidValue(problem, request_id=rid)
    return data


def _diagnose(frame: bytes, failure: Exception) -> tuple[Any, str | None]:
    """Why ormsgpack refused ``frame``: (what it decodes to, leniently, and its first
    non-string key or extension), or ``MalformedFrame`` when it is not msgpack at all."""
    try:
        data = wire_values.lenient(frame)
    except (ormsgpack.MsgpackDecodeError, ValueError, TypeError) as exc:
        # a map (or an extension) as a map key: valid msgpack no dict holds; read the bytes
        # (ormsgpack says "invalid type <its name for the key>"); anything else is not msgpack
        container_key = str(exc).startswith("invalid type")
        if container_key and len(frame) > SCAN_LIMIT:
            raise InvalidValue(
                f"a map key is a map or an array, which is not a string (frames over "
                f"{SCAN_LIMIT} bytes are not searched for where)") from None
        scanned = wire_values.scan(frame) if container_key else None
        if scanned is None:
            raise MalformedFrame(f"frame is not valid msgpack: {exc}") from None
        return (scanned.fields if scanned.is_map else []), scanned.problem
    problem = wire_values.first_problem(data)
    if problem is None:  # decodes leniently and holds nothing lenient: refused for another reason
        raise MalformedFrame(f"frame is not valid msgpack: {failure}") from None
    return data, problem


def _kind(data: Any) -> str:
    if isinstance(data, wire_values.Extension):
        return f"msgpack extension type {data.tag}"
    return type(data).__name__


def peek_id(data: Any) -> str:
    """The request id of a possibly invalid message, for addressing its error reply."""
    rid = data.get("id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else ""


def _validate(adapter: TypeAdapter[Any], data: dict[str, Any]) -> Any:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "union_tag_not_found":  # the discriminator is missing
            message = "field 'kind': missing (what is asked: the message's kind)"
        elif err["type"] == "union_tag_invalid":
            expected = err.get("ctx", {}).get("expected_tags", "")
            message = f"field 'kind': unknown kind {data.get('kind')!r}; one of {expected}"
        else:
            message = f"field {loc!r}: {err['msg']}" if loc else err["msg"]
        raise InvalidMessage(message, request_id=peek_id(data)) from None


def validate_request(data: dict[str, Any]) -> Any:
    """An unpacked map -> a ``Request`` model, or ``InvalidMessage`` naming the field."""
    return _validate(_requests, data)


def decode_request(frame: bytes, *, max_size: int = MAX_FRAME) -> Any:
    return validate_request(unpack(frame, max_size=max_size))


def decode_control(frame: bytes) -> Any:
    return _validate(_controls, unpack(frame))


def decode_reply(frame: bytes) -> Reply:
    try:
        return Reply.model_validate(unpack(frame))
    except ValidationError as exc:
        raise InvalidMessage(f"invalid reply: {exc.errors()[0]['msg']}") from None


# --- the fast check of forwarded kinds ------------------------------------------------


class Forwarded(NamedTuple):
    """A ``send`` or ``describe`` that passed ``check_forwarded``: what routing needs."""

    kind: str
    id: str
    target: str
    #: the selector of a send; None for a describe
    selector: str | None = None


def _bounded(value: str, low: int, high: int) -> str | None:
    if len(value) < low:
        return f"String should have at least {low} character{'s' if low != 1 else ''}"
    if len(value) > high:
        return f"String should have at most {high} characters"
    return None


def _limits(model: Any) -> dict[str, tuple[int, int]]:
    """Each constrained string field's (min_length, max_length), read from the model."""
    out = {}
    for name, info in model.model_fields.items():
        low, high = 0, None
        for rule in info.metadata:
            low = getattr(rule, "min_length", None) or low
            high = getattr(rule, "max_length", None) or high
        if high is not None:
            out[name] = (low, high)
    return out


_LIMITS = {"send": _limits(SendRequest), "describe": _limits(DescribeRequest)}
_FIELDS = {"send": frozenset(SendRequest.model_fields),
           "describe": frozenset(DescribeRequest.model_fields)}
_MISSING = object()
_NO_ARGS: list[Any] = []


def _string(value: Any, limits: tuple[int, int], *, required: bool = True,
            nullable: bool = False) -> str | None:
    """What pydantic (strict) says of a constrained string field's ``value``; None: fine."""
    if value is _MISSING:
        return "Field required" if required else None
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        return "Input should be a valid string"
    return _bounded(value, *limits)


def _problem(data: dict[str, Any], kind: str) -> tuple[str, str] | None:
    """The first field pydantic would refuse (its name, its message): the model's fields in
    their order, then unknown fields in the map's order."""
    get, limits, send = data.get, _LIMITS[kind], kind == "send"
    if get("v", PROTOCOL_VERSION) != PROTOCOL_VERSION:
        return "v", f"Input should be {PROTOCOL_VERSION}"
    found = _string(get("id", _MISSING), limits["id"])
    if found is not None:
        return "id", found
    found = _string(get("target", _MISSING), limits["target"], required=send)
    if found is not None:
        return "target", found
    if send:
        found = _string(get("selector", _MISSING), limits["selector"])
        if found is not None:
            return "selector", found
        if not isinstance(get("args", []), list):
            return "args", "Input should be a valid list"
        found = _string(get("author", _MISSING), limits["author"], required=False,
                        nullable=True)
        if found is not None:
            return "author", found
    known = _FIELDS[kind]
    if not data.keys() <= known:
        return str(next(name for name in data if name not in known)), \
            "Extra inputs are not permitted"
    return None


_ID, _TARGET, _SELECTOR, _AUTHOR = (_LIMITS["send"][name]
                                    for name in ("id", "target", "selector", "author"))
_DESCRIBE_ID, _DESCRIBE_TARGET = (_LIMITS["describe"][name] for name in ("id", "target"))


def check_forwarded(data: dict[str, Any]) -> Forwarded:
    """An unpacked ``send`` or ``describe`` map (``data["kind"]`` is one of them) -> what
    routing needs, or ``InvalidMessage`` as ``validate_request`` would raise it.

    The usual message takes the straight path (exact types, every field within its limits,
    no other key); anything else is judged field by field (``_problem``), which also
    accepts what pydantic accepts beyond it (a ``str`` subclass, ``v`` absent)."""
    kind, get = data["kind"], data.get
    rid, target = get("id"), get("target")
    if kind == "send":
        selector, author = get("selector"), get("author")
        if (rid.__class__ is str and _ID[0] <= len(rid) <= _ID[1]
                and target.__class__ is str and _TARGET[0] <= len(target) <= _TARGET[1]
                and selector.__class__ is str and _SELECTOR[0] <= len(selector) <= _SELECTOR[1]
                and get("args", _NO_ARGS).__class__ is list
                and (author is None or author.__class__ is str and len(author) <= _AUTHOR[1])
                and get("v") == PROTOCOL_VERSION and data.keys() <= _FIELDS["send"]):
            return Forwarded(kind, rid, target, selector)
    elif (rid.__class__ is str and _DESCRIBE_ID[0] <= len(rid) <= _DESCRIBE_ID[1]
          and (target is None and "target" not in data
               or target.__class__ is str
               and _DESCRIBE_TARGET[0] <= len(target) <= _DESCRIBE_TARGET[1])
          and get("v") == PROTOCOL_VERSION and data.keys() <= _FIELDS["describe"]):
        return Forwarded(kind, rid, "genesis" if target is None else target)
    found = _problem(data, kind)
    if found is not None:
        raise InvalidMessage(f"field '{kind}.{found[0]}': {found[1]}", request_id=peek_id(data))
    return Forwarded(kind, data["id"], data.get("target", "genesis"),
                     data["selector"] if kind == "send" else None)
