"""The routing table and the restart policy: pure rules, driven with an explicit clock."""

from __future__ import annotations

from bridge.messages import QuarantinedMethod
from supervisor.poison import MAX_QUARANTINE_SENDS, PoisonLedger, exit_cause
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


# --- poison messages (supervisor.poison through the table) -------------------------------

def _send(table: RoutingTable, rid: str, now: float = 0, client=A) -> Route:
    return table.accept(rid, client, rid.encode(), now, target="victim", selector="crash")


def test_exit_cause_names_the_signal():
    assert exit_cause(-11) == "-11 SIGSEGV"
    assert exit_cause(-9, "missed heartbeats for 5.1s") == "-9 SIGKILL (missed heartbeats for 5.1s)"
    assert exit_cause(3) == "exit 3"
    assert exit_cause(None) == "exit code unknown"


def test_a_request_in_flight_at_two_deaths_is_poisoned_and_innocents_are_not():
    table = RoutingTable()
    table.switch("inc-1")
    for rid in ("bad", "a", "b"):
        _send(table, rid)
    judgement, poisoned = table.died("inc-1", "-11 SIGSEGV", now=1)
    assert poisoned == []
    assert not judgement.explained
    table.switch(None)
    assert [e.request_id for e in table.orphan("inc-1")] == ["bad", "a", "b"]
    table.switch("inc-2")
    # suspects take one lane: only the first goes, the others wait while fresh requests flow
    assert [e.request_id for e in table.release_pending(now=2)] == ["bad"]
    assert table.lane == "bad"
    assert _send(table, "fresh", now=2) is Route.SEND
    judgement, poisoned = table.died("inc-2", "-11 SIGSEGV", now=3)
    assert [e.request_id for e in poisoned] == ["bad"]
    record = judgement.poisoned[0]
    assert [d.cause for d in record.deaths] == ["-11 SIGSEGV", "-11 SIGSEGV"]
    assert judgement.explained
    assert judgement.pardoned == [1]
    assert "'crash' sent to 'victim'" in record.message
    assert "2 times" in record.message
    assert "-11 SIGSEGV" in record.message
    assert table.lane is None
    assert "bad" not in table.inflight
    table.switch(None)
    assert [e.request_id for e in table.orphan("inc-2")] == ["fresh"]  # one death: requeued
    table.switch("inc-3")
    # each alone in the lane (the latest orphans first), each answered, none poisoned
    for expected in ("fresh", "a", "b"):
        assert [e.request_id for e in table.release_pending(now=4)] == [expected]
        assert table.complete(expected) is not None
    assert table.pending == {}
    assert table.lane is None
    assert not any(table.poison.suspected(r) for r in ("a", "b", "fresh"))
    assert list(table.poison.poisoned) == ["bad"]


def test_a_resent_poisoned_id_is_answered_not_run_again():
    table = RoutingTable(poison=PoisonLedger(max_deaths=1))
    table.switch("inc-1")
    _send(table, "bad")
    _judgement, poisoned = table.died("inc-1", "-9 SIGKILL", now=1)
    assert [e.request_id for e in poisoned] == ["bad"]
    table.switch("inc-2")
    assert _send(table, "bad", now=2, client=B) is Route.POISONED
    assert "bad" not in table.inflight
    assert "bad" not in table.pending
    assert table.poison.verdict("bad").deaths[0].cause == "-9 SIGKILL"


def test_the_incarnation_naming_a_request_blames_it_alone_at_once():
    table = RoutingTable()
    table.switch("inc-1")
    for rid in ("a", "hog", "b"):
        _send(table, rid)
    table.poison.announce("inc-1", "hog", "cpu 5.2s over its budget of 5s")
    judgement, poisoned = table.died("inc-1", "exit 70", now=1)
    assert [e.request_id for e in poisoned] == ["hog"]
    assert judgement.explained
    assert judgement.poisoned[0].deaths[0].blamed == "cpu 5.2s over its budget of 5s"
    assert "ended its incarnation" in judgement.poisoned[0].message
    table.orphan("inc-1")
    # the others were innocent: no death counted, so they go at once, side by side
    assert not table.poison.suspected("a")
    assert not table.poison.suspected("b")
    table.switch("inc-2")
    assert [e.request_id for e in table.release_pending(now=2)] == ["a", "b"]


def test_a_suspect_that_was_answered_explains_no_later_death():
    table = RoutingTable()
    table.switch("inc-1")
    _send(table, "hog")
    _send(table, "a")
    table.poison.announce("inc-1", "hog", "cpu over its budget")
    table.complete("hog")  # the soft stop worked: answered BudgetExceeded, the process lives
    judgement, poisoned = table.died("inc-1", "-11 SIGSEGV", now=1)  # later, something else
    assert poisoned == []
    assert not judgement.explained
    assert table.poison.suspected("a")  # the usual rule: one death counted against it


def test_an_exit_the_supervisor_asked_for_counts_against_nothing():
    table = RoutingTable()
    table.switch("inc-1")
    _send(table, "a")
    table.poison.announce("inc-1", "a", "whatever")
    judgement, poisoned = table.died("inc-1", None, now=1)
    assert poisoned == []
    assert not judgement.explained
    assert not table.poison.suspected("a")
    assert table.poison.announced == {}


def test_a_suspect_resent_after_it_expired_keeps_its_death():
    table = RoutingTable()
    table.switch("inc-1")
    _send(table, "s")
    table.died("inc-1", "-11 SIGSEGV", now=1)
    table.switch(None)
    table.orphan("inc-1")
    assert [e.request_id for e in table.expire(now=100, timeout=10)] == ["s"]
    table.switch("inc-2")
    assert _send(table, "other-suspect-free", now=101) is Route.SEND
    assert _send(table, "s", now=101) is Route.SEND  # the lane is free
    assert table.lane == "s"
    judgement, poisoned = table.died("inc-2", "-11 SIGSEGV", now=102)
    assert [e.request_id for e in poisoned] == ["s"]


def test_quarantines_go_once_to_each_incarnation_until_one_reports_the_request():
    ledger = PoisonLedger(max_deaths=1)
    table = RoutingTable(poison=ledger)
    table.switch("inc-1")
    _send(table, "bad")
    table.died("inc-1", "-11 SIGSEGV", now=1)
    record = ledger.verdict("bad")
    assert record.quarantine == "waiting for a ready incarnation"
    assert ledger.quarantines_due("inc-2") == [record]
    assert ledger.quarantines_due("inc-2") == []  # once per incarnation
    assert record.quarantine == "sent to inc-2"
    ledger.report("inc-2", [QuarantinedMethod(holder="u-1", selector="crash", request="bad")], 5)
    assert record.quarantine == "reported"
    assert ledger.quarantines_due("inc-3") == []
    assert ledger.reported(now=7)["methods"][0]["selector"] == "crash"
    assert ledger.reported(now=7)["ago"] == 2
    # unreported: given up after MAX_QUARANTINE_SENDS incarnations
    _send(table, "bad-2")
    table.died("inc-1", "-11 SIGSEGV", now=8)
    for n in range(MAX_QUARANTINE_SENDS):
        assert [p.request_id for p in ledger.quarantines_due(f"x-{n}")] == ["bad-2"]
    assert ledger.quarantines_due("x-last") == []
    assert "given up" in ledger.verdict("bad-2").quarantine
    assert [p["id"] for p in ledger.recent(now=9)] == ["bad-2", "bad"]


def test_poison_records_are_bounded():
    ledger = PoisonLedger(max_deaths=2, keep_deaths=3, keep_poisoned=2)
    table = RoutingTable(poison=ledger)
    table.switch("inc-1")
    for i in range(5):
        _send(table, f"r{i}")
    table.died("inc-1", "-11 SIGSEGV", now=1)
    assert list(ledger.deaths) == ["r2", "r3", "r4"]
    table.orphan("inc-1")
    ledger.max_deaths = 1
    table.switch("inc-2")
    for i in range(5):
        table.release_pending(now=2)
        table.died("inc-2", "-11 SIGSEGV", now=3 + i)
        table.orphan("inc-2")
    assert len(ledger.poisoned) == 2


def test_explained_crashes_do_not_count_toward_degraded():
    policy = RestartPolicy(max_restarts=2, period=60, initial=0.5, maximum=4)
    assert policy.record_crash(now=1).recent == 1  # the poison message's first death
    decision = policy.record_crash(now=2, explained=True)  # its second: answered
    assert not decision.degraded
    assert decision.delay == 0.5
    assert decision.recent == 1
    assert policy.pardon([1]) == 1
    assert policy.recent(now=3) == 0
    assert policy.total == 2
    for t in (4, 5):
        assert not policy.record_crash(now=t).degraded
    assert policy.record_crash(now=6).degraded  # unexplained crashes still degrade
