"""The supervisor's ZMQ sockets: bound, polled, written to and closed here.

Addresses come from ``config.Home`` (docs/protocol.md has the frames):

* frontend  ROUTER  ``config.endpoint`` (TCP, loopback unless CURVE) and
  ``ipc://<run>/fe.sock``: client requests and replies; a reply's envelope
  starts with the index of the frontend the request came in on;
* backend   ROUTER  ``ipc://<run>/be.sock``: incarnations (DEALER, identity =
  incarnation id); every message's first frame is a ``lexicon.frames`` tag;
* events    PUB     ``ipc://<run>/ev.sock``: incarnation and supervisor events.

Thread boundary: one ``Sockets`` belongs to the loop's thread (``server``); no
other thread touches a socket. Sending never blocks and never raises: a client
that went away loses its reply (logged), a backend send that fails is answered
with the error for the caller to judge, an event nobody can take is dropped.
Before ``open`` (and after ``close``) ``publish`` is a no-op, so collaborators
built around an unopened ``Sockets`` (unit tests) still run.

What arrives is not read here: the loop (``server``) receives and hands frames
to ``frontend`` and ``backend``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import zmq
from pydantic import BaseModel

from bridge.codec import encode
from bridge.messages import ErrorInfo, Event, Reply
from lexicon.frames import CONTROL, REQUEST

from . import keys
from .config import Config, Home
from .routing import Envelope, InFlight

__all__ = ["Sockets"]

log = logging.getLogger("batos.supervisor")


class Sockets:
    def __init__(self, home: Home, config: Config) -> None:
        self.home = home
        self.config = config
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
        sock = self.frontends[envelope[0][0]]
        try:
            sock.send_multipart([*envelope[1:], payload], zmq.NOBLOCK)
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
            self.backend.send_multipart([name, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            return exc
        return None

    def control(self, ident: str | bytes, message: BaseModel) -> zmq.ZMQError | None:
        return self.send(ident, [CONTROL, encode(message)])

    def forward(self, entry: InFlight) -> None:
        """A client's request to the incarnation the routing table gave it."""
        assert entry.incarnation is not None
        error = self.send(entry.incarnation, [REQUEST, entry.payload])
        if error is not None:  # it just went away: its exit will requeue the request
            log.warning("could not forward to %s: %s", entry.incarnation, error)

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
