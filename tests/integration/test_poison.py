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
* ``status`` lists the poisoned request with both deaths and its quarantine sent
  to the next incarnation; resending the same id answers the same
  ``PoisonMessage`` without a third crash, also after other requests.
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
DEPTH = 1_000_000  # deep enough to overflow an 8 MiB thread stack
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
        poisoned_event = next(e for e in events.seen if e["kind"] == "supervisor.poisoned")
    finally:
        stop.set()
        events.close()

    # the poison message: answered after exactly two deaths, naming what it was and the signal
    kind, message = results["poison-1"]
    assert kind == "PoisonMessage", results["poison-1"]
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
