"""What incarnations send the supervisor: replies and control messages, dispatched.

Frames (docs/protocol.md section 8; tags from ``lexicon.frames``), after the
ROUTER's identity frame: the incarnation id for its main socket, ``f"{id}#{k}"`` for
its lane k (split at the last ``#``: both are the incarnation's):

* ``[REPLY, id, reply]`` or ``[REPLY, id, reply, tid]``: a reply to a forwarded
  request, passed to its clients as the incarnation's own bytes (the routing table
  completes it by id, never decoding the reply); a reply to a handover's probe goes
  to the handover desk instead. ``tid`` (8 bytes: the transaction the request saw or
  made) moves ``RoutingTable.newest`` forward; a frame of another size is ignored;
* ``[CONTROL, message]``: ``Ready`` (the pool), ``Attach`` (from a lane: the pool
  routes to it from now on), ``Validated`` (the handover desk), ``Publish``
  (re-published as its own ``image.*`` event, at most ``MAX_PUBLISH_BYTES``),
  ``Suspect`` and ``Heartbeat`` (the poison ledger, the incarnation's liveness),
  ``Bye`` (it is leaving).

A message from an unknown incarnation is answered ``Stop`` (on its main identity);
bad frames are logged and dropped: nothing an incarnation sends can stop the loop.
Runs in the loop's thread.
"""

from __future__ import annotations

import logging

from bridge.codec import decode_control
from bridge.errors import ProtocolError
from bridge.messages import (
    MAX_PUBLISH_BYTES,
    Attach,
    Heartbeat,
    Publish,
    Ready,
    Stop,
    Suspect,
    Validated,
)
from lexicon.frames import CONTROL, REPLY

from .evolution import Evolution
from .incarnations import Incarnation
from .pool import Pool
from .routing import RoutingTable
from .sockets import Sockets

__all__ = ["Backend"]

log = logging.getLogger("batos.supervisor")


class Backend:
    def __init__(self, *, pool: Pool, evolution: Evolution, routing: RoutingTable,
                 sockets: Sockets) -> None:
        self.pool = pool
        self.evolution = evolution
        self.routing = routing
        self.sockets = sockets

    def receive(self, frames: list[bytes], now: float) -> None:
        if len(frames) < 3:
            log.warning("dropped a backend message with %d frames", len(frames))
            return
        ident, sep, lane = frames[0].decode(errors="replace").rpartition("#")
        if not sep:  # no '#': the main socket
            ident, lane = lane, ""
        inc = self.pool.incarnations.get(ident)
        if inc is None:
            log.warning("message from unknown incarnation %r: asking it to stop",
                        frames[0].decode(errors="replace"))
            self.sockets.control(ident if sep else frames[0], Stop(reason="unknown"))
            return
        inc.last_seen = now
        tag, count = frames[1], len(frames)
        if tag == REPLY and (count == 4 or count == 5):
            if count == 5:
                self.routing.saw(frames[4])
            self._reply(inc, frames[2].decode(errors="replace"), frames[3], now)
        elif tag == CONTROL:
            self._control(inc, frames[2], now, lane)
        else:
            log.warning("unexpected backend frames from %s", frames[0].decode(errors="replace"))

    def _reply(self, inc: Incarnation, rid: str, payload: bytes, now: float) -> None:
        if self.evolution.takes_reply(rid):
            self.evolution.on_probe(rid, payload)
            return
        entry = self.routing.complete(rid)
        self.pool.replied(inc)
        if entry is not None:
            self.sockets.reply_all(entry.waiters, payload)
            if self.routing.pending and self.routing.lane is None:  # the next suspect may go
                self.sockets.forward_all(self.routing.release_pending(now))

    def _control(self, inc: Incarnation, frame: bytes, now: float, lane: str) -> None:
        try:
            message = decode_control(frame)
        except ProtocolError as exc:
            log.warning("bad control message from %s: %s", inc.id, exc)
            return
        if isinstance(message, Attach):
            if lane != str(message.lane) or message.incarnation != inc.id:
                log.warning("ignored an attach of lane %s of %s from %s", message.lane,
                            message.incarnation, f"{inc.id}#{lane}" if lane else inc.id)
                return
            self.pool.on_attach(inc, message.lane)
        elif isinstance(message, Ready):
            self.pool.on_ready(inc, message, now)
        elif isinstance(message, Validated):
            self.evolution.on_validated(inc.id, message.ok, message.record)
        elif isinstance(message, Publish):
            self._publish(inc, message, len(frame))
        elif isinstance(message, Suspect):
            log.warning("incarnation %s suspects request %s: %s", inc.id, message.request,
                        message.reason)
            self.routing.poison.announce(inc.id, message.request, message.reason)
        elif isinstance(message, Heartbeat):
            inc.busy = message.busy
            if message.quarantined is not None:
                self.routing.poison.report(inc.id, message.quarantined, now)
        elif message.kind == "bye":
            # expected only if we asked (Stop): an incarnation that leaves on its own
            # (an operator's SIGTERM) is replaced like any other exit
            inc.state = "stopping"

    def _publish(self, inc: Incarnation, message: Publish, size: int) -> None:
        """An image event from an incarnation, re-published as its own kind (``image.*``)."""
        if size > MAX_PUBLISH_BYTES or not message.event.startswith("image."):
            log.warning("dropped an event from %s: %s", inc.id,
                        f"{size} bytes (limit {MAX_PUBLISH_BYTES})" if size > MAX_PUBLISH_BYTES
                        else f"kind {message.event!r} is not an image event")
            return
        self.sockets.emit(message.event, {**message.data, "incarnation": inc.id})
