"""What every check gets: the options, the wire, the event streams and a few helpers.

``Options`` is what the person running the suite chose (``python -m bridge.conformance
--help``). ``Context`` holds one run: the ``Wire`` (the suite's own sockets), a main
DEALER conversation, the event streams opened before the first check (all topics, and
``handover`` alone to show the topic filter works), a tag unique to the run (the
image objects the suite makes are named ``conformance_<tag>_<label>``, so runs never
meet), and ``state`` where the handover checks leave what later checks read.

The helpers answer decoded values and raise ``Failed`` with what was sent and what
came back, so a check reads as the spec does. Runs on the suite's one thread.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import zmq

from .events import EventStream
from .registry import Failed
from .shapes import expect_ok
from .wire import Conn, Wire, new_id, request

__all__ = ["Context", "Options"]

HANDSHAKE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Options:
    endpoint: str
    #: the events PUB address; None: the one ``status`` names (``supervisor.events``)
    events: str | None = None
    #: seconds to wait for each reply
    timeout: float = 10.0
    #: a requirement a real ``evolve`` may add (then ``rollback`` undoes it); None: the
    #: suite changes no environment and the handover checks are skipped
    evolve_requirement: str | None = None
    find_links: tuple[str, ...] = ()
    offline: bool = False
    #: seconds a real evolve or rollback may take, and its probation after
    handover_timeout: float = 900.0
    #: the server's frame limit (``max_frame``; 1 MiB by default)
    max_frame: int = 1 << 20
    #: check names or shell patterns to run (empty: all)
    only: tuple[str, ...] = ()


@dataclass
class Context:
    options: Options
    wire: Wire
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    #: the stream of every topic, and the one subscribed to ``handover`` alone
    events: EventStream | None = None
    handover_events: EventStream | None = None
    #: why there are no event streams (None: they are open)
    events_problem: str | None = None
    #: what the handover checks did, for the event checks: "evolve"/"rollback" ->
    #: (request id, reply)
    state: dict[str, Any] = field(default_factory=dict)
    _conn: Conn | None = None

    @property
    def conn(self) -> Conn:
        if self._conn is None:
            self._conn = self.wire.dealer()
        return self._conn

    # --- requests -------------------------------------------------------------------

    def ask(self, kind: str, *, rid: str | None = None, timeout: float | None = None,
            **fields: Any) -> tuple[str, dict[str, Any]]:
        """Send a request of ``kind`` on the main DEALER; its id and its reply map."""
        message = request(kind, rid, **fields)
        return message["id"], self.conn.ask(message, timeout)

    def call(self, kind: str, *, timeout: float | None = None, **fields: Any) -> Any:
        """The result of a request that must succeed."""
        rid, reply = self.ask(kind, timeout=timeout, **fields)
        return expect_ok(reply, rid, f"{kind} {_fields(fields)}")

    def send(self, target: str, selector: str, *args: Any, rid: str | None = None,
             timeout: float | None = None) -> tuple[str, dict[str, Any]]:
        return self.ask("send", rid=rid, timeout=timeout, target=target, selector=selector,
                        args=list(args))

    def image(self, target: str, selector: str, *args: Any, timeout: float | None = None) -> Any:
        """The result of a ``send`` that must succeed."""
        rid, reply = self.send(target, selector, *args, timeout=timeout)
        return expect_ok(reply, rid, f"send {target} {selector} {_fields({'args': list(args)})}")

    def status(self) -> dict[str, Any]:
        result = self.call("status")
        if not isinstance(result, dict):
            raise Failed(f"status answers a map, got {type(result).__name__}")
        return result

    def make_object(self, label: str, slots: dict[str, Any] | None = None,
                    methods: dict[str, str] | None = None, *, parentless: bool = False) -> str:
        """A new object cloned from ``genesis``, registered as ``conformance_<tag>_<label>``,
        with ``slots`` and ``methods`` (selector -> source), in one ``applyActs:``;
        ``parentless``: its parent slot removed, so nothing is inherited (not even
        ``doesNotUnderstand:``). Answers its name."""
        name = f"conformance_{self.tag}_{label}"
        acts: list[dict[str, Any]] = [{"action": "CLONE_PROTOTYPE", "target": "genesis",
                                       "label": "o", "name": name, "slots": dict(slots or {})}]
        acts += [{"action": "DEFINE_METHOD", "target": "@o", "selector": selector,
                  "source": source, "reason": "conformance suite"}
                 for selector, source in (methods or {}).items()]
        if parentless:
            acts.append({"action": "REMOVE_SLOT", "target": "@o", "slot": "parent*"})
        self.image("genesis", "applyActs:", acts)
        return name

    # --- events ---------------------------------------------------------------------

    def open_events(self) -> None:
        """Subscribe before the first check (all topics, and ``handover`` alone)."""
        address = self.options.events
        if address is None:
            try:
                address = self.status().get("supervisor", {}).get("events")
            except Failed as exc:
                self.events_problem = f"the events address is unknown: status failed: {exc}"
                return
            if not isinstance(address, str) or not address:
                self.events_problem = ("status names no events address (supervisor.events); "
                                       "give --events")
                return
        streams = []
        for topics in ((b"",), (b"handover",)):
            stream = EventStream(self.wire.socket(zmq.SUB), address, topics)
            problem = stream.connect(HANDSHAKE_TIMEOUT)
            if problem is not None:
                self.events_problem = problem
                return
            streams.append(stream)
        self.events, self.handover_events = streams

    def drain(self) -> None:
        for stream in (self.events, self.handover_events):
            if stream is not None:
                stream.drain()

    def fresh_id(self, what: str) -> str:
        return new_id(what)


def _fields(fields: dict[str, Any]) -> str:
    text = repr(fields)
    return text if len(text) <= 160 else text[:160] + "...}"
