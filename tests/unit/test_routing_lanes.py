"""Lanes and transaction ids on the supervisor's side: pure rules, then the parts together.

* ``lane_for``: a target's lane is ``zlib.crc32(target) % lanes`` when that lane has
  attached, else None (the main socket);
* ``RoutingTable.newest``: the largest 8-byte tid any reply carried; other sizes ignored;
* the parts (the backend, the pool, the sockets with sends recorded, no processes):
  replies and controls from ``ident#k`` are the incarnation's, ``Attach`` marks a lane,
  a 5th reply frame moves ``newest``, a forward goes to its lane (to main when the lane is
  not attached or refuses it) with ``newest`` as its ``after`` frame, a ``Quarantine``
  goes to main and every attached lane, and to a lane that attaches after it was sent.
"""

from __future__ import annotations

import struct
import typing
import zlib
from pathlib import Path
from typing import Any

import pytest
import zmq

from bridge.codec import encode, unpack
from bridge.messages import Attach, Heartbeat, QuarantinedMethod, Ready
from lexicon.frames import CONTROL, REPLY, REQUEST
from supervisor.backend import Backend
from supervisor.incarnations import Incarnation
from supervisor.routing import RoutingTable, lane_for
from tests.unit.test_supervisor_parts import Parts


def tid(n: int) -> bytes:
    return struct.pack(">Q", n)


# --- pure rules -------------------------------------------------------------------------


def test_a_target_has_one_lane_index_everywhere() -> None:
    for target in ("genesis", "0f8c3a4e-1b2c-4d5e-8f90-123456789abc", "é✓", "x" * 256):
        expected = zlib.crc32(target.encode()) % 4
        assert lane_for(target, 4, {0, 1, 2, 3}) == expected
        assert lane_for(target, 4, {0, 1, 2, 3} - {expected}) is None  # not attached: main


def test_no_lanes_means_main() -> None:
    assert lane_for("genesis", 0, {0, 1}) is None
    assert lane_for("genesis", 0, set()) is None


def test_targets_spread_over_the_lanes() -> None:
    seen = [lane_for(f"obj-{i}", 4, range(4)) for i in range(400)]
    counts = [seen.count(k) for k in range(4)]
    assert all(60 < c < 140 for c in counts), counts


def test_newest_is_the_largest_tid_and_only_8_bytes_count() -> None:
    table = RoutingTable()
    assert table.newest is None
    table.saw(tid(5))
    table.saw(tid(3))  # an older one from a slower incarnation
    assert table.newest == tid(5)
    table.saw(b"\xff" * 7)
    table.saw(b"\xff" * 9)
    table.saw(b"")
    assert table.newest == tid(5)
    table.saw(tid(256))  # bytes order is number order (big-endian)
    assert table.newest == tid(256)


# --- the parts together ------------------------------------------------------------------


class Lanes(Parts):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.sockets.routing = self.routing
        self.sockets.incarnations = self.pool.incarnations
        self.backend = Backend(pool=self.pool, evolution=self.evolution, routing=self.routing,
                               sockets=self.sockets)
        #: identities whose sends fail as a ROUTER_MANDATORY send to a gone peer does
        self.unreachable: set[str] = set()
        record = self.sockets.send

        def send(ident: str | bytes, frames: list[bytes]) -> zmq.ZMQError | None:
            name = ident if isinstance(ident, str) else ident.decode()
            if name in self.unreachable:
                return zmq.ZMQError(zmq.EHOSTUNREACH)
            record(ident, frames)
            return None

        self.sockets.send = send  # type: ignore[method-assign]

    def ready(self, ident: str, lanes: int) -> Incarnation:
        inc = self.incarnation(ident, state="starting")
        inc.role = "active"
        self.from_(ident, [CONTROL, encode(Ready(incarnation=ident, pid=1, env_id="e1",
                                                 lanes=lanes))])
        assert inc.state == "ready"
        assert inc.lanes == lanes
        return inc

    def from_(self, identity: str, frames: list[bytes]) -> None:
        self.backend.receive([identity.encode(), *frames], 1.0)

    def attach(self, ident: str, lane: int) -> None:
        self.from_(f"{ident}#{lane}", [CONTROL, encode(Attach(incarnation=ident, lane=lane))])

    def sent_to(self) -> list[tuple[str, list[bytes]]]:
        return [(ident, frames) for ident, frames in self.sockets.sent if frames[0] == REQUEST]

    def quarantines(self) -> list[tuple[str, str]]:
        return [(ident, unpack(frames[1])["request"]) for ident, frames in self.sockets.sent
                if frames[0] == CONTROL and unpack(frames[1])["kind"] == "quarantine"]


@pytest.fixture(name="lanes")
def lanes_fixture(tmp_path: Path) -> typing.Iterator[Lanes]:
    made = Lanes(tmp_path)
    try:
        yield made
    finally:
        made.close()


def target_on(lane: int, lanes: int = 4) -> str:
    return next(t for i in range(1000) if lane_for(t := f"obj-{i}", lanes, {lane}) == lane)


def ok(rid: str) -> bytes:
    return encode({"v": 1, "id": rid, "ok": True, "result": rid})


def send(parts: Lanes, rid: str, target: str) -> dict[str, Any] | None:
    return parts.ask(kind="send", id=rid, target=target, selector="name")


def test_a_request_goes_to_its_attached_lane_else_to_main(lanes: Lanes) -> None:
    lanes.ready("inc-1", 4)
    lanes.attach("inc-1", 2)
    assert lanes.pool.incarnations["inc-1"].attached == {2}
    send(lanes, "r1", target_on(2))
    send(lanes, "r2", target_on(1))  # lane 1 has not attached
    assert [ident for ident, _ in lanes.sent_to()] == ["inc-1#2", "inc-1"]
    assert lanes.pool.incarnations["inc-1"].status(1.0)["attached"] == [2]


def test_a_lane_that_cannot_take_a_request_leaves_it_to_main(lanes: Lanes) -> None:
    lanes.ready("inc-1", 4)
    lanes.attach("inc-1", 0)
    lanes.unreachable.add("inc-1#0")
    send(lanes, "r1", target_on(0))
    assert [ident for ident, _ in lanes.sent_to()] == ["inc-1"]
    assert lanes.routing.inflight["r1"].incarnation == "inc-1"


def test_an_incarnation_without_lanes_gets_everything_on_main(lanes: Lanes) -> None:
    lanes.ready("inc-1", 0)
    lanes.attach("inc-1", 0)  # an attach it should not have sent changes nothing
    for i in range(10):
        send(lanes, f"r{i}", f"obj-{i}")
    assert {ident for ident, _ in lanes.sent_to()} == {"inc-1"}


def test_replies_from_a_lane_are_the_incarnations_and_their_tid_is_the_newest(
        lanes: Lanes) -> None:
    lanes.ready("inc-1", 2)
    lanes.attach("inc-1", 0)
    lanes.attach("inc-1", 1)
    send(lanes, "r1", "a")
    send(lanes, "r2", "b")
    send(lanes, "r3", "c")
    _, first = lanes.sent_to()[0]
    assert first == [REQUEST, first[1]]  # no tid seen yet: no after frame
    lanes.from_("inc-1#0", [REPLY, b"r1", ok("r1"), tid(7)])
    lanes.from_("inc-1#1", [REPLY, b"r2", ok("r2"), tid(4)])  # older: newest stays
    lanes.from_("inc-1", [REPLY, b"r3", ok("r3"), b"short"])  # not a tid: ignored
    assert [r["id"] for _, r in lanes.sockets.replies] == ["r1", "r2", "r3"]
    assert not lanes.routing.inflight
    assert lanes.pool.incarnations["inc-1"].served == 3
    assert lanes.routing.newest == tid(7)
    send(lanes, "r4", "d")
    _, frames = lanes.sent_to()[-1]
    assert frames[0] == REQUEST
    assert frames[2] == tid(7)


def test_a_four_frame_reply_still_completes(lanes: Lanes) -> None:
    lanes.ready("inc-1", 0)
    send(lanes, "r1", "a")
    lanes.from_("inc-1", [REPLY, b"r1", ok("r1")])
    assert not lanes.routing.inflight
    assert lanes.routing.newest is None


def test_an_attach_must_name_the_lane_it_comes_from(lanes: Lanes) -> None:
    inc = lanes.ready("inc-1", 4)
    lanes.from_("inc-1#1", [CONTROL, encode(Attach(incarnation="inc-1", lane=2))])
    lanes.from_("inc-1", [CONTROL, encode(Attach(incarnation="inc-1", lane=0))])  # on main
    lanes.from_("inc-1#3", [CONTROL, encode(Attach(incarnation="inc-9", lane=3))])
    assert inc.attached == set()
    lanes.attach("inc-1", 3)
    assert inc.attached == {3}


def test_a_lane_of_an_unknown_incarnation_is_told_to_stop_on_its_main(lanes: Lanes) -> None:
    lanes.from_("inc-9#1", [CONTROL, encode(Heartbeat(incarnation="inc-9"))])
    ident, frames = lanes.sockets.sent[-1]
    assert ident == "inc-9"
    assert unpack(frames[1])["kind"] == "stop"


def test_lane_frames_keep_the_incarnation_alive(lanes: Lanes) -> None:
    inc = lanes.ready("inc-1", 2)
    inc.last_seen = 0.0
    lanes.attach("inc-1", 1)
    assert inc.last_seen == 1.0


def test_a_quarantine_goes_to_main_and_every_attached_lane(lanes: Lanes) -> None:
    first = lanes.ready("inc-1", 2)
    send(lanes, "bad", "victim")
    first.proc.returncode = -9
    lanes.pool.on_exit(first, now=2.0)  # first death: requeued
    second = lanes.ready("inc-2", 2)
    lanes.attach("inc-2", 0)
    second.proc.returncode = -9
    lanes.pool.on_exit(second, now=3.0)  # second death: poisoned
    assert lanes.routing.poison.verdict("bad") is not None
    third = lanes.ready("inc-3", 3)
    assert lanes.quarantines()[-1:] == [("inc-3", "bad")]  # ready before any lane attached
    lanes.attach("inc-3", 1)
    assert lanes.quarantines()[-2:] == [("inc-3", "bad"), ("inc-3#1", "bad")]
    lanes.attach("inc-3", 1)  # attached already: nothing again
    assert len(lanes.quarantines()) == 2
    lanes.from_("inc-3", [CONTROL, encode(Heartbeat(incarnation="inc-3", quarantined=[
        QuarantinedMethod(holder="victim", selector="name", request="bad")]))])
    lanes.attach("inc-3", 0)  # reported done: a lane attaching now gets none
    assert len(lanes.quarantines()) == 2
    assert third.attached == {0, 1}


def test_quarantines_due_go_to_every_attached_lane_at_once(lanes: Lanes) -> None:
    inc = lanes.ready("inc-1", 2)
    lanes.attach("inc-1", 0)
    lanes.attach("inc-1", 1)
    send(lanes, "bad", "victim")
    entry = lanes.routing.inflight.pop("bad")
    lanes.routing.poison._poison(entry, (), 2.0)
    lanes.pool.send_quarantines()
    assert lanes.quarantines() == [("inc-1", "bad"), ("inc-1#0", "bad"), ("inc-1#1", "bad")]
    assert inc.attached == {0, 1}


def test_a_lane_that_cannot_take_a_quarantine_is_detached(lanes: Lanes) -> None:
    """Its targets' requests then go to main, behind the Quarantine main took."""
    inc = lanes.ready("inc-1", 2)
    lanes.attach("inc-1", 0)
    lanes.attach("inc-1", 1)
    send(lanes, "bad", "victim")
    entry = lanes.routing.inflight.pop("bad")
    lanes.routing.poison._poison(entry, (), 2.0)
    lanes.unreachable.add("inc-1#1")
    lanes.pool.send_quarantines()
    assert lanes.quarantines() == [("inc-1", "bad"), ("inc-1#0", "bad")]
    assert inc.attached == {0}
    send(lanes, "next", target_on(1, 2))
    assert lanes.sent_to()[-1][0] == "inc-1"
