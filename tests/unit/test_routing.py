"""The routing table and the restart policy: pure rules, driven with an explicit clock."""

from __future__ import annotations

from supervisor.restart import RestartPolicy
from supervisor.routing import Route, RoutingTable

A = (b"\x00", b"client-a")
B = (b"\x00", b"client-b")


def test_requests_wait_until_an_incarnation_is_active_then_go_in_order():
    table = RoutingTable()
    assert table.accept("r1", A, b"one", now=0) is Route.QUEUED
    assert table.accept("r2", B, b"two", now=1) is Route.QUEUED
    assert table.release_pending(now=2) == []  # nobody active yet
    table.switch("inc-1")
    released = table.release_pending(now=3)
    assert [e.request_id for e in released] == ["r1", "r2"]
    assert all(e.incarnation == "inc-1" for e in released)
    assert table.accept("r3", A, b"three", now=4) is Route.SEND
    assert table.on("inc-1") == 3


def test_a_resent_id_joins_the_first_and_every_waiter_is_answered():
    table = RoutingTable()
    table.switch("inc-1")
    table.accept("r1", A, b"x", now=0)
    assert table.accept("r1", A, b"x", now=1) is Route.JOINED  # same client again: one waiter
    assert table.accept("r1", B, b"x", now=1) is Route.JOINED
    entry = table.complete("r1")
    assert entry is not None
    assert entry.waiters == [A, B]
    assert table.complete("r1") is None


def test_switch_is_one_assignment_and_old_incarnation_still_completes_its_requests():
    table = RoutingTable()
    table.switch("old")
    table.accept("r1", A, b"x", now=0)
    assert table.switch("new") == "old"
    table.accept("r2", A, b"y", now=1)
    assert table.inflight["r2"].incarnation == "new"
    assert table.complete("r1").incarnation == "old"


def test_requests_of_a_dead_incarnation_are_requeued_first():
    table = RoutingTable()
    table.switch("inc-1")
    table.accept("r1", A, b"1", now=0)
    table.accept("r2", A, b"2", now=0)
    table.switch(None)
    table.accept("r3", A, b"3", now=1)
    lost = table.orphan("inc-1")
    assert {e.request_id for e in lost} == {"r1", "r2"}
    assert list(table.pending) == ["r1", "r2", "r3"]
    table.switch("inc-2")
    again = table.release_pending(now=2)
    assert [e.attempts for e in again] == [2, 2, 1]


def test_pending_is_bounded_and_expires():
    table = RoutingTable(max_pending=2)
    table.accept("r1", A, b"1", now=0)
    table.accept("r2", A, b"2", now=5)
    assert table.accept("r3", A, b"3", now=5) is Route.FULL
    expired = table.expire(now=11, timeout=10)
    assert [e.request_id for e in expired] == ["r1"]
    assert list(table.pending) == ["r2"]


def test_backoff_doubles_then_degrades_past_the_intensity_limit():
    policy = RestartPolicy(max_restarts=3, period=10, initial=0.5, maximum=1.5, degraded_retry=30)
    delays = [policy.record_crash(now=t).delay for t in (0, 1, 2)]
    assert delays == [0.5, 1.0, 1.5]
    decision = policy.record_crash(now=3)
    assert decision.degraded
    assert policy.degraded
    assert not policy.retry_due(now=20)
    assert policy.retry_due(now=33)
    policy.clear()
    assert not policy.degraded


def test_crashes_outside_the_period_are_forgotten():
    policy = RestartPolicy(max_restarts=2, period=10, initial=1, maximum=8)
    policy.record_crash(now=0)
    policy.record_crash(now=5)
    decision = policy.record_crash(now=16)  # the crashes at 0 and 5 are older than the period
    assert not decision.degraded
    assert policy.recent(now=16) == 1
    assert policy.total == 3
