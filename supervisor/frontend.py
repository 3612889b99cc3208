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

A client's message on a frontend ROUTER is ``[identity, *envelope, payload]``
(docs/protocol.md, "Frames"): the identity the ROUTER added, 0 to ``MAX_ENVELOPE``
frames the client put before its payload (a REQ client's empty delimiter is one),
and the msgpack payload, always the last frame. The envelope kept for the reply is
the index of the frontend it came in on, the identity, then those frames, echoed
unchanged. Every message gets exactly one reply, none is dropped: more than
``MAX_ENVELOPE`` frames before the payload are answered ``MalformedFrame`` (id "",
to the identity and the first ``MAX_ENVELOPE`` of them); a payload that does not
decode (``FrameTooLarge``, ``MalformedFrame``, ``UnsupportedVersion``,
``InvalidValue``) or does not validate (``InvalidMessage``, naming the field) is
answered with that error, echoing the request's id when the payload had a valid one
(``ProtocolError.request_id``), and a log line; a valid request goes to its handler
(``HANDLERS``). Nothing a client sends can stop the loop. Runs in the loop's thread.

Forwarded kinds (``send``, ``describe``) are not built into models here: the fast
check (``bridge.codec.check_forwarded``) refuses what pydantic would, with the same
error, and the handler gets a ``Forwarded`` (kind, id, target, selector); the client's
own bytes go to the incarnation, which validates them fully once. Every other kind
is validated fully here (``validate_request``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.codec import check_forwarded, unpack, validate_request
from bridge.errors import MalformedFrame, ProtocolError
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

__all__ = ["HANDLERS", "MAX_ENVELOPE", "Frontend", "dispatch"]

log = logging.getLogger("batos.supervisor")


Handler = Callable[[Desk, Asked], None]

#: the most frames a client may put before its payload (echoed back with the reply)
MAX_ENVELOPE = 4
#: a frontend's index as the first frame of an envelope (made once, not per message)
_INDEX = [bytes([index]) for index in range(256)]

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


def _refusal(exc: ProtocolError) -> Reply:
    """The error reply to a frame the protocol refuses: its id when it had a valid one."""
    return Reply(id=exc.request_id, ok=False, error=ErrorInfo(
        type=type(exc).__name__, message=str(exc), where="supervisor"))


class Frontend:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def receive(self, index: int, frames: list[bytes], now: float) -> None:
        """One client message, as the ROUTER gave it: ``[identity, *envelope, payload]``."""
        sockets = self.desk.sockets
        if len(frames) < 2:  # a ROUTER adds the identity to a message of at least one frame
            log.warning("a client message of %d frame(s) has no payload", len(frames))
            if frames:
                sockets.reply((bytes([index]), frames[0]), _refusal(
                    MalformedFrame("a message needs a payload frame")))
            return
        identity, routing, payload = frames[0], frames[1:-1], frames[-1]
        if len(routing) > MAX_ENVELOPE:
            exc = MalformedFrame(f"too many frames: {len(frames) - 1}; at most {MAX_ENVELOPE} "
                                 "before the payload")
            log.warning("a client message with too many frames: %s", exc)
            sockets.reply((bytes([index]), identity, *routing[:MAX_ENVELOPE]), _refusal(exc))
            return
        envelope = (_INDEX[index], identity, *routing)
        try:
            data = unpack(payload, max_size=self.desk.config.max_frame)
        except ProtocolError as exc:
            log.warning("bad frame from a client: %s", exc)
            sockets.reply(envelope, _refusal(exc))
            return
        kind = data.get("kind")
        try:
            if kind.__class__ is str and kind in FORWARDED_KINDS:
                request = check_forwarded(data)
            else:
                request = validate_request(data)
        except ProtocolError as exc:
            log.warning("invalid request from a client: %s", exc)
            sockets.reply(envelope, _refusal(exc))
            return
        dispatch(self.desk, Asked(request, envelope, payload, now))
