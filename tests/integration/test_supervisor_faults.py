"""The supervisor under faults: killed, crashing, frozen incarnations and a killed ZEO server.

What this proves, with real processes and signals:

* kill -9 of the incarnation twice while four clients stream 2,000 writing messages,
  resending by id on timeouts: every message gets exactly one reply, the replies of each
  writer are exactly 1..500 (one execution per id), and the image holds each number once;
* an incarnation that crashes at start (``env.python`` exits 3) makes the supervisor
  ``degraded`` after ``max_restarts``, not dead: ``ping`` answers and ``send`` gets a
  quick ``Unavailable``, also for a request that waited through the restarts;
* a frozen incarnation (SIGSTOP) misses heartbeats, is killed and replaced, and the
  request it was holding is answered by the new one, once;
* a ZEO server killed with SIGKILL is restarted and the image is written again; the
  incarnation's ZEO client reconnects (the request caught in the outage fails with
  ``ImageError``, changed nothing, and succeeds when resent with its id);
* a supervisor killed with SIGKILL leaves its ZEO server running (it has a session of
  its own; a confined incarnation dies with the supervisor); the next ``batos up`` on that
  home kills it and serves the same image.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from bridge import RemoteError
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    EventStream,
    Supervisors,
    alive,
    make_recorders,
    send_until_ok,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

MESSAGES = 2000
WRITERS = 4
KILL_AT = (500, 1200)


def test_kill_9_mid_stream_loses_and_doubles_nothing(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    names = [f"rec{w}" for w in range(WRITERS)]
    make_recorders(sup.client, names)
    replies: dict[int, Any] = {}
    failures: list[BaseException] = []
    acked = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + 120
    stop = threading.Event()

    def stream(writer: int) -> None:
        try:
            with sup.new_client(timeout=2) as client:
                for i in range(writer, MESSAGES, WRITERS):
                    replies[i] = send_until_ok(client, names[writer], "record:", i,
                                               request_id=f"record-{i}", deadline=deadline,
                                               stop=stop)
                    with lock:
                        acked[0] += 1
        except Exception as exc:  # reported by the test thread below
            failures.append(exc)

    events = EventStream(sup.status()["supervisor"]["events"], b"incarnation")
    threads = [threading.Thread(target=stream, args=(w,), daemon=True) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    killed: list[int] = []
    try:
        for mark in KILL_AT:
            wait_until(lambda mark=mark: acked[0] >= mark or failures, timeout=60)
            pid = sup.active_pid(not_pid=killed[-1] if killed else None)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        crashes = [events.wait_for(lambda e: e["kind"] == "incarnation.exited", timeout=10)
                   for _ in KILL_AT]
    finally:
        stop.set()
        events.close()
    assert not failures, failures
    assert not any(t.is_alive() for t in threads), "a writer is still waiting for replies"
    assert sorted(replies) == list(range(MESSAGES))
    assert [e["data"]["expected"] for e in crashes] == [False] * len(KILL_AT)
    assert sum(e["data"]["requeued"] for e in crashes) > 0  # the kills did catch requests
    for writer, name in enumerate(names):
        mine = [replies[i] for i in range(writer, MESSAGES, WRITERS)]
        assert sorted(mine) == list(range(1, MESSAGES // WRITERS + 1)), name
    client = sup.client
    seen = [i for name in names for i in client.send(name, "seen")]
    assert sorted(seen) == list(range(MESSAGES))
    assert sum(client.send(name, "n") for name in names) == MESSAGES
    status = sup.status()
    assert status["restarts"]["total"] == len(KILL_AT)
    assert all(not psutil.pid_exists(pid) or not alive(psutil.Process(pid)) for pid in killed)


def test_crash_loop_degrades_and_the_supervisor_stays_up(supervisors: Supervisors,
                                                         tmp_path: Path) -> None:
    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\nexit 3\n")
    crash.chmod(0o755)
    sup = supervisors.start(serving=False, config={
        "max_restarts": 3, "restart_period": 60, "backoff_initial": 0.05, "backoff_max": 0.2,
        "degraded_retry": 0, "env": {"mode": "current", "python": str(crash)},
    })
    waited: dict[str, Any] = {}
    early = sup.send_in_thread(waited, "early", "genesis", "printString", timeout=20)
    state = wait_until(lambda: (s := sup.status())["state"] == "degraded" and s, timeout=30)
    assert state["restarts"]["total"] >= 4
    assert state["restarts"]["degraded"] is True
    assert "exit code 3" in state["reason"]
    assert state["incarnations"] == []
    assert sup.client.ping()["state"] == "degraded"

    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        sup.client.send("genesis", "printString")
    assert caught.value.type == "Unavailable"
    assert time.monotonic() - started < 2
    early.join(timeout=20)
    assert waited["early"][0] == "Unavailable", waited
    assert any(r["msg"].startswith("supervisor degraded") for r in sup.log_records())
    assert sup.status()["state"] == "degraded"  # degraded_retry = 0: no more tries


def test_a_frozen_incarnation_is_replaced_and_its_request_answered(supervisors: Supervisors) -> None:
    sup = supervisors.start(config={"heartbeat_interval": 0.2, "heartbeat_timeout": 2})
    make_recorders(sup.client, ["counter"])
    frozen = sup.active_pid()
    os.kill(frozen, signal.SIGSTOP)
    try:
        results: dict[str, Any] = {}
        sending = sup.send_in_thread(results, "held", "counter", "bump", timeout=30)
        wait_until(lambda: sup.status()["routing"]["inflight"] == 1, timeout=10)
        fresh = sup.active_pid(not_pid=frozen, timeout=30)
        sending.join(timeout=30)
        assert results == {"held": ("ok", 1)}
        assert fresh != frozen
        wait_until(lambda: not psutil.pid_exists(frozen) or not alive(psutil.Process(frozen)), 10)
        assert sup.client.send("counter", "n") == 1
        assert any("missed heartbeats" in r["msg"] for r in sup.log_records())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
            os.kill(frozen, signal.SIGKILL)


def test_a_killed_zeo_server_is_restarted_and_writes_work_again(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    make_recorders(sup.client, ["counter"])
    assert sup.client.send("counter", "bump") == 1
    before = sup.status()
    old_zeo, old_inc = before["zeo"]["pid"], before["incarnations"][0]["pid"]
    with EventStream(before["supervisor"]["events"], b"zeo") as events:
        os.kill(old_zeo, signal.SIGKILL)
        events.wait_for(lambda e: e["kind"] == "zeo.restarted", timeout=30)
    after = sup.status()
    assert after["zeo"]["pid"] != old_zeo
    assert after["zeo"]["restarts"] == 1
    # the request caught in the outage may fail (ImageError: nothing committed); by id it is safe
    deadline = time.monotonic() + 30
    assert send_until_ok(sup.client, "counter", "bump", request_id="after-zeo",
                         deadline=deadline, retry_on=("Unavailable", "ImageError")) == 2
    assert sup.client.send("counter", "bump") == 3
    assert sup.client.send("counter", "n") == 3
    # what happened to the incarnation: its ZEO client reconnected, no restart was needed
    assert sup.status()["restarts"]["total"] == 0
    assert sup.active_pid() == old_inc


def test_a_new_supervisor_reaps_what_a_killed_one_left(supervisors: Supervisors) -> None:
    first = supervisors.start("first")
    make_recorders(first.client, ["counter"])
    assert first.client.send("counter", "bump") == 1
    status = first.status()
    strays = [psutil.Process(status["zeo"]["pid"])]
    confined = psutil.Process(status["incarnations"][0]["pid"])
    first.expect_clean = False
    first.proc.kill()  # type: ignore[union-attr]
    assert first.proc.wait(timeout=10) == -signal.SIGKILL  # type: ignore[union-attr]
    assert all(alive(p) for p in strays)  # ZEO outlives it
    # a confined incarnation dies with the supervisor (bwrap --die-with-parent)
    wait_until(lambda: not alive(confined), timeout=10)

    second = supervisors.start("second", home=first.home)
    wait_until(lambda: not any(alive(p) for p in strays), timeout=10)
    assert second.client.send("counter", "n") == 1
    assert second.client.send("counter", "bump") == 2
