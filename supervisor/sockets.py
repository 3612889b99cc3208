"""The supervisor's ZMQ sockets: bound, polled, written to and closed here.

Addresses come from ``config.Home`` (docs/protocol.md has the frames):

* frontend  ROUTER  ``config.endpoint`` (TCP, loopback unless CURVE) and
  ``ipc://<run>/fe.sock``: client requests and replies; a reply's envelope
  starts with the index of the frontend the request came in on;
* backend   ROUTER  ``ipc://<run>/be.sock``: incarnations (DEALER, identity =
  incarnation id, and one DEALER per lane, identity ``f"{id}#{k}"``); every
  message's first frame is a ``lexicon.frames`` tag;
* events    PUB     ``ipc://<run>/ev.sock``: incarnation and supervisor events.

Thread boundary: one ``Sockets`` belongs to the loop's thread (``server``); no
other thread touches a socket. Sending never blocks and never raises: a client
that went away loses its reply (logged), a backend send that fails is answered
with the error for the caller to judge, an event nobody can take is dropped.
Before ``open`` (and after ``close``) ``publish`` is a no-op, so collaborators
built around an unopened ``Sockets`` (unit tests) still run.

A forwarded request (``forward``) goes to the lane of its incarnation that
``RoutingTable.place`` picks (its target's lane when attached and not held up by a
long request), else (no lanes, none attached or free, or the lane cannot take it)
to the incarnation's main socket; it carries ``routing.newest`` as its ``after`` frame once a reply has
carried a transaction id (docs/protocol.md section 8), except a resend after its
incarnation ended (it may have committed there with no reply to say so): without
``after``, the incarnation makes the round trip and sees that run's reply record.

What arrives is handled elsewhere: the loop (``server``) drains each readable
socket (``drain``: at most a batch, without waiting) and hands the frames to
``frontend`` and ``backend``. Per message this path passes plain ints as flags
and options to pyzmq (its enum arithmetic costs more than the send) and ends a
drain by asking the socket (``EVENTS``), not by a raised ``zmq.Again``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import zmq
from pydantic import BaseModel

from bridge.codec import encode
from bridge.messages import ErrorInfo, Event, Reply
from lexicon.frames import CONTROL, REQUEST

from . import keys
from .config import Config, Home
from .incarnations import Incarnation
from .routing import Envelope, InFlight, RoutingTable, lane_for

__all__ = ["Sockets", "drain", "put"]

log = logging.getLogger("batos.supervisor")

_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.SNDMORE) | _NOBLOCK
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def put(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """``frames`` as one message without blocking (``zmq.ZMQError`` when it cannot take
    it: a ROUTER_MANDATORY peer that is gone or full refuses the first frame)."""
    send = sock.send
    for frame in frames[:-1]:
        send(frame, _MORE)
    send(frames[-1], _NOBLOCK)


def drain(sock: zmq.Socket[bytes], limit: int) -> Iterator[list[bytes]]:
    """Up to ``limit`` messages ``sock`` already holds, each as its frames; never waits."""
    recv, get = sock.recv, sock.get
    for _ in range(limit):
        if not get(_EVENTS) & _POLLIN:
            return
        try:
            part = recv(_NOBLOCK, copy=False)
        except zmq.Again:  # EVENTS said readable: not expected, but never an error
            return
        frames = [part.bytes]
        while part.more:  # the frame knows: no getsockopt(RCVMORE) per frame
            part = recv(_NOBLOCK, copy=False)
            frames.append(part.bytes)
        yield frames


class Sockets:
    def __init__(self, home: Home, config: Config, *, routing: RoutingTable | None = None,
                 incarnations: Mapping[str, Incarnation] | None = None) -> None:
        self.home = home
        self.config = config
        #: where ``forward`` reads ``newest`` (None: no ``after`` frame)
        self.routing = routing
        #: the pool's process table, where ``forward`` reads each incarnation's lanes
        self.incarnations: Mapping[str, Incarnation] = incarnations or {}
        self.ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.frontends: list[zmq.Socket[bytes]] = []
        self.backend: zmq.Socket[bytes] | None = None
        self.events: zmq.Socket[bytes] | None = None
        self.authenticator: Any = None
        self.poller = zmq.Poller()
        self._sockets: list[zmq.Socket[bytes]] = []

    @property
    def opened(self) -> bool:
        return self.backend is not None

    @property
    def curve(self) -> bool:
        """The TCP frontend requires CURVE."""
        return self.authenticator is not None

    @property
    def endpoints(self) -> list[str]:
        return [self.config.endpoint] + ([self.home.frontend_ipc] if self.config.ipc_frontend else [])

    # --- binding and closing ----------------------------------------------------------

    def open(self) -> None:
        self.ctx = zmq.Context()
        tcp = self._router()
        if self.config.curve or (self.config.curve is None and not keys.is_loopback(self.config.endpoint)):
            curve = keys.server_curve(self.home.root)  # KeysMissing before any thread starts
            self.authenticator = keys.start_authenticator(self.ctx, self.home.root)
            curve.apply(tcp)
            log.info("frontend requires CURVE", extra={"endpoint": self.config.endpoint})
        tcp.bind(self.config.endpoint)
        self.frontends.append(tcp)
        if self.config.ipc_frontend:
            ipc = self._router()
            ipc.bind(self.home.frontend_ipc)
            self.frontends.append(ipc)
        backend = self._router()
        backend.bind(self.home.backend)
        self.backend = backend
        events = self._made(zmq.PUB)
        events.bind(self.home.events)
        self.events = events
        for sock in (*self.frontends, backend):
            self.poller.register(sock, zmq.POLLIN)

    def _made(self, kind: int) -> zmq.Socket[bytes]:
        """A socket of this context, remembered so ``close`` closes it even when ``open``
        failed half-way (a context with an open socket never terminates)."""
        assert self.ctx is not None
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self._sockets.append(sock)
        return sock

    def _router(self) -> zmq.Socket[bytes]:
        sock = self._made(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_frame * 4)
        return sock

    def close(self) -> None:
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets, self.frontends, self.backend, self.events = [], [], None, None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None

    # --- clients --------------------------------------------------------------------

    def reply(self, envelope: Envelope, reply: Reply | bytes) -> None:
        payload = reply if isinstance(reply, bytes) else encode(reply)
        try:
            put(self.frontends[envelope[0][0]], [*envelope[1:], payload])
        except zmq.ZMQError as exc:  # the client went away (EHOSTUNREACH) or is not reading
            log.info("reply not delivered: %s", exc)

    def reply_all(self, waiters: Iterable[Envelope], reply: Reply | bytes) -> None:
        """One reply to every client waiting on a request (encoded once)."""
        payload = reply if isinstance(reply, bytes) else encode(reply)
        for envelope in waiters:
            self.reply(envelope, payload)

    def reply_error(self, entry: InFlight, type_: str, message: str) -> None:
        self.reply_all(entry.waiters, Reply(id=entry.request_id, ok=False, error=ErrorInfo(
            type=type_, message=message, where="supervisor")))

    # --- incarnations ---------------------------------------------------------------

    def send(self, ident: str | bytes, frames: list[bytes]) -> zmq.ZMQError | None:
        """Frames to an incarnation; answers the error when it could not take them."""
        assert self.backend is not None
        name = ident.encode() if isinstance(ident, str) else ident
        try:
            put(self.backend, [name, *frames])
        except zmq.ZMQError as exc:
            return exc
        return None

    def control(self, ident: str | bytes, message: BaseModel) -> zmq.ZMQError | None:
        return self.send(ident, [CONTROL, encode(message)])

    def forward(self, entry: InFlight) -> None:
        """A client's request to the incarnation the routing table gave it: to the lane
        for its target when attached, else (or when the lane cannot take it) to main."""
        ident = entry.incarnation
        assert ident is not None
        # a resend (requeued when its incarnation ended) may have committed there unseen:
        # no reply carried that tid, so no after frame (the incarnation makes the round trip)
        routing = self.routing
        newest = routing.newest if routing is not None and entry.attempts < 2 else None
        frames = [REQUEST, entry.payload] if newest is None else [REQUEST, entry.payload, newest]
        inc = self.incarnations.get(ident)
        if inc is not None and inc.attached:
            lane = (lane_for(entry.target, inc.lanes, inc.attached) if routing is None
                    else routing.place(entry, inc.lanes, inc.attached))
            if lane is not None:
                if self.send(f"{ident}#{lane}", frames) is None:
                    return
                if routing is not None:
                    routing.unplace(entry)
        error = self.send(ident, frames)
        if error is not None:  # it just went away: its exit will requeue the request
            log.warning("could not forward to %s: %s", ident, error)

    def lanes(self, inc: Incarnation) -> list[str]:
        """The backend identities of ``inc``'s attached lanes."""
        return [f"{inc.id}#{lane}" for lane in sorted(inc.attached)]

    def forward_all(self, entries: Iterable[InFlight]) -> None:
        for entry in entries:
            self.forward(entry)

    # --- events ---------------------------------------------------------------------

    def publish(self, kind: str, **data: Any) -> None:
        self.emit(kind, data)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.events is None:
            return
        event = Event(kind=kind, ts=time.time(), data=data)
        try:
            self.events.send_multipart([kind.split(".")[0].encode(), encode(event)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
