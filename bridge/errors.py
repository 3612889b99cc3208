"""The bridge's errors: one root.

    BridgeError
    +-- ProtocolError            bytes or structure that break the protocol
    |   +-- FrameTooLarge        over the maximum frame size
    |   +-- MalformedFrame       not msgpack, or not a map
    |   +-- UnsupportedVersion   a protocol version this side does not speak
    |   +-- InvalidMessage       msgpack, but not a valid message (names the field)
    +-- Timeout                  (also TransientError) no reply in time; the
    |                            request may be resent with the same id
    +-- RemoteError              the other side answered with an error reply;
                                 ``type``, ``message`` and ``where`` are the
                                 remote error carried as data

``TransientError`` marks errors where resending the same request (same id)
may succeed; resending by id never executes a request twice. It is the shared
floor's one mixin (``lexicon.errors``, re-exported here), the same every layer uses.

``RemoteError.type`` names the other side's error: the supervisor's
(``bridge.messages.SUPERVISOR_ERROR_TYPES``: ``Unavailable``, ``Busy``, ...,
and ``PoisonMessage``: the request killed the incarnations that ran it and is
never run again; a resend by its id gets the same answer), an incarnation's
(``INCARNATION_ERROR_TYPES``: ``BudgetExceeded``, ``Quarantined``,
``ReplyTooLarge``, ``InternalError``), or the image's (``uvm.errors``).
"""

from __future__ import annotations

from lexicon.errors import TransientError

__all__ = [
    "BridgeError",
    "FrameTooLarge",
    "InvalidMessage",
    "MalformedFrame",
    "ProtocolError",
    "RemoteError",
    "Timeout",
    "TransientError",
    "UnsupportedVersion",
]


class BridgeError(Exception):
    """Root of the bridge's errors."""


class ProtocolError(BridgeError):
    """Bytes or structure that break the wire protocol."""


class FrameTooLarge(ProtocolError):
    pass


class MalformedFrame(ProtocolError):
    pass


class UnsupportedVersion(ProtocolError):
    pass


class InvalidMessage(ProtocolError):
    pass


class Timeout(BridgeError, TransientError):
    """No reply within the deadline."""


class RemoteError(BridgeError):
    """An error reply, re-raised locally with the remote type, message and origin."""

    def __init__(self, type: str, message: str, where: str = "") -> None:  # noqa: A002
        super().__init__(f"{type}: {message}" + (f" (from {where})" if where else ""))
        self.type = type
        self.message = message
        self.where = where
