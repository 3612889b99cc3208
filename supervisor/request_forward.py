"""``send`` and ``describe``: requests for the image, forwarded to the active incarnation.

Requests: ``SendRequest`` ``{"kind": "send", "id", "target", "selector", "args",
"author"}`` and ``DescribeRequest`` ``{"kind": "describe", "id", "target"}``
(``bridge.messages.FORWARDED_KINDS``). The handler gets them as the frontend's fast check
left them (``bridge.codec.Forwarded``: kind, id, target, selector), never as models: the
incarnation validates the client's bytes fully.

The routing table takes it (``RoutingTable.accept``): sent now to the active
incarnation as the client's own bytes (to the lane for its target, ``Sockets.forward``),
held in pending until one is ready, joined to
the request already pending or in flight with the same id (one execution, every
waiter answered). The reply is the incarnation's, passed through unchanged. The
supervisor answers itself only: ``Unavailable`` when degraded, stopping or pending is
full, and ``PoisonMessage`` (again) for the id of a poison message.
"""

from __future__ import annotations

from .desk import Asked, Desk
from .poisoning import poison_reply
from .routing import Route

__all__ = ["handle"]


def handle(desk: Desk, asked: Asked) -> None:
    request, pool, routing = asked.request, desk.pool, desk.routing  # a codec.Forwarded
    if pool.state in ("degraded", "stopping") and routing.poison.verdict(request.id) is None:
        why = pool.unavailable() if pool.state == "degraded" else (
            "the supervisor is shutting down; send again once it is back (by the same id)")
        return desk.refuse(asked, "Unavailable", why)
    route = routing.accept(request.id, asked.envelope, asked.payload, asked.now,
                           target=request.target,
                           selector=request.selector or request.kind)
    if route is Route.SEND:
        desk.sockets.forward(routing.inflight[request.id])
    elif route is Route.POISONED:
        record = routing.poison.verdict(request.id)
        assert record is not None
        desk.reply(asked, poison_reply(record))
    elif route is Route.FULL:
        desk.refuse(asked, "Unavailable", f"{desk.config.max_pending} requests are already "
                    "waiting for an incarnation; retry later")
