"""Client requests, one small module each, dispatched from one table.

Each module documents the message it takes and the reply it gives, and exports
``handle(desk, asked)``, which answers through the ``Desk`` (``context``):

    ping       is the supervisor up (answered in every state)
    status     the whole picture (``batos status``)
    evolve     a handover to the current env spec with changes
    rollback   a handover to an earlier generation's env
    handovers  the handover audit from the log
    forward    ``send`` and ``describe``: routed to the active incarnation

``HANDLERS`` maps every request ``kind`` of ``bridge.messages.Request`` to its
handler; ``dispatch`` answers a kind without one ``InvalidMessage``. Handlers run in
the loop's thread and never block: a handover is started here and answers later.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.messages import FORWARDED_KINDS

from . import evolve, forward, handovers, ping, rollback, status
from .context import Asked, Desk

__all__ = ["HANDLERS", "Asked", "Desk", "dispatch"]

Handler = Callable[[Desk, Asked], None]

HANDLERS: dict[str, Handler] = {
    ping.KIND: ping.handle,
    status.KIND: status.handle,
    evolve.KIND: evolve.handle,
    rollback.KIND: rollback.handle,
    handovers.KIND: handovers.handle,
    **{kind: forward.handle for kind in sorted(FORWARDED_KINDS)},
}


def dispatch(desk: Desk, asked: Asked) -> None:
    handler = HANDLERS.get(asked.request.kind)
    if handler is None:
        desk.refuse(asked, "InvalidMessage",
                    f"the supervisor does not answer {asked.request.kind!r}")
        return
    handler(desk, asked)
