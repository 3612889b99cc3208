"""``handovers``: the handover audit, read from the handover log (``batos handovers``).

Request: ``HandoversRequest`` ``{"kind": "handovers", "id", "last": int | None,
"verify": bool}``: the last ``last`` handovers (None: all), and with ``verify`` the
hash chain checked.

Reply: ``handover_log.report``'s answer: one row per handover and the chain's state.
"""

from __future__ import annotations

from . import handover_log
from .desk import Asked, Desk

__all__ = ["KIND", "handle"]

KIND = "handovers"


def handle(desk: Desk, asked: Asked) -> None:
    request = asked.request
    desk.answer(asked, handover_log.report(desk.hlog.path, last=request.last,
                                           check=request.verify))
