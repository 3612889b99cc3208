"""``RoutingTable.place``: a lane held up by a long request is passed over (pure rules).

A lane runs one request at a time, so a request that runs long would hold up every
other object whose target hashes to its lane. Once the oldest request on a lane has run
``LANE_HELD`` seconds, new requests for its targets go to the least busy lane that is
not held up (main when every lane is); a lane is free again once its requests leave
the table (answered, poisoned, or requeued when their incarnation ended).
The same through a real ``batos up``: tests/integration/test_fastpath_faults.py.
"""

from __future__ import annotations

from supervisor.routing import LANE_HELD, RoutingTable, lane_for

LANES = 4
ALL = frozenset(range(LANES))


def targets_on(lane: int, count: int) -> list[str]:
    found = [t for t in (f"obj-{i}" for i in range(500)) if lane_for(t, LANES, ALL) == lane]
    return found[:count]


def sent(table: RoutingTable, rid: str, target: str, now: float,
         inc: str = "inc-1-1") -> tuple[int | None, str]:
    table.switch(inc)
    table.accept(rid, (b"\x00", rid.encode()), b"payload", now, target=target, selector="x")
    return table.place(table.inflight[rid], LANES, ALL), rid


def test_a_target_goes_to_its_lane_while_the_lane_is_not_held_up() -> None:
    table = RoutingTable()
    a, b = targets_on(2, 2)
    assert sent(table, "r1", a, 0.0)[0] == 2
    assert sent(table, "r2", b, LANE_HELD * 0.9)[0] == 2  # busy, not yet held up


def test_a_held_up_lane_is_passed_over_for_the_least_busy_free_one() -> None:
    table = RoutingTable()
    slow, other = targets_on(1, 2)
    busy = targets_on(3, 1)[0]
    assert sent(table, "slow", slow, 0.0)[0] == 1
    assert sent(table, "busy", busy, 0.0)[0] == 3
    assert sent(table, "busy2", busy, 0.1)[0] == 3
    lane, _ = sent(table, "next", other, LANE_HELD)
    assert lane in (0, 2)  # not 1 (held up) nor 3 (held up too, and busiest)
    assert table.inflight["next"].on_lane == lane


def test_every_lane_held_up_sends_to_main_and_an_answer_frees_the_lane() -> None:
    table = RoutingTable()
    for k in range(LANES):
        assert sent(table, f"slow{k}", targets_on(k, 1)[0], 0.0)[0] == k
    assert sent(table, "late", targets_on(0, 2)[1], LANE_HELD)[0] is None
    table.complete("slow0")
    assert sent(table, "after", targets_on(0, 3)[2], LANE_HELD)[0] == 0


def test_requests_of_an_ended_incarnation_free_its_lanes() -> None:
    table = RoutingTable()
    target = targets_on(1, 1)[0]
    sent(table, "slow", target, 0.0)
    table.died("inc-1-1", "exit 1", LANE_HELD)
    table.orphan("inc-1-1")
    assert table.inflight == {}
    assert sent(table, "again", target, LANE_HELD * 2, inc="inc-2-1")[0] == 1
    table.unplace(table.inflight["again"])  # the lane refused it: it goes to main
    assert table.inflight["again"].on_lane is None
    assert sent(table, "third", target, LANE_HELD * 3, inc="inc-2-1")[0] == 1
