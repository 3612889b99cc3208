"""msgpack encoding of the bridge's messages, with the frame-size limit.

Schema lives in ``bridge.messages``; this module only turns models into
bytes and bytes back into validated models, raising ``ProtocolError``
subclasses that name what was wrong. Never pickle over the bridge.
"""

from __future__ import annotations

from typing import Any

import ormsgpack
from pydantic import BaseModel, TypeAdapter, ValidationError

from .errors import FrameTooLarge, InvalidMessage, MalformedFrame, UnsupportedVersion
from .messages import PROTOCOL_VERSION, Control, Reply, Request

__all__ = [
    "MAX_FRAME",
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

_OPTS = ormsgpack.OPT_SERIALIZE_PYDANTIC | ormsgpack.OPT_NON_STR_KEYS
_requests: TypeAdapter[Any] = TypeAdapter(Request)
_controls: TypeAdapter[Any] = TypeAdapter(Control)


def encode(message: BaseModel | dict[str, Any]) -> bytes:
    try:
        return ormsgpack.packb(message, option=_OPTS)
    except (TypeError, ormsgpack.MsgpackEncodeError) as exc:
        raise InvalidMessage(f"cannot encode message: {exc}") from exc


def unpack(frame: bytes, *, max_size: int = MAX_FRAME) -> dict[str, Any]:
    """Bytes -> a msgpack map of this protocol version (not yet validated)."""
    if len(frame) > max_size:
        raise FrameTooLarge(f"frame of {len(frame)} bytes is over the {max_size}-byte limit")
    try:
        data = ormsgpack.unpackb(frame)
    except (ormsgpack.MsgpackDecodeError, ValueError, TypeError) as exc:
        raise MalformedFrame(f"frame is not valid msgpack: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedFrame(f"a message is a msgpack map, got {type(data).__name__}")
    version = data.get("v")
    if version != PROTOCOL_VERSION:
        if version is None:
            raise InvalidMessage("message has no protocol version field 'v'")
        raise UnsupportedVersion(
            f"protocol version {version!r} is not spoken here; this side speaks {PROTOCOL_VERSION}"
        )
    return data


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
        raise InvalidMessage(f"field {loc!r}: {err['msg']}" if loc else err["msg"]) from None


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
