"""The supervisor's side of poison messages: judging a death, answering, quarantining.

A mixin of ``Supervisor``: it runs in the supervisor's loop thread and uses the
loop's sockets. The rules live in ``supervisor.poison`` (the ledger the routing
table holds); this module applies them when an incarnation ends: it first
handles the frames the incarnation sent just before (a ``Suspect`` naming the
request to blame, a last reply), lets the table judge what was in flight,
answers each poison message ``PoisonMessage`` (and publishes
``supervisor.poisoned``), pardons the restarts the poison message caused, and
sends ``Quarantine`` to the active incarnation once it is ready.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import zmq

from bridge.codec import encode
from bridge.messages import ErrorInfo, Quarantine, Reply

from .incarnations import Incarnation
from .poison import Poisoned, exit_cause

if TYPE_CHECKING:
    from .server import Supervisor

__all__ = ["PoisoningMixin"]

log = logging.getLogger("batos.supervisor")
#: the most backend frames handled at an exit before judging it
_DRAIN_LIMIT = 512


class PoisoningMixin:
    @staticmethod
    def _poison_reply(record: Poisoned) -> Reply:
        """The answer to a poison message, and to every resend of its id."""
        return Reply(id=record.request_id, ok=False, error=ErrorInfo(
            type="PoisonMessage", message=record.message, where="supervisor"))

    def _send_quarantines(self: Supervisor) -> None:
        """Ask the active incarnation, if ready, to quarantine what poison messages called."""
        inc = self.incarnations.get(self.routing.active or "")
        if inc is None or inc.state != "ready":
            return
        for record in self.routing.poison.quarantines_due(inc.id):
            log.info("quarantine sent", extra={"incarnation": inc.id, "request": record.request_id,
                                               "target": record.target, "selector": record.selector})
            self._backend_send(inc.id, [b"C", encode(Quarantine(
                request=record.request_id, target=record.target, selector=record.selector,
                reason=record.reason[:2000]))])

    def _judge_death(self: Supervisor, inc: Incarnation, now: float) -> tuple[bool, int]:
        """Judge what ``inc`` had in flight and answer poison messages; answers whether the
        death is explained (its cause was found and answered) and how many were poisoned."""
        self._drain_backend(now)  # a Suspect or a reply sent just before the end counts
        cause = None if inc.expected_exit else exit_cause(
            inc.exit_code, self._killed_for.get(inc.id, ""))
        judgement, entries = self.routing.died(inc.id, cause, now)
        for entry, record in zip(entries, judgement.poisoned, strict=True):
            log.error("poison message", extra={"request": record.request_id, "target": record.target,
                                               "selector": record.selector,
                                               "deaths": [d.describe() for d in record.deaths]})
            reply = encode(self._poison_reply(record))
            for envelope in entry.waiters:
                self._reply(envelope, reply)
            self.publish("supervisor.poisoned", request=record.request_id, target=record.target,
                         selector=record.selector, deaths=[d.describe() for d in record.deaths])
        if judgement.pardoned:
            self.policy.pardon(judgement.pardoned)
        if judgement.poisoned:
            self._send_quarantines()
        return judgement.explained, len(entries)

    def _drain_backend(self: Supervisor, now: float) -> None:
        """Handle what the backend already holds (without waiting)."""
        for _ in range(_DRAIN_LIMIT):
            try:
                frames = self.backend.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_backend(frames, now)
