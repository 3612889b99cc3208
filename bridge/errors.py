"""The bridge's errors: one root.

    BridgeError
    +-- ProtocolError            bytes or structure that break the protocol
    |   +-- FrameTooLarge        over the maximum frame size
    |   +-- MalformedFrame       not msgpack, or not a map
    |   +-- UnsupportedVersion   no protocol version ``v``, or one this side does not speak
    |   +-- InvalidValue         msgpack, but a value the protocol does not carry: a map key
    |   |                        that is not a string, an extension type (names the path)
    |   +-- InvalidMessage       msgpack, but not a valid message (names the field)
    +-- Timeout                  (also TransientError) no reply in time; the
    |                            request may be resent with the same id
    +-- RemoteError              the other side answered with an error reply;
                                 ``type``, ``message`` and ``where`` are the
                                 remote error carried as data

A ``ProtocolError`` carries ``request_id``: the id of the message it answers when the
frame decoded to a map with a valid ``id`` (a string of 1-128 characters), else ""
(not msgpack, not a map, over the size limit, no valid id). An error reply echoes it.

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
    "InvalidValue",
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
    """Bytes or structure that break the wire protocol; ``request_id`` as said above."""

    def __init__(self, message: str = "", *, request_id: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id


class FrameTooLarge(ProtocolError):
    pass


class MalformedFrame(ProtocolError):
    pass


class UnsupportedVersion(ProtocolError):
    pass


class InvalidValue(ProtocolError):
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
