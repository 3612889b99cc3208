"""The routing table: which incarnation serves new requests, and what is in flight where.

Pure bookkeeping, no sockets and no clock of its own (the loop passes
``now``), so every rule here is unit-tested without processes.

* ``active`` is the incarnation that receives new requests. Changing it is
  one assignment (``switch``): that is the atomic reroute a handover needs.
* A request is *in flight* once sent to an incarnation, keyed by its id. A
  reply completes it wherever it came from, so an incarnation that is no
  longer active still answers what it was given (drain).
* With no active incarnation (starting, restarting) requests wait in
  ``pending``, bounded; the loop sends them when one becomes active, or
  answers ``Unavailable`` when they wait too long or the supervisor is
  degraded.
* A second request with an id already pending or in flight (a client
  resending after a timeout) joins it: one execution, every waiter answered.
* When an incarnation dies, what it had in flight goes back to the front of
  ``pending`` and is resent to the next one; the incarnation's reply record
  makes that safe (a request that had committed is answered, not rerun).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["InFlight", "Route", "RoutingTable"]

Envelope = tuple[bytes, ...]


class Route(Enum):
    SEND = "send"        # send to the active incarnation now
    QUEUED = "queued"    # no active incarnation: wait in pending
    JOINED = "joined"    # same id already pending or in flight
    FULL = "full"        # pending is full: answer Unavailable


@dataclass
class InFlight:
    request_id: str
    payload: bytes
    since: float
    waiters: list[Envelope] = field(default_factory=list)
    incarnation: str | None = None
    sent_at: float = 0.0
    attempts: int = 0


class RoutingTable:
    def __init__(self, *, max_pending: int = 10_000) -> None:
        self.active: str | None = None
        self.max_pending = max_pending
        self.inflight: dict[str, InFlight] = {}
        self.pending: OrderedDict[str, InFlight] = OrderedDict()

    def switch(self, incarnation: str | None) -> str | None:
        """Route new requests to ``incarnation`` (None: hold them); answers the previous one."""
        previous, self.active = self.active, incarnation
        return previous

    def accept(self, request_id: str, envelope: Envelope, payload: bytes, now: float) -> Route:
        existing = self.inflight.get(request_id) or self.pending.get(request_id)
        if existing is not None:
            if envelope not in existing.waiters:
                existing.waiters.append(envelope)
            return Route.JOINED
        entry = InFlight(request_id, payload, now, [envelope])
        if self.active is not None:
            self._send(entry, self.active, now)
            return Route.SEND
        if len(self.pending) >= self.max_pending:
            return Route.FULL
        self.pending[request_id] = entry
        return Route.QUEUED

    def _send(self, entry: InFlight, incarnation: str, now: float) -> None:
        entry.incarnation = incarnation
        entry.sent_at = now
        entry.attempts += 1
        self.inflight[entry.request_id] = entry

    def release_pending(self, now: float) -> list[InFlight]:
        """Move pending requests to the active incarnation; answers those to send."""
        if self.active is None:
            return []
        released = list(self.pending.values())
        self.pending.clear()
        for entry in released:
            self._send(entry, self.active, now)
        return released

    def complete(self, request_id: str) -> InFlight | None:
        return self.inflight.pop(request_id, None)

    def orphan(self, incarnation: str) -> list[InFlight]:
        """Requests in flight on a dead incarnation go back to the front of pending."""
        lost = [e for e in self.inflight.values() if e.incarnation == incarnation]
        for entry in lost:
            del self.inflight[entry.request_id]
            entry.incarnation = None
        requeued: OrderedDict[str, InFlight] = OrderedDict((e.request_id, e) for e in lost)
        requeued.update(self.pending)
        self.pending = requeued
        return lost

    def expire(self, now: float, timeout: float) -> list[InFlight]:
        """Pending requests that have waited longer than ``timeout``, removed."""
        expired = [e for e in self.pending.values() if now - e.since > timeout]
        for entry in expired:
            del self.pending[entry.request_id]
        return expired

    def drop_pending(self) -> list[InFlight]:
        dropped = list(self.pending.values())
        self.pending.clear()
        return dropped

    def on(self, incarnation: str) -> int:
        return sum(1 for e in self.inflight.values() if e.incarnation == incarnation)
