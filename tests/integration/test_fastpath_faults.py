"""The fast path under faults and slow requests, through a real ``batos up`` (reviewer R2).

A request is run on its target's lane (``crc32(target) % lanes``), one at a time per
lane. What this proves, with real processes:

* a long request does not hold up the other objects that hash to its lane: once it has
  run past ``supervisor.routing.LANE_HELD`` seconds, reads and writes of another object
  on that lane are answered at once (on another lane) while it still runs; every write
  runs once (the bumps answer 1..N), a write resent by its id after the long request
  ended (now on its own lane) is answered from its record, not run again, and the long
  request's answer is the right one;
* a method redefined (and a data slot set) on a shared parent is what every lane runs
  and reads at once, though each lane's thread holds its ZODB connection (and the
  compiled function it cached) across messages.
"""

from __future__ import annotations

import time
import zlib

import pytest

from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    Supervisors,
    make_recorders,
    spin_count,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

WORKERS = 4
SLOW_SECONDS = 6.0  # the long request: far longer than the reads need to pass it
HELD = 1.0  # how long the test lets it run before it asks (well past LANE_HELD)
PROMPT = 1.5  # an answer that did not wait for the long request (loaded CI: generous)


def _lane(target: str) -> int:
    return zlib.crc32(target.encode()) % WORKERS


def test_a_long_request_does_not_hold_up_the_other_objects_of_its_lane(
        supervisors: Supervisors) -> None:
    sup = supervisors.start(config={"workers": WORKERS, "budget": {"cpu": 30.0, "wall": 60.0}})
    names = [f"obj{i}" for i in range(24)]
    make_recorders(sup.client, names)
    slow = names[0]
    neighbours = [n for n in names[1:] if _lane(n) == _lane(slow)][:2]
    assert len(neighbours) == 2, "no two other objects on the slow object's lane"
    spins = spin_count(sup.client, slow, SLOW_SECONDS)

    results: dict[str, object] = {}
    started = time.monotonic()
    long_request = sup.send_in_thread(results, "long-1", slow, "spin:", spins, timeout=120)
    wait_until(lambda: sup.status()["routing"]["inflight"] >= 1, timeout=10)
    wait_until(lambda: time.monotonic() - started > HELD, timeout=10)

    client = sup.new_client(timeout=60)
    took: list[float] = []
    bumps: list[int] = []
    try:
        for name in neighbours:
            for i in range(5):
                asked = time.monotonic()
                bumps.append(client.send(name, "bump", request_id=f"{name}-bump-{i}"))
                took.append(time.monotonic() - asked)
            asked = time.monotonic()
            assert client.send(name, "n") == 5
            took.append(time.monotonic() - asked)
        still_running = "long-1" not in results
        long_request.join(timeout=120)
        # after the long request: a resend by id (now on its target's own lane) is answered
        # from the record the diverted run left, not run again
        assert client.send(neighbours[0], "bump", request_id=f"{neighbours[0]}-bump-4") == 5
        assert client.send(neighbours[0], "n") == 5
    finally:
        client.close()
    assert max(took) < PROMPT, f"answers waited behind the long request: {took}"
    assert still_running, f"the long request ended before the reads ({results})"
    assert bumps == [1, 2, 3, 4, 5] * 2
    assert results["long-1"] == ("ok", sum(range(spins)))


def test_a_redefined_inherited_method_is_run_at_once_on_every_lane(
        supervisors: Supervisors) -> None:
    sup = supervisors.start(config={"workers": WORKERS})
    names = [f"heir{i}" for i in range(16)]
    make_recorders(sup.client, names)  # clones of genesis: parent* -> traits
    assert {_lane(n) for n in names} == set(range(WORKERS))
    writer, reader = sup.new_client(timeout=30), sup.new_client(timeout=30)
    stale: list[tuple[str, int, object, object]] = []
    try:
        for version in range(1, 6):
            writer.send("traits", "setSlot:value:", "r2value", version)
            writer.send("traits", "defineMethod:source:", "r2probe",
                        f"def r2probe(self):\n    return {version}\n")
            for name in names:
                got = (reader.send(name, "r2value"), reader.send(name, "r2probe"))
                if got != (version, version):
                    stale.append((name, version, *got))
    finally:
        writer.close()
        reader.close()
    assert not stale, f"(object, version, slot read, method answer) not current: {stale}"
