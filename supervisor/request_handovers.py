"""``handovers``: the handover audit, read from the handover log (``batos handovers``).

Request: ``HandoversRequest`` ``{"kind": "handovers", "id", "last": int | None,
"verify": bool}``: the last ``last`` handovers (None: all), and with ``verify`` the
hash chain checked.

Reply: ``handover_report.report``'s answer: one row per handover and the chain's state.
"""

from __future__ import annotations

from .desk import Asked, Desk
from .handover_report import report

__all__ = ["KIND", "handle"]

KIND = "handovers"


def handle(desk: Desk, asked: Asked) -> None:
    request = asked.request
    desk.answer(asked, report(desk.hlog.path, last=request.last,
                                           check=request.verify))
