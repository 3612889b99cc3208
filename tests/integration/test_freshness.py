"""Read-your-writes across connections and incarnations, through a real ``batos up``.

An incarnation reads ZEO without a server round trip per transaction (``server_sync``
off): a connection may not yet have the invalidations of a commit another connection
(another lane, or another incarnation) just made. What keeps reads fresh is the
transaction id (docs/protocol.md section 8.2): every reply carries the tid it saw or
made, the supervisor forwards the newest it has seen as ``after``, and the connection
that runs a request catches up first when it is behind. What this proves, many times
over, with every write answered before the read is sent:

* on one incarnation: a write to ``w`` (on ``w``'s lane) then at once ``peek: w`` sent to
  another object (on another lane, another ZODB connection) answers the value written;
* across a handover: while evolves switch incarnations, every read of an object sent
  after a write to it was answered (by any client, on any incarnation) answers that
  value or a newer one; reads sent just after a switch, of values the old incarnation
  wrote, are counted, and there must be some.

A write is resent by its id until answered (exactly once), so no request fails during
the handovers either.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge import Client
from supervisor.routing import lane_for
from tests.integration.handover_fixtures import (
    EVOLVE_TIMEOUT,
    SharedDirs,
    shared_dirs,
    uv_supervisor,
    wait_idle,
)
from tests.integration.supervisor_fixtures import (
    EventStream,
    Supervisor,
    Supervisors,
    send_until_ok,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

PEEK = "def peek(self, other):\n    return other.n\n"
THREADS = 4
ROUNDS = 150  # write-then-read pairs per thread on one incarnation
HANDOVERS = 3
DEADLINE = 120.0  # s: one request, resent by its id, during a handover on a loaded machine


def make_object(client: Client) -> str:
    uuid = client.send("genesis", "clone")["$ref"]
    client.send(uuid, "setSlot:value:", "n", -1)
    client.send(uuid, "defineMethod:source:", "peek:", PEEK)
    return uuid


def lanes_of(state: dict[str, Any]) -> int:
    active = [i for i in state["incarnations"] if i["id"] == state["active"]]
    assert len(active) == 1, state
    return int(active[0].get("lanes", 0))


def other_lane(uuid: str, readers: list[str], lanes: int) -> str:
    """A reader on another lane than ``uuid`` (any reader when there are no lanes)."""
    if lanes < 2:
        return readers[0]
    mine = lane_for(uuid, lanes, range(lanes))
    return next(r for r in readers if lane_for(r, lanes, range(lanes)) != mine)


def run_threads(work: Any, count: int, timeout: float) -> list[BaseException]:
    """``work(k)`` on ``count`` threads; answers what they raised."""
    failures: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # reported by the test, not lost in a thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,), daemon=True) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "a client thread did not finish"
    return failures


def test_a_read_on_another_lane_sees_a_write_at_once(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    state = sup.status()
    lanes = lanes_of(state)
    client = sup.client
    writers = [make_object(client) for _ in range(THREADS)]
    readers = [make_object(client) for _ in range(8)]
    if lanes >= 2:  # the requests below do cross lanes: each lane has attached
        assert any(lane_for(r, lanes, range(lanes)) != lane_for(writers[0], lanes, range(lanes))
                   for r in readers)
        active = [i for i in sup.status()["incarnations"] if i["id"] == state["active"]][0]
        assert active["attached"] == list(range(lanes)), active
    stale: list[tuple[str, int, Any]] = []

    def work(k: int) -> None:
        mine, reader = writers[k], other_lane(writers[k], readers, lanes)
        with sup.new_client(timeout=30) as own:
            for i in range(ROUNDS):
                own.send(mine, "setSlot:value:", "n", i)
                seen = own.send(reader, "peek:", {"$ref": mine})
                if seen != i:
                    stale.append((mine, i, seen))

    before = sup.status()["routing"]["newest"]
    failures = run_threads(work, THREADS, timeout=600)
    assert not failures, failures
    assert not stale, f"{len(stale)} stale reads of {THREADS * ROUNDS}: {stale[:5]}"
    # the supervisor followed the writes' transaction ids (what it forwards as `after`)
    newest = sup.status()["routing"]["newest"]
    assert newest is not None
    assert len(newest) == 16
    assert before is None or int(newest, 16) > int(before, 16)
    for k, uuid in enumerate(writers):  # and the last writes are what the image holds
        assert client.send(readers[k % len(readers)], "peek:", {"$ref": uuid}) == ROUNDS - 1


# --- across handovers --------------------------------------------------------------------


@dataclass
class Ledger:
    """What each object was last confirmed to hold, and every read to judge afterwards."""

    confirmed: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: (object, value expected at least, when that was confirmed, when the read was sent,
    #: value read)
    reads: list[tuple[str, int, float, float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> SharedDirs:
    return shared_dirs(tmp_path_factory)


@pytest.fixture
def uv_sup(tmp_path_factory: pytest.TempPathFactory, dirs: SharedDirs) -> Iterator[Supervisor]:
    with uv_supervisor(tmp_path_factory.mktemp("freshness"), dirs) as supervisor:
        yield supervisor


@pytest.mark.timeout(900)
def test_reads_across_handovers_see_every_write_answered_before(uv_sup: Supervisor,
                                                                dirs: SharedDirs) -> None:
    sup = uv_sup
    wait_idle(sup)
    client = sup.client
    objects = [make_object(client) for _ in range(THREADS)]
    ledger = Ledger()
    stop = threading.Event()
    ids = itertools.count()

    def work(k: int) -> None:
        mine, peer = objects[k], objects[(k + 1) % THREADS]
        with sup.new_client(timeout=10) as own:
            for i in itertools.count():
                if stop.is_set():
                    return
                deadline = time.monotonic() + DEADLINE
                send_until_ok(own, mine, "setSlot:value:", "n", i, deadline=deadline,
                              request_id=f"fresh-w-{k}-{i}-{next(ids)}", stop=stop)
                with ledger.lock:
                    ledger.confirmed[mine] = (i, time.time())
                for target in (mine, peer):  # my own write, and the other client's
                    with ledger.lock:
                        expected, confirmed_at = ledger.confirmed.get(target, (-1, 0.0))
                    sent_at = time.time()
                    seen = send_until_ok(own, target, "n", deadline=deadline,
                                         request_id=f"fresh-r-{k}-{i}-{next(ids)}", stop=stop)
                    with ledger.lock:
                        ledger.reads.append((target, expected, confirmed_at, sent_at, seen))

    switches: list[float] = []
    events = EventStream(sup.status()["supervisor"]["events"], topic=b"handover")
    threads_done: list[BaseException] = []
    runner = threading.Thread(
        target=lambda: threads_done.extend(run_threads(work, THREADS, timeout=EVOLVE_TIMEOUT * 4)),
        daemon=True)
    try:
        runner.start()
        for n in range(HANDOVERS):
            has = "rolllib" in wait_idle(sup)["env"]["packages"]  # toggled: a new env each time
            reply = client.evolve(add=[] if has else ["rolllib==1.0"],
                                  remove=["rolllib"] if has else [], offline=True,
                                  find_links=[str(dirs.wheels)], probation=1.0,
                                  timeout=EVOLVE_TIMEOUT)
            assert reply["outcome"] == "switched", (n, reply)
            switched = events.wait_for(lambda e: e["kind"] == "handover.switched", 30)
            switches.append(switched["ts"])
        wait_idle(sup)
    finally:
        stop.set()
        runner.join(timeout=EVOLVE_TIMEOUT)
        events.close()
    assert not runner.is_alive()
    assert not threads_done, threads_done
    stale = [r for r in ledger.reads if r[4] < r[1]]
    assert not stale, f"{len(stale)} stale reads of {len(ledger.reads)}: {stale[:5]}"
    # reads sent within a second after a switch, of a value confirmed before it: the old
    # incarnation wrote it, the new one read it
    crossed = [r for r in ledger.reads for s in switches if r[2] < s < r[3] < s + 1.0]
    assert len(switches) == HANDOVERS
    assert len(crossed) >= HANDOVERS, (len(crossed), switches)
