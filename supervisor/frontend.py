"""What clients send the supervisor: frames decoded, validated and handed to a request handler.

One small module per request kind, each documenting the message it takes and the
reply it gives, each exporting ``handle(desk, asked)`` that answers through the
``Desk`` (``supervisor.desk``):

    request_ping       is the supervisor up (answered in every state)
    request_status     the whole picture (``batos status``)
    request_evolve     a handover to the current env spec with changes
    request_rollback   a handover to an earlier generation's env
    request_handovers  the handover audit from the log
    request_forward    ``send`` and ``describe``: routed to the active incarnation

``HANDLERS`` maps every request ``kind`` of ``bridge.messages.Request`` to its
handler (a kind without one is answered ``InvalidMessage``). Handlers never block:
a handover is started here and answers later.

A client's message on a frontend ROUTER is its routing frames, then one msgpack
payload (docs/protocol.md, "Frontend"). The envelope kept for the reply is the
index of the frontend it came in on, then the routing frames. A payload that does
not decode (``MalformedFrame``, ``FrameTooLarge``, ``UnsupportedVersion``) or does
not validate (``InvalidMessage``, naming the field) is answered with that error and
a log line; a valid request goes to its handler (``HANDLERS``). Nothing a
client sends can stop the loop. Runs in the loop's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.codec import peek_id, unpack, validate_request
from bridge.errors import ProtocolError
from bridge.messages import FORWARDED_KINDS, ErrorInfo, Reply

from . import (
    request_evolve,
    request_forward,
    request_handovers,
    request_ping,
    request_rollback,
    request_status,
)
from .desk import Asked, Desk

__all__ = ["HANDLERS", "Frontend", "dispatch"]

log = logging.getLogger("batos.supervisor")


Handler = Callable[[Desk, Asked], None]

HANDLERS: dict[str, Handler] = {
    request_ping.KIND: request_ping.handle,
    request_status.KIND: request_status.handle,
    request_evolve.KIND: request_evolve.handle,
    request_rollback.KIND: request_rollback.handle,
    request_handovers.KIND: request_handovers.handle,
    **{kind: request_forward.handle for kind in sorted(FORWARDED_KINDS)},
}


def dispatch(desk: Desk, asked: Asked) -> None:
    handler = HANDLERS.get(asked.request.kind)
    if handler is None:
        desk.refuse(asked, "InvalidMessage",
                    f"the supervisor does not answer {asked.request.kind!r}")
        return
    handler(desk, asked)


def _error(exc: Exception) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=str(exc), where="supervisor")


class Frontend:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def receive(self, index: int, frames: list[bytes], now: float) -> None:
        if len(frames) < 2 or len(frames) > 6:
            log.warning("dropped a client message with %d frames", len(frames))
            return
        envelope = (bytes([index]), *frames[:-1])
        payload = frames[-1]
        sockets = self.desk.sockets
        try:
            data = unpack(payload, max_size=self.desk.config.max_frame)
        except ProtocolError as exc:
            log.warning("bad frame from a client: %s", exc)
            sockets.reply(envelope, Reply(id="", ok=False, error=_error(exc)))
            return
        try:
            request = validate_request(data)
        except ProtocolError as exc:
            log.warning("invalid request from a client: %s", exc)
            sockets.reply(envelope, Reply(id=peek_id(data), ok=False, error=_error(exc)))
            return
        dispatch(self.desk, Asked(request, envelope, payload, now))
