"""The suite's own end of the wire: raw ZMQ sockets and msgpack bytes, no ``bridge.Client``.

The suite tests the wire, not our client, so it builds frames itself: ``pack`` is
plain msgpack (ormsgpack, with non-string keys and extension types allowed, since the
suite must be able to send what the server has to refuse), ``request`` a request map
with a fresh id, and ``Conn`` one DEALER or REQ socket that sends frames and receives
them, every receive with a deadline. ``Conn.ask`` sends a request and answers the
reply map with its id; ``Conn.probe`` sends anything (envelope frames and a payload),
then a fence (a ``ping`` with an id of its own) on the same socket, and answers every
message that came back before the fence's reply: the frontend answers in order, so a
probe answered zero or two times shows without waiting for a quiet period.

A reply that is not msgpack, or that never comes, is a ``Failed`` verdict naming
what was sent. Thread boundary: a ``Wire`` and its sockets belong to one thread.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ormsgpack
import zmq

from .registry import Failed

__all__ = ["PROTOCOL_VERSION", "Conn", "Ext", "Wire", "new_id", "pack", "request", "unpack"]

#: the ``v`` every message carries (docs/protocol.md, "Versioning")
PROTOCOL_VERSION = 1

Ext = ormsgpack.Ext


def new_id(what: str = "c") -> str:
    """A fresh request id: unique across clients (a uuid4), and saying who sent it."""
    return f"conformance-{what}-{uuid.uuid4().hex}"


def pack(value: Any) -> bytes:
    """msgpack bytes of ``value``; maps may have keys of any type (to provoke refusals)."""
    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def unpack(payload: bytes) -> Any:
    return ormsgpack.unpackb(payload, option=ormsgpack.OPT_NON_STR_KEYS)


def request(kind: str, rid: str | None = None, **fields: Any) -> dict[str, Any]:
    """A request map of protocol version 1: ``{v, id, kind, **fields}``."""
    return {"v": PROTOCOL_VERSION, "id": rid or new_id(kind), "kind": kind, **fields}


@dataclass(frozen=True)
class Received:
    """One message that came back: its frames, and the last one decoded (None: not msgpack)."""

    frames: list[bytes]
    reply: Any

    @property
    def envelope(self) -> list[bytes]:
        return self.frames[:-1]


class Conn:
    """One DEALER (or REQ) socket connected to the frontend."""

    def __init__(self, sock: zmq.Socket[bytes], kind: str, endpoint: str, timeout: float) -> None:
        self.sock = sock
        self.kind = kind
        self.endpoint = endpoint
        self.timeout = timeout

    def send_frames(self, frames: Sequence[bytes]) -> None:
        self.sock.send_multipart(list(frames))

    def recv(self, timeout: float | None = None) -> Received | None:
        """The next message, or None when nothing came within ``timeout`` seconds."""
        wait = self.timeout if timeout is None else timeout
        if not self.sock.poll(max(0, int(wait * 1000)), zmq.POLLIN):
            return None
        frames = self.sock.recv_multipart()
        try:
            reply = unpack(frames[-1])
        except (ormsgpack.MsgpackDecodeError, ValueError, TypeError):
            reply = None
        return Received(frames, reply)

    def send(self, message: dict[str, Any] | bytes, envelope: Iterable[bytes] = ()) -> None:
        payload = message if isinstance(message, bytes) else pack(message)
        self.send_frames([*envelope, payload])

    def ask(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a request; its reply map (the first reply whose ``id`` is the request's).

        Replies for other ids are skipped; no reply in time is ``Failed``."""
        self.send(message)
        return self.wait_reply(message["id"], timeout, what=f"{message.get('kind')!r} request")

    def ask_raw(self, payload: bytes, rid: str, timeout: float | None = None) -> dict[str, Any]:
        """Send a payload built by hand; the reply map carrying ``rid``."""
        self.send_frames([payload])
        return self.wait_reply(rid, timeout, what="hand-built request")

    def wait_reply(self, rid: str, timeout: float | None = None, *,
                   what: str = "request") -> dict[str, Any]:
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(left)
            if got is None:
                break
            if isinstance(got.reply, dict) and got.reply.get("id") == rid:
                return got.reply
        raise Failed(f"no reply to the {what} {rid} within {wait:g}s (silence)")

    def probe(self, payload: bytes, envelope: Sequence[bytes] = (),
              timeout: float | None = None) -> list[Received]:
        """Send ``[*envelope, payload]`` and a fence ping; every message answered before the
        fence's reply (normally exactly one: the probe's reply)."""
        if self.kind != "dealer":
            raise ValueError("probe needs a DEALER (a REQ socket takes one request at a time)")
        fence = request("ping", new_id("fence"))
        self.send_frames([*envelope, payload])
        self.send(fence)
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        seen: list[Received] = []
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(left)
            if got is None:
                break
            fenced = isinstance(got.reply, dict) and got.reply.get("id") == fence["id"]
            if fenced and len(got.frames) == 1:
                return seen
            seen.append(got)
        raise Failed(f"no reply to a fence ping sent after the probe within {wait:g}s "
                     f"({len(seen)} message(s) came back before the deadline)")

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close(linger=0)


class Wire:
    """The suite's ZMQ context: hands out connected sockets, closes them all at the end."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sockets: list[zmq.Socket[bytes]] = []

    def dealer(self) -> Conn:
        return self._conn(zmq.DEALER, "dealer")

    def req(self) -> Conn:
        return self._conn(zmq.REQ, "req")

    def socket(self, kind: int) -> zmq.Socket[bytes]:
        """A socket of the suite's context (closed by ``close``); the caller connects it."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self._sockets.append(sock)
        return sock

    def _conn(self, kind: int, name: str) -> Conn:
        sock = self.socket(kind)
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            raise Failed(f"cannot connect to {self.endpoint!r}: {exc}") from exc
        conn = Conn(sock, name, self.endpoint, self.timeout)
        return conn

    def close(self) -> None:
        for sock in self._sockets:
            if not sock.closed:
                sock.close(linger=0)
        self._sockets.clear()
        self.ctx.term()
