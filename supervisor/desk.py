"""What a request handler gets: the request as it arrived, and the desk it answers from.

``Asked`` is one validated client request with its envelope (the frontend's index
and the ROUTER's routing frames) and its raw payload (a forwarded request goes to
the incarnation as the client's own bytes). ``Desk`` holds the collaborators the
handlers use (the pool, the routing table, the handover desk, the sockets, ...) and
the ways to answer; it is built once by the supervisor (``supervisor.server``) and
is not the supervisor: a handler reaches only what the desk names. The handlers are
the ``request_*`` modules, one per request kind, dispatched from ``frontend.HANDLERS``.

Runs in the loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from bridge.messages import ErrorInfo, Reply

from .config import Config, Home
from .evolution import Evolution
from .handover_log import HandoverLog
from .pool import Pool
from .routing import Envelope, RoutingTable
from .sockets import Sockets
from .vllm import VllmChild
from .zeo import ZeoServer

__all__ = ["Asked", "Desk"]


class Asked(NamedTuple):
    """One per client message: a tuple, the cheapest immutable record to make."""

    #: the validated request (one of ``bridge.messages.Request``, or a
    #: ``bridge.codec.Forwarded`` for ``send`` and ``describe``)
    request: Any
    envelope: Envelope
    payload: bytes
    #: the loop's monotonic clock when it arrived
    now: float


@dataclass(frozen=True)
class Desk:
    home: Home
    config: Config
    sockets: Sockets
    routing: RoutingTable
    pool: Pool
    evolution: Evolution
    hlog: HandoverLog
    zeo: ZeoServer
    vllm: VllmChild
    #: wall clock when the supervisor started
    started: float

    def reply(self, asked: Asked, reply: Reply | bytes) -> None:
        self.sockets.reply(asked.envelope, reply)

    def answer(self, asked: Asked, result: Any) -> None:
        self.reply(asked, Reply(id=asked.request.id, ok=True, result=result))

    def refuse(self, asked: Asked, type_: str, message: str) -> None:
        self.reply(asked, Reply(id=asked.request.id, ok=False, error=ErrorInfo(
            type=type_, message=message, where="supervisor")))

    def handover_answer(self, asked: Asked) -> Callable[[bool, dict[str, Any]], None]:
        """How a handover answers ``asked``: its result, or ``HandoverFailed`` naming the
        phase and the reason. The handover desk calls it once per asker (envelope) of a
        request id, with the one outcome, also for a resend answered from the log."""
        def answer(ok: bool, body: dict[str, Any]) -> None:
            if ok:
                self.answer(asked, body)
            else:
                self.refuse(asked, "HandoverFailed", f"phase {body['phase']} failed: "
                            f"{body['reason']} (handover {body['handover']})")
        return answer
