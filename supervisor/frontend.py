"""What clients send the supervisor: frames decoded, validated and handed to a request handler.

A client's message on a frontend ROUTER is its routing frames, then one msgpack
payload (docs/protocol.md, "Frontend"). The envelope kept for the reply is the
index of the frontend it came in on, then the routing frames. A payload that does
not decode (``MalformedFrame``, ``FrameTooLarge``, ``UnsupportedVersion``) or does
not validate (``InvalidMessage``, naming the field) is answered with that error and
a log line; a valid request goes to its handler (``supervisor.requests``). Nothing a
client sends can stop the loop. Runs in the loop's thread.
"""

from __future__ import annotations

import logging

from bridge.codec import peek_id, unpack, validate_request
from bridge.errors import ProtocolError
from bridge.messages import ErrorInfo, Reply

from .requests import Asked, Desk, dispatch

__all__ = ["Frontend"]

log = logging.getLogger("batos.supervisor")


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
