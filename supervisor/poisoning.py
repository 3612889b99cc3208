"""The supervisor's side of poison messages: judging a death, answering, quarantining.

``Poisoning`` applies the rules of ``supervisor.poison`` (the ledger the routing
table holds) when an incarnation ends. It first handles the frames the
incarnation sent just before (a ``Suspect`` naming the request to blame, a last
reply: ``drain``, the loop's "handle what the backend already holds"), lets the
table judge what was in flight, answers each poison message ``PoisonMessage``
and publishes ``supervisor.poisoned``. The pool (``supervisor.pool``) takes the
``Judgement`` from there: it pardons the restarts the poison message caused and
calls ``quarantine`` with the active incarnation, which sends it a ``Quarantine``
for each poisoned method once it is ready: to its main socket and to each lane that
has attached (a lane applies it before it reads its next request, so no request sent
after it runs the method); a lane that attaches later gets those already sent
(``quarantine_lane``).

Runs in the loop's thread; it holds no state of its own (the ledger is the routing
table's) and never blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.messages import ErrorInfo, Quarantine, Reply

from .incarnations import Incarnation
from .poison import Judgement, Poisoned, exit_cause
from .routing import RoutingTable
from .sockets import Sockets

__all__ = ["Poisoning", "poison_reply"]

log = logging.getLogger("batos.supervisor")
#: the log of a Quarantine that could not be sent (as before: the handover desk's logger)
_send_log = logging.getLogger("batos.supervisor.evolution")


def poison_reply(record: Poisoned) -> Reply:
    """The answer to a poison message, and to every resend of its id."""
    return Reply(id=record.request_id, ok=False, error=ErrorInfo(
        type="PoisonMessage", message=record.message, where="supervisor"))


class Poisoning:
    def __init__(self, routing: RoutingTable, sockets: Sockets, *,
                 drain: Callable[[float], None]) -> None:
        self.routing = routing
        self.sockets = sockets
        self.drain = drain

    def quarantine(self, inc: Incarnation | None) -> None:
        """Ask ``inc`` (the active incarnation), if ready, to quarantine what poison
        messages called."""
        if inc is None or inc.state != "ready":
            return
        for record in self.routing.poison.quarantines_due(inc.id):
            log.info("quarantine sent", extra={"incarnation": inc.id, "request": record.request_id,
                                               "target": record.target, "selector": record.selector})
            self._send(inc.id, record)
            for lane in sorted(inc.attached):
                self._to_lane(inc, lane, record)

    def quarantine_lane(self, inc: Incarnation, lane: int) -> None:
        """Lane ``lane`` of ``inc`` just attached: the quarantines ``inc`` was sent, to it."""
        for record in self.routing.poison.quarantines_sent(inc.id):
            self._to_lane(inc, lane, record)

    def _to_lane(self, inc: Incarnation, lane: int, record: Poisoned) -> None:
        """A lane that cannot take the Quarantine (its queue full, gone) is detached: its
        targets' requests go to main, where the Quarantine is ahead of them."""
        if not self._send(f"{inc.id}#{lane}", record):
            inc.attached.discard(lane)
            _send_log.warning("lane %d of %s detached: its requests go to main", lane, inc.id)

    def _send(self, ident: str, record: Poisoned) -> bool:
        error = self.sockets.control(ident, Quarantine(
            request=record.request_id, target=record.target, selector=record.selector,
            reason=record.reason[:2000]))
        if error is not None:
            _send_log.warning("could not send to %s: %s", ident, error)
        return error is None

    def judge(self, inc: Incarnation, now: float, *, why: str = "") -> Judgement:
        """Judge what ``inc`` had in flight and answer its poison messages; ``why`` is the
        supervisor's reason when it killed ``inc``. The judgement says whether the death
        is explained and what to pardon; its ``poisoned`` were answered here."""
        self.drain(now)  # a Suspect or a reply sent just before the end counts
        cause = None if inc.expected_exit else exit_cause(inc.exit_code, why)
        judgement, entries = self.routing.died(inc.id, cause, now)
        for entry, record in zip(entries, judgement.poisoned, strict=True):
            deaths = [d.describe() for d in record.deaths]
            log.error("poison message", extra={"request": record.request_id, "target": record.target,
                                               "selector": record.selector, "deaths": deaths})
            self.sockets.reply_all(entry.waiters, poison_reply(record))
            self.sockets.publish("supervisor.poisoned", request=record.request_id,
                                 target=record.target, selector=record.selector, deaths=deaths)
        return judgement
