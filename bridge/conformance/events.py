"""The suite's subscriptions to the event stream (PUB): connected first, read as it goes.

An ``EventStream`` is a SUB socket on the events endpoint, subscribed to some topics,
that returns from ``connect`` only once the ZMQ handshake is done (a socket monitor
says so), so events the suite provokes afterwards are not lost to a late join. The
suite opens its streams before the first check and reads them between checks
(``drain``) and while waiting for an event it expects (``wait_for``); nothing is read
on another thread. Every event is kept with its frames, decoded and judged
(``shapes.event_problems``), for the ``events-*`` checks at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from .shapes import event_problems

__all__ = ["EventStream", "Seen"]


@dataclass(frozen=True)
class Seen:
    """One event as it arrived: frames, the decoded event (None: unreadable), its problems."""

    frames: list[bytes]
    event: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    at: float = 0.0

    @property
    def kind(self) -> str:
        kind = (self.event or {}).get("kind")
        return kind if isinstance(kind, str) else "?"

    @property
    def data(self) -> dict[str, Any]:
        data = (self.event or {}).get("data")
        return data if isinstance(data, dict) else {}


class EventStream:
    """``sock`` (a fresh SUB socket; its owner closes it) on ``address`` for ``topics``
    (b"": all)."""

    def __init__(self, sock: zmq.Socket[bytes], address: str,
                 topics: tuple[bytes, ...] = (b"",)) -> None:
        self.address = address
        self.topics = topics
        self.seen: list[Seen] = []
        self.sock = sock
        self.sock.setsockopt(zmq.RCVHWM, 100_000)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)

    def connect(self, timeout: float) -> str | None:
        """Connect and wait for the handshake; None when done, else why it is not."""
        monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            try:
                self.sock.connect(self.address)
            except zmq.ZMQError as exc:
                return f"cannot connect to {self.address!r}: {exc}"
            if not monitor.poll(int(timeout * 1000)):
                return f"no handshake with the event stream {self.address} within {timeout:g}s"
            recv_monitor_message(monitor)
            return None
        finally:
            self.sock.disable_monitor()
            monitor.close(linger=0)

    def drain(self) -> None:
        """Read every event already queued (does not wait)."""
        while self.sock.poll(0, zmq.POLLIN):
            self._take()

    def _take(self) -> Seen:
        frames = self.sock.recv_multipart()
        event, problems = event_problems(frames)
        seen = Seen(frames, event, problems, time.time())
        self.seen.append(seen)
        return seen

    def wait_for(self, predicate: Callable[[Seen], bool], timeout: float) -> Seen | None:
        """The first event seen (before or now) that satisfies ``predicate``; None when
        none came within ``timeout`` seconds."""
        self.drain()
        for seen in self.seen:
            if predicate(seen):
                return seen
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                break
            seen = self._take()
            if predicate(seen):
                return seen
        return None
