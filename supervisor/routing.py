"""The routing table: which incarnation serves new requests, and what is in flight where.

Pure bookkeeping, no sockets and no clock of its own (the loop passes
``now``), so every rule here is unit-tested without processes. It is the
supervisor's one record of what is in flight and pending: the request
handlers, the backend, the pool and the handover desk all ask and change it
here, none keeps a copy.

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
  Before that, ``died`` lets the ``PoisonLedger`` (``supervisor.poison``) judge
  the death: a request in flight at its second death (or the one the
  incarnation named) is *poisoned*, taken out and answered, never resent; a
  resend of its id is ``POISONED``, not run.
* *Suspects* (requests that were in flight at one death) take a lane of their
  own: at most one is in flight at a time, the others wait in ``pending`` even
  while an incarnation is active; everything else flows past them.
* ``newest`` is the newest transaction id any reply carried (``saw``: 8 bytes,
  big-endian, so bytes order is time order); forwarded requests carry it as
  their ``after`` frame, so the incarnation that runs one first catches up to it
  (read-your-writes across incarnations, docs/protocol.md section 8).
* ``lane_for`` picks an incarnation's lane for a target: the same target always
  the same lane index (``zlib.crc32``, stable across processes), None (main)
  when that lane has not attached. ``place`` passes it over when the oldest request
  on it has run ``LANE_HELD`` seconds (a lane runs one request at a time: a long
  one would hold up every other object of the lane): then the least busy lane not
  held up, or main when every lane is. The incarnation records the reply in the
  target's shard whichever lane ran it (``uvm.lanes.shard_for``).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Container
from dataclasses import dataclass, field
from enum import Enum

from .poison import Judgement, PoisonLedger

__all__ = ["LANE_HELD", "TID_SIZE", "InFlight", "Route", "RoutingTable", "lane_for"]

Envelope = tuple[bytes, ...]
#: a transaction id's size on the backend (ZODB's 8-byte tid)
TID_SIZE = 8
#: seconds a lane's oldest request may run before new requests pass the lane over
LANE_HELD = 0.25


def lane_for(target: str, lanes: int, attached: Container[int]) -> int | None:
    """The lane of an incarnation with ``lanes`` lanes that serves ``target``; None: main
    (no lanes, or that lane has not attached)."""
    if lanes <= 0:
        return None
    lane = zlib.crc32(target.encode()) % lanes
    return lane if lane in attached else None


class Route(Enum):
    SEND = "send"        # send to the active incarnation now
    QUEUED = "queued"    # no active incarnation: wait in pending
    JOINED = "joined"    # same id already pending or in flight
    FULL = "full"        # pending is full: answer Unavailable
    POISONED = "poisoned"  # a poison message's id: answer its PoisonMessage again


@dataclass(slots=True)
class InFlight:
    request_id: str
    payload: bytes
    since: float
    waiters: list[Envelope] = field(default_factory=list)
    incarnation: str | None = None
    sent_at: float = 0.0
    attempts: int = 0
    #: what the request asks, for a PoisonMessage and the Quarantine that follows it
    target: str = ""
    selector: str = ""
    #: the lane of its incarnation it was sent to (None: main, or not sent)
    on_lane: int | None = None


class RoutingTable:
    def __init__(self, *, max_pending: int = 10_000, poison: PoisonLedger | None = None) -> None:
        self.active: str | None = None
        self.max_pending = max_pending
        self.inflight: dict[str, InFlight] = {}
        self.pending: OrderedDict[str, InFlight] = OrderedDict()
        self.poison = poison or PoisonLedger()
        #: the one suspect in flight (None: the lane is free)
        self.lane: str | None = None
        #: the newest transaction id a reply carried (None: none yet)
        self.newest: bytes | None = None
        #: (incarnation, lane) -> {request id: sent_at} in flight there, oldest first
        self._lanes: dict[tuple[str, int], dict[str, float]] = {}

    def saw(self, tid: bytes) -> None:
        """A reply's transaction id: ``newest`` is the largest seen (other sizes ignored)."""
        if len(tid) == TID_SIZE and (self.newest is None or tid > self.newest):
            self.newest = tid

    def switch(self, incarnation: str | None) -> str | None:
        """Route new requests to ``incarnation`` (None: hold them); answers the previous one."""
        previous, self.active = self.active, incarnation
        return previous

    def accept(self, request_id: str, envelope: Envelope, payload: bytes, now: float, *,
               target: str = "", selector: str = "") -> Route:
        if self.poison.verdict(request_id) is not None:
            return Route.POISONED
        existing = self.inflight.get(request_id) or self.pending.get(request_id)
        if existing is not None:
            if envelope not in existing.waiters:
                existing.waiters.append(envelope)
            return Route.JOINED
        entry = InFlight(request_id, payload, now, [envelope], target=target, selector=selector)
        if self.active is not None and self._may_send(request_id):
            self._send(entry, self.active, now)
            return Route.SEND
        if len(self.pending) >= self.max_pending:
            return Route.FULL
        self.pending[request_id] = entry
        return Route.QUEUED

    def _may_send(self, request_id: str) -> bool:
        return self.lane is None or not self.poison.suspected(request_id)

    def _send(self, entry: InFlight, incarnation: str, now: float) -> None:
        entry.incarnation = incarnation
        entry.sent_at = now
        entry.attempts += 1
        self.inflight[entry.request_id] = entry
        if self.poison.suspected(entry.request_id):
            self.lane = entry.request_id

    def release_pending(self, now: float) -> list[InFlight]:
        """Move pending requests to the active incarnation (suspects one at a time); answers
        those to send."""
        if self.active is None:
            return []
        released = []
        for request_id, entry in list(self.pending.items()):
            if self._may_send(request_id):
                del self.pending[request_id]
                self._send(entry, self.active, now)
                released.append(entry)
        return released

    def place(self, entry: InFlight, lanes: int, attached: Container[int]) -> int | None:
        """The lane of ``entry``'s incarnation to send it to (None: main), remembered until
        it leaves: its target's (``lane_for``) unless the oldest request there has run
        ``LANE_HELD`` seconds, then the attached lane with the fewest requests in flight
        of those not held up, or main when every one is."""
        lane = lane_for(entry.target, lanes, attached)
        inc, now = entry.incarnation, entry.sent_at
        if lane is None or inc is None:
            return None
        if self._held(inc, lane, now):
            free = [k for k in range(lanes) if k in attached and not self._held(inc, k, now)]
            if not free:
                return None
            lane = min(free, key=lambda k: len(self._lanes.get((inc, k), ())))
        self._lanes.setdefault((inc, lane), {})[entry.request_id] = now
        entry.on_lane = lane
        return lane

    def _held(self, inc: str, lane: int, now: float) -> bool:
        held = self._lanes.get((inc, lane))
        return bool(held) and now - next(iter(held.values())) >= LANE_HELD

    def unplace(self, entry: InFlight) -> None:
        """``entry`` did not go to the lane ``place`` gave it (it goes to main)."""
        if entry.on_lane is not None and entry.incarnation is not None:
            key = (entry.incarnation, entry.on_lane)
            held = self._lanes.get(key)
            if held is not None:
                held.pop(entry.request_id, None)
                if not held:
                    del self._lanes[key]
        entry.on_lane = None

    def complete(self, request_id: str) -> InFlight | None:
        entry = self.inflight.pop(request_id, None)
        if entry is not None:
            self._left(entry)
            self.poison.completed(request_id)
        return entry

    def _left(self, entry: InFlight) -> None:
        if self.lane == entry.request_id:
            self.lane = None
        self.unplace(entry)

    def died(self, incarnation: str, cause: str | None,
             now: float) -> tuple[Judgement, list[InFlight]]:
        """``incarnation`` ended (``cause`` None: as asked): the ledger judges what it had in
        flight. Answers the judgement and the poisoned entries, which left the table (answer
        their waiters); ``orphan`` then requeues the rest."""
        lost = [e for e in self.inflight.values() if e.incarnation == incarnation]
        judgement = self.poison.judge(incarnation, lost, cause, now)
        poisoned = [self.inflight.pop(record.request_id) for record in judgement.poisoned]
        for entry in poisoned:
            self._left(entry)
        return judgement, poisoned

    def orphan(self, incarnation: str) -> list[InFlight]:
        """Requests in flight on a dead incarnation go back to the front of pending."""
        lost = [e for e in self.inflight.values() if e.incarnation == incarnation]
        for entry in lost:
            del self.inflight[entry.request_id]
            self._left(entry)
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
