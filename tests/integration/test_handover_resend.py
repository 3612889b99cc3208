"""Evolve and rollback resent by id, with a real ``batos up`` in uv mode.

What this proves (protocol W6, W7):

* resending an evolve's id after its handover completed starts nothing: the same reply
  (``Reply`` equal field by field), the handover log still has one handover for it, the
  env is the one it switched to;
* resending the id while the handover runs (held in ``validate`` by a slow self-check)
  joins it: both askers get the one reply, one handover runs; a resend during its
  probation gets the reply at once; every ``handover.*`` event of it carries its
  ``handover`` and ``request``;
* a failed handover's id resent gets the same ``HandoverFailed``; a rollback resent gets
  the same reply; an ``unchanged`` evolve resent answers ``unchanged`` again;
* all of these, resent to a new ``batos up`` on the same home, get the same replies
  (looked up in the handover log), and nothing starts.

Replies are compared as the client decodes them (``bridge.Client.request``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bridge import Client
from bridge.messages import EvolveRequest, Reply, RollbackRequest
from tests.integration.handover_fixtures import (
    EVOLVE_TIMEOUT,
    SLOW_CHECK,
    SharedDirs,
    handover_rows,
    shared_dirs,
    uv_config,
    uv_supervisor,
    wait_idle,
)
from tests.integration.supervisor_fixtures import (
    EventStream,
    Supervisor,
    Supervisors,
    make_recorders,
    spin_count,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> SharedDirs:
    return shared_dirs(tmp_path_factory)


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory, dirs: SharedDirs) -> Iterator[Supervisor]:
    with uv_supervisor(tmp_path_factory.mktemp("handover-resend"), dirs) as supervisor:
        yield supervisor


def evolve(client: Client, dirs: SharedDirs | None, rid: str, *, add: tuple[str, ...] = (),
           remove: tuple[str, ...] = (), probation: float = 1.0) -> Reply:
    """An evolve with id ``rid`` (``dirs``: with the wheels' find-links folder; None: without,
    so that no change at all asks for the spec that serves)."""
    return client.request(EvolveRequest(
        id=rid, add=list(add), remove=list(remove), offline=True,
        find_links=[str(dirs.wheels)] if dirs else [], probation=probation, who="test"),
        timeout=EVOLVE_TIMEOUT)


def rollback(client: Client, rid: str) -> Reply:
    return client.request(RollbackRequest(id=rid, probation=1.0, who="test"),
                          timeout=EVOLVE_TIMEOUT)


def toggle(state: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """A change that switches envs whatever the current one holds: rolllib in or out."""
    if "rolllib" in state["env"]["packages"]:
        return {"remove": ("rolllib",)}
    return {"add": ("rolllib==1.0",)}


def other_greetlib(state: dict[str, Any]) -> str:
    current = state["env"]["packages"].get("greetlib")
    return "greetlib==" + ("1.1" if current != "1.1" else "1.2")


def rows_for(sup: Supervisor, rid: str) -> list[dict[str, Any]]:
    return [row for row in handover_rows(sup.home) if row["request"] == rid]


def test_an_evolve_resent_after_it_completed_starts_nothing(sup: Supervisor,
                                                           dirs: SharedDirs) -> None:
    state = wait_idle(sup)
    first = evolve(sup.client, dirs, "resend-done", **toggle(state))
    assert first.ok, first
    assert first.result["outcome"] == "switched"
    after = wait_idle(sup)
    rows = len(handover_rows(sup.home))

    again = evolve(sup.client, dirs, "resend-done", **toggle(state))
    assert again == first
    with sup.new_client() as other:  # another client, the same id
        assert evolve(other, dirs, "resend-done", **toggle(state)) == first
    assert sup.status()["handover"] is None
    assert len(handover_rows(sup.home)) == rows
    (row,) = rows_for(sup, "resend-done")
    assert (row["handover"], row["outcome"]) == (first.result["handover"], "completed")
    assert wait_idle(sup)["env"]["id"] == after["env"]["id"] == first.result["env_after"]["id"]


def test_a_resend_while_the_handover_runs_joins_it(sup: Supervisor, dirs: SharedDirs) -> None:
    client = sup.client
    state = wait_idle(sup)
    make_recorders(client, ["slowpoke"])
    k = spin_count(client, "slowpoke", 3.0)
    client.send("checks", "defineMethod:source:", "checkSlowly", SLOW_CHECK.format(k=k))
    replies: dict[str, Reply] = {}

    def ask(name: str) -> None:
        with sup.new_client() as own:
            replies[name] = evolve(own, dirs, "resend-join", add=(other_greetlib(state),),
                                   probation=4.0)

    try:
        with EventStream(state["supervisor"]["events"], b"handover") as events:
            first = threading.Thread(target=ask, args=("first",), daemon=True)
            first.start()
            events.wait_for(lambda e: e["kind"] == "handover.phase"
                            and e["data"]["phase"] == "validate", timeout=EVOLVE_TIMEOUT)
            running = sup.status()["handover"]
            assert running["request"] == "resend-join"
            assert running["phase"] == "validate"  # not answered yet: the resend joins
            joined = threading.Thread(target=ask, args=("joined",), daemon=True)
            joined.start()
            for thread in (first, joined):
                thread.join(timeout=EVOLVE_TIMEOUT)
                assert not thread.is_alive()
            assert replies["first"].ok, replies["first"]
            assert replies["joined"] == replies["first"]
            hid = replies["first"].result["handover"]
            assert sup.status()["handover"]["id"] == hid  # still in probation
            assert evolve(client, dirs, "resend-join") == replies["first"]
            events.wait_for(lambda e: e["kind"] == "handover.completed", timeout=60)
            seen = [e for e in events.seen if e["kind"].startswith("handover.")]
    finally:
        client.send("checks", "removeSlot:", "checkSlowly")
    assert {e["kind"] for e in seen} >= {"handover.phase", "handover.switched",
                                        "handover.completed"}
    for event in seen:
        assert (event["data"]["handover"], event["data"]["request"]) == (hid, "resend-join"), event
    wait_idle(sup)
    (row,) = rows_for(sup, "resend-join")
    assert (row["handover"], row["outcome"]) == (hid, "completed")


def test_a_failed_handover_resent_fails_the_same(sup: Supervisor, dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    first = evolve(sup.client, dirs, "resend-fail", add=("boomlib==1.0",))
    assert not first.ok
    assert first.error is not None
    assert first.error.type == "HandoverFailed"
    assert first.error.message.startswith("phase validate failed:")
    wait_idle(sup)
    assert evolve(sup.client, dirs, "resend-fail", add=("boomlib==1.0",)) == first
    assert len(rows_for(sup, "resend-fail")) == 1
    assert wait_idle(sup)["env"]["id"] == before["env"]["id"]


def test_a_rollback_resent_gets_the_same_reply(sup: Supervisor, dirs: SharedDirs) -> None:
    state = wait_idle(sup)
    assert evolve(sup.client, dirs, "resend-before-rollback", **toggle(state)).ok
    wait_idle(sup)
    first = rollback(sup.client, "resend-rollback")
    assert first.ok, first
    assert first.result["env_after"]["id"] == state["env"]["id"]
    wait_idle(sup)
    assert rollback(sup.client, "resend-rollback") == first
    (row,) = rows_for(sup, "resend-rollback")
    assert (row["kind"], row["outcome"]) == ("rollback", "completed")
    assert wait_idle(sup)["env"]["id"] == state["env"]["id"]


def test_resends_after_a_restart_get_the_recorded_replies(supervisors: Supervisors,
                                                          dirs: SharedDirs) -> None:
    config = uv_config(dirs)
    sup = supervisors.start("first", config=config, env_mode="uv", timeout=300)
    state = wait_idle(sup)
    asked = {
        "r-unchanged": lambda c: evolve(c, None, "r-unchanged"),
        "r-evolve": lambda c: evolve(c, dirs, "r-evolve", **toggle(state)),
        "r-failed": lambda c: evolve(c, dirs, "r-failed", add=("boomlib==1.0",)),
        "r-rollback": lambda c: rollback(c, "r-rollback"),
    }
    first: dict[str, Reply] = {}
    for rid, ask in asked.items():
        first[rid] = ask(sup.client)
        wait_idle(sup)
    assert first["r-unchanged"].result["outcome"] == "unchanged"
    assert first["r-evolve"].result["outcome"] == "switched"
    assert first["r-failed"].error.type == "HandoverFailed"
    assert first["r-rollback"].result["outcome"] == "switched"
    rows, env = handover_rows(sup.home), wait_idle(sup)["env"]["id"]
    assert len(rows) == 3
    assert sup.terminate() == 0

    again = supervisors.start("second", config=config, env_mode="uv", home=sup.home, timeout=120)
    for rid, ask in asked.items():
        assert ask(again.client) == first[rid], rid
    assert again.status()["handover"] is None
    assert handover_rows(again.home) == rows
    assert wait_idle(again)["env"]["id"] == env == state["env"]["id"]
