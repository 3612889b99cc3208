"""Poison messages against a real supervisor: a request whose execution kills its incarnation.

The crash is a real one available to plain method code: a chain of a million
nested ``map`` iterators recurses in C when iterated and overflows the worker
thread's stack (exit -11 SIGSEGV), the family the escape corpus found. What this
proves, with real processes:

* the crashing request is answered ``PoisonMessage`` (target, selector, the signal
  seen) after exactly 2 incarnation deaths, while writers stream ordinary
  requests and a slow innocent request is in flight at the first death: every
  other request succeeds exactly once (each writer's replies are exactly 1..N and
  the image holds each number once);
* the supervisor stays ``serving``: with ``max_restarts = 1`` two unexplained
  crashes would make it degraded, the poison message's do not;
* ``status`` lists the poisoned request with both deaths; the next incarnation
  quarantines the method (``Quarantine``) and reports it, so ``status`` lists it and
  a new request to it answers ``Quarantined`` without running; resending the same id
  answers the same ``PoisonMessage`` without a third crash, also after other requests;
* a request that holds the GIL in C (``sum`` over a huge range) freezes its
  incarnation: no heartbeats, killed by the supervisor, twice, then answered
  ``PoisonMessage`` naming the missed heartbeats, while the requests frozen beside
  it are answered once by the next incarnation;
* a request that outlasts its budget's stop (``finally`` blocks that loop) makes the
  incarnation end itself after naming it (``Suspect``): it alone is answered
  ``PoisonMessage`` at once, after one death, and the innocent request in flight
  beside it is answered by the next incarnation; the death counts toward nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from bridge import RemoteError
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    EventStream,
    Supervisors,
    make_recorders,
    send_until_ok,
    spin_count,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

CRASH = ("def crash(self, n):\n"
         "    it = map(abs, [1])\n"
         "    for i in range(n):\n"
         "        it = map(abs, it)\n"
         "    for x in it:\n"
         "        return x\n")
DEPTH = 300_000  # deep enough to overflow an 8 MiB thread stack (about 0.4 s to build)
HOG = "def hog(self, n):\n    return sum(range(n))\n"
# each budget signal breaks one loop; 400 levels of try/finally loops outlast the grace
STUBBORN = ("def stubborn(self):\n"
            "    def hold(n):\n"
            "        try:\n"
            "            if n:\n"
            "                hold(n - 1)\n"
            "            while True:\n"
            "                pass\n"
            "        finally:\n"
            "            while True:\n"
            "                pass\n"
            "    hold(400)\n")
WRITERS = 3
PER_WRITER = 60


def _define_victim(client: Any) -> None:
    client.send("genesis", "applyActs:", [
        {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "v", "name": "victim",
         "slots": {}},
        {"action": "DEFINE_METHOD", "target": "@v", "selector": "crash:", "source": CRASH},
    ], timeout=30)
    assert client.send("victim", "crash:", 10, timeout=30) == 1  # shallow: harmless


def test_a_request_that_kills_its_incarnation_is_answered_poison_and_the_rest_succeed(
        supervisors: Supervisors) -> None:
    sup = supervisors.start(config={
        "max_restarts": 1, "restart_period": 120, "backoff_initial": 0.05, "backoff_max": 0.2,
        "degraded_retry": 0, "heartbeat_interval": 0.2, "heartbeat_timeout": 10,
    })
    names = [f"rec{w}" for w in range(WRITERS)]
    make_recorders(sup.client, [*names, "slow"])
    _define_victim(sup.client)
    spin = spin_count(sup.client, "slow", 1.5)
    expected_spin = sum(range(spin))

    replies: dict[int, Any] = {}
    failures: list[BaseException] = []
    stop = threading.Event()
    deadline = time.monotonic() + 120

    def stream(writer: int) -> None:
        try:
            with sup.new_client(timeout=3) as client:
                for i in range(writer, WRITERS * PER_WRITER, WRITERS):
                    replies[i] = send_until_ok(client, names[writer], "record:", i,
                                               request_id=f"record-{i}", deadline=deadline,
                                               stop=stop)
        except Exception as exc:  # reported by the test thread
            failures.append(exc)

    events = EventStream(sup.status()["supervisor"]["events"], b"")
    results: dict[str, Any] = {}
    try:
        writers = [threading.Thread(target=stream, args=(w,), daemon=True) for w in range(WRITERS)]
        for thread in writers:
            thread.start()
        wait_until(lambda: len(replies) >= 10 or failures, timeout=60)
        slow = sup.send_in_thread(results, "slow-1", "slow", "spin:", spin, timeout=60)
        wait_until(lambda: sup.status()["routing"]["inflight"] >= 1, timeout=10)
        first_pid = sup.active_pid()
        crash = sup.send_in_thread(results, "poison-1", "victim", "crash:", DEPTH, timeout=90)
        crash.join(timeout=90)
        slow.join(timeout=60)
        for thread in writers:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        exits = [events.wait_for(lambda e: e["kind"] == "incarnation.exited", timeout=30)
                 for _ in range(2)]
    finally:
        stop.set()
        events.close()
    story = [(e["kind"], e["data"]) for e in events.seen if not e["kind"].startswith("image.")]

    # the poison message: answered after exactly two deaths, naming what it was and the signal
    kind, message = results["poison-1"]
    assert kind == "PoisonMessage", (results["poison-1"], story)
    poisoned_event = next(e for e in events.seen if e["kind"] == "supervisor.poisoned")
    assert "'crash:' sent to 'victim'" in message
    assert "2 times" in message
    assert message.count("-11 SIGSEGV") == 2
    assert [e["data"]["exit_code"] for e in exits] == [-11, -11]
    assert [e["data"]["expected"] for e in exits] == [False, False]
    assert [e["data"]["poisoned"] for e in exits] == [0, 1]
    assert exits[0]["data"]["requeued"] >= 2  # the slow request at least was caught beside it
    assert poisoned_event["data"]["request"] == "poison-1"

    # the others: each once, in order, nothing lost or doubled
    assert not failures, failures
    assert results["slow-1"] == ("ok", expected_spin)
    assert sorted(replies) == list(range(WRITERS * PER_WRITER))
    for writer, name in enumerate(names):
        mine = [replies[i] for i in range(writer, WRITERS * PER_WRITER, WRITERS)]
        assert mine == list(range(1, PER_WRITER + 1)), name
    client = sup.client
    assert sorted(i for name in names for i in client.send(name, "seen")) == sorted(replies)

    # serving, not degraded (max_restarts = 1 and two crashes), and status tells the story
    third_pid = sup.active_pid(not_pid=first_pid)
    status = sup.status()
    assert status["state"] == "serving"
    assert status["restarts"]["total"] == 2
    assert status["restarts"]["degraded"] is False
    assert status["restarts"]["recent"] == 0  # both deaths explained by the poison message
    [row] = status["poisoned"]
    assert row["id"] == "poison-1"
    assert (row["target"], row["selector"]) == ("victim", "crash:")
    assert len(row["deaths"]) == 2
    assert all("-11 SIGSEGV" in d for d in row["deaths"])
    assert row["quarantine"] in (f"sent to {status['active']}", "reported")

    # the next incarnation quarantined the method and reports it; a new id is refused, not run
    def reported() -> dict[str, Any] | None:
        state = sup.status()
        return state if state["poisoned"][0]["quarantine"] == "reported" else None
    status = wait_until(reported, timeout=30)
    [method] = status["quarantined"]["methods"]
    assert method["selector"] == "crash:"
    assert method["request"] == "poison-1"
    assert "-11 SIGSEGV" in method["reason"]
    assert method["holder"] == client.send("victim", "uuid")
    with pytest.raises(RemoteError) as refused:
        client.send("victim", "crash:", DEPTH)
    assert refused.value.type == "Quarantined"

    # the same id again: the same answer, no third execution
    with pytest.raises(RemoteError) as again:
        client.send("victim", "crash:", DEPTH, request_id="poison-1")
    assert again.value.type == "PoisonMessage"
    assert again.value.message == message
    assert client.send("rec0", "bump") == PER_WRITER + 1
    with pytest.raises(RemoteError) as third:
        client.send("victim", "crash:", DEPTH, request_id="poison-1")
    assert third.value.type == "PoisonMessage"
    after = sup.status()
    assert after["restarts"]["total"] == 2
    assert after["state"] == "serving"
    assert sup.active_pid() == third_pid


def test_a_request_holding_the_gil_is_killed_twice_then_answered_poison(
        supervisors: Supervisors) -> None:
    sup = supervisors.start(config={
        "max_restarts": 1, "restart_period": 120, "backoff_initial": 0.05, "backoff_max": 0.2,
        "degraded_retry": 0, "heartbeat_interval": 0.2, "heartbeat_timeout": 1.5,
    })
    make_recorders(sup.client, ["counter", "slow"])
    sup.client.send("genesis", "applyActs:", [
        {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "h", "name": "hogger",
         "slots": {}},
        {"action": "DEFINE_METHOD", "target": "@h", "selector": "hog:", "source": HOG},
    ], timeout=30)
    assert sup.client.send("hogger", "hog:", 10) == 45
    spin = spin_count(sup.client, "slow", 1.0)
    results: dict[str, Any] = {}
    slow = sup.send_in_thread(results, "slow-1", "slow", "spin:", spin, timeout=60)
    wait_until(lambda: sup.status()["routing"]["inflight"] >= 1, timeout=10)
    hog = sup.send_in_thread(results, "hog-1", "hogger", "hog:", 10**15, timeout=60)
    bumps = [sup.send_in_thread(results, f"bump-{i}", "counter", "bump", timeout=60)
             for i in range(3)]
    for thread in (hog, slow, *bumps):
        thread.join(timeout=60)

    kind, message = results["hog-1"]
    assert kind == "PoisonMessage", results
    assert "'hog:' sent to 'hogger'" in message
    assert message.count("-9 SIGKILL (killed by the supervisor after missed heartbeats") == 2
    assert results["slow-1"] == ("ok", sum(range(spin)))
    assert sorted(results[f"bump-{i}"] for i in range(3)) == [("ok", 1), ("ok", 2), ("ok", 3)]
    assert sup.client.send("counter", "n") == 3
    status = sup.status()
    assert status["state"] == "serving"
    assert status["restarts"]["total"] == 2
    assert [row["id"] for row in status["poisoned"]] == ["hog-1"]
    with pytest.raises(RemoteError) as again:
        sup.client.send("hogger", "hog:", 10**15, request_id="hog-1")
    assert again.value.message == message
    assert sup.status()["restarts"]["total"] == 2


def test_the_request_an_incarnation_names_before_ending_itself_is_poisoned_alone(
        supervisors: Supervisors) -> None:
    budget = {"BATOS_BUDGET_CPU": "1", "BATOS_BUDGET_WALL": "30", "BATOS_BUDGET_GRACE": "0.5"}
    # one worker: the requests sent after the stubborn one wait in the incarnation, in flight
    sup = supervisors.start(env=budget, config={
        "workers": 1, "max_restarts": 0, "restart_period": 120, "backoff_initial": 0.05,
        "backoff_max": 0.2, "degraded_retry": 0, "heartbeat_interval": 0.2,
        "heartbeat_timeout": 10, "sandbox": {"pass_env": sorted(budget)},
    })
    make_recorders(sup.client, ["counter"])
    sup.client.send("genesis", "applyActs:", [
        {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "s", "name": "mule",
         "slots": {}},
        {"action": "DEFINE_METHOD", "target": "@s", "selector": "stubborn", "source": STUBBORN},
    ], timeout=30)
    results: dict[str, Any] = {}
    with EventStream(sup.status()["supervisor"]["events"], b"") as events:
        stubborn = sup.send_in_thread(results, "stubborn-1", "mule", "stubborn", timeout=60)
        wait_until(lambda: sup.status()["routing"]["inflight"] == 1, timeout=10)
        bumps = [sup.send_in_thread(results, f"bump-{i}", "counter", "bump", timeout=60)
                 for i in range(3)]
        wait_until(lambda: sup.status()["routing"]["inflight"] == 4, timeout=10)
        for thread in (stubborn, *bumps):
            thread.join(timeout=60)
        exited = events.wait_for(lambda e: e["kind"] == "incarnation.exited", timeout=30)
    kind, message = results["stubborn-1"]
    assert kind == "PoisonMessage", results
    assert "'stubborn' sent to 'mule'" in message
    assert "ended its incarnation" in message
    assert "exit 86" in message  # uvm.budget.KILL_EXIT_CODE: the incarnation ended itself
    assert exited["data"]["poisoned"] == 1
    assert exited["data"]["requeued"] == 3
    assert sorted(results[f"bump-{i}"] for i in range(3)) == [("ok", 1), ("ok", 2), ("ok", 3)]
    assert sup.client.send("counter", "n") == 3
    sup.wait_state("serving", timeout=30)  # max_restarts = 0: a counted crash would degrade
    status = sup.status()
    assert status["restarts"]["total"] == 1
    assert status["restarts"]["recent"] == 0
    assert status["restarts"]["degraded"] is False
    [row] = status["poisoned"]
    assert len(row["deaths"]) == 1
    assert "exit 86, " in row["deaths"][0]  # then the incarnation's own reason: its budget
    assert "CPU" in row["deaths"][0]
