"""Evolve and rollback as validated handovers, with a real ``batos up`` in uv mode.

One supervisor serves the whole module (starting one and building its base env is
the expensive part); each test waits for the previous handover's probation to end
and works from whatever env is current, so the tests also run one by one. The
packages evolve adds are hand-made wheels installed offline from a find-links folder
(``handover_fixtures``). What this proves:

* ``batos evolve --add greetlib==1.0`` switches to a new env: the reply carries the
  envs before and after, per-phase timings and the validation record; afterwards a
  method that imports ``greetlib`` can be defined and answers through ``batos send``,
  and ``batos status`` shows the new env and ``greetlib`` in the active incarnation;
  before the evolve the same method is refused (``MethodSourceError``);
* a package whose import raises fails the handover in ``validate``; the old
  incarnation serves on (same pid, same env), the candidate is gone, the log row says
  ``failed`` in ``validate``;
* a package version that breaks one of the image's self-checks (a check method on
  ``checks`` answering ``checkgate.OK``) fails the handover in ``validate``: the
  realistic way to break an image, since methods cannot store instances of arbitrary
  classes in it;
* ``--remove`` of a package a method still imports is refused in ``validate``, naming
  the method and object, unless ``--force``;
* ``batos rollback`` hands back to the env that served before, as a new handover; and
  it does so even after a failed evolve built an env that never served;
* a second evolve (or rollback) while one runs is answered ``Busy`` naming it;
* ``batos handovers --verify`` accepts the real log and prints a row per handover; an
  edited, removed or swapped line in a copy of it is named.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import Client, RemoteError
from supervisor import handover_chain, handover_log
from tests.conftest import wait_until
from tests.integration.handover_fixtures import (
    EVOLVE_TIMEOUT,
    SharedDirs,
    active,
    handover_rows,
    incarnation_processes,
    run_batos,
    shared_dirs,
    uv_supervisor,
    wait_idle,
)
from tests.integration.supervisor_fixtures import Supervisor

pytestmark = pytest.mark.integration

GREET = "def greet(self, n):\n    import greetlib\n    return greetlib.hello(n)\n"
CHECK_GATE = "def checkGate(self):\n    import checkgate\n    return checkgate.OK\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> SharedDirs:
    return shared_dirs(tmp_path_factory)


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory, dirs: SharedDirs) -> Iterator[Supervisor]:
    with uv_supervisor(tmp_path_factory.mktemp("handover"), dirs) as supervisor:
        yield supervisor


def evolve(client: Client, dirs: SharedDirs, *, add: list[str] | None = None,
           remove: list[str] | None = None, force: bool = False,
           probation: float = 1.0) -> dict[str, Any]:
    return client.evolve(add=add, remove=remove, force=force, offline=True,
                         find_links=[str(dirs.wheels)], probation=probation,
                         timeout=EVOLVE_TIMEOUT)


def evolve_fails(client: Client, dirs: SharedDirs, **kwargs: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        evolve(client, dirs, **kwargs)
    assert info.value.type == "HandoverFailed", info.value
    assert info.value.where == "supervisor"
    return info.value


def handover_id(message: str) -> str:
    found = re.search(r"\(handover (h-[0-9a-f]+)\)", message)
    assert found, message
    return found[1]


def make_object(client: Client, name: str) -> str:
    """A clone of genesis registered as ``name``; answers its uuid."""
    done = client.send("genesis", "applyActs:", [
        {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "o", "name": name,
         "slots": {"n": 0}}])
    return done["created"]["o"]["$ref"]


def version_of(state: dict[str, Any], package: str) -> str | None:
    return state["env"]["packages"].get(package)


def ensure_greetlib(sup: Supervisor, dirs: SharedDirs) -> dict[str, Any]:
    """The current status, after adding greetlib 1.0 if the env lacks it."""
    state = wait_idle(sup)
    if version_of(state, "greetlib") is None:
        assert evolve(sup.client, dirs, add=["greetlib==1.0"])["outcome"] == "switched"
        state = wait_idle(sup)
    return state


def assert_still_serving(sup: Supervisor, before: dict[str, Any]) -> dict[str, Any]:
    """The incarnation of ``before`` serves on, in the same env, and is the only one."""
    after = wait_idle(sup)
    assert active(after)["id"] == active(before)["id"]
    assert active(after)["pid"] == active(before)["pid"]
    assert after["env"]["id"] == before["env"]["id"]
    assert active(after)["env_id"] == before["env"]["id"]
    run = after["supervisor"]["events"].removeprefix("ipc://").removesuffix("/ev.sock")
    wait_until(lambda: [p.pid for p in incarnation_processes(run)] == [active(before)["pid"]],
               timeout=15)
    assert sup.client.send("genesis", "printString") is not None
    return after


def test_evolve_adds_a_package_that_methods_can_then_import(sup: Supervisor,
                                                            dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    if version_of(before, "greetlib") is not None:  # run after the others: start without it
        evolve(sup.client, dirs, remove=["greetlib"], force=True)
        before = wait_idle(sup)
    client = sup.client
    make_object(client, "greeter")
    with pytest.raises(RemoteError) as refused:
        client.send("greeter", "defineMethod:source:", "greet:", GREET)
    assert refused.value.type == "MethodSourceError"
    assert "module 'greetlib' cannot be imported" in refused.value.message

    done = run_batos("evolve", "--endpoint", sup.endpoint, "--add", "greetlib==1.0",
                     "--find-links", dirs.wheels, "--offline", "--probation", "1", "--json",
                     timeout=EVOLVE_TIMEOUT)
    assert done.code == 0, done
    reply = json.loads(done.out.splitlines()[-1])["result"]  # after one line per event
    assert reply["outcome"] == "switched"
    assert re.fullmatch(r"h-[0-9a-f]+", reply["handover"])
    assert reply["env_before"]["id"] == before["env"]["id"]
    assert reply["env_after"]["id"] != before["env"]["id"]
    assert "greetlib" not in reply["env_before"]["packages"]
    assert reply["env_after"]["packages"]["greetlib"] == "1.0"
    assert "greetlib==1.0" in reply["env_after"]["spec"]["requirements"]
    assert {"build", "incarnate", "validate", "switch"} <= set(reply["timings"])
    validation = reply["validation"]
    assert validation["ok"] is True, validation
    assert validation["imports"]["greetlib"] == "ok"
    assert "greetlib" in validation["allowed"]
    assert validation["objects"] > 0
    assert len(validation["digest"]) == 64
    assert validation["checks"]
    assert set(validation["checks"].values()) == {"ok"}
    assert validation["genesis"] == []

    defined = run_batos("send", "--endpoint", sup.endpoint, "greeter", "defineMethod:source:",
                        "greet:", GREET)
    assert defined.code == 0, defined
    greeted = run_batos("send", "--endpoint", sup.endpoint, "greeter", "greet:", "world")
    assert greeted.code == 0, greeted
    assert greeted.json() == "hello world"

    status = run_batos("status", "--endpoint", sup.endpoint, "--verbose")
    assert status.code == 0, status
    state = status.json()
    assert state["env"]["id"] == reply["env_after"]["id"]
    serving = active(state)
    assert serving["env_id"] == reply["env_after"]["id"]
    assert serving["packages"]["greetlib"] == "1.0"
    after = wait_idle(sup)
    assert after["env"]["id"] == reply["env_after"]["id"]
    row = handover_rows(sup.home)[-1]
    assert (row["handover"], row["outcome"], row["add"]) == (
        reply["handover"], "completed", ["greetlib==1.0"])
    assert set(row["phases"]) == {"build", "incarnate", "validate", "switch", "drain",
                                  "probation", "retire"}


def test_a_package_whose_import_raises_fails_validation(sup: Supervisor,
                                                        dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    failed = evolve_fails(sup.client, dirs, add=["boomlib==1.0"])
    assert failed.message.startswith("phase validate failed:"), failed.message
    assert "module 'boomlib'" in failed.message
    assert "RuntimeError: boomlib refuses to be imported" in failed.message
    assert_still_serving(sup, before)
    row = handover_rows(sup.home)[-1]
    assert row["handover"] == handover_id(failed.message)
    assert (row["outcome"], row["failed_phase"]) == ("failed", "validate")
    assert "boomlib refuses to be imported" in row["reason"]
    assert "validate" in row["phases"]
    assert "switch" not in row["phases"]


def test_a_package_that_breaks_a_self_check_fails_validation(sup: Supervisor,
                                                             dirs: SharedDirs) -> None:
    client = sup.client
    state = wait_idle(sup)
    if version_of(state, "checkgate") != "1.0":
        assert evolve(client, dirs, add=["checkgate==1.0"])["outcome"] == "switched"
    client.send("checks", "defineMethod:source:", "checkGate", CHECK_GATE)
    try:
        assert client.send("checks", "checkGate") is True
        before = wait_idle(sup)
        failed = evolve_fails(client, dirs, add=["checkgate==2.0"])
        assert failed.message.startswith("phase validate failed:"), failed.message
        assert "self-check checkGate failed: answered False, not True" in failed.message
        assert_still_serving(sup, before)
        assert client.send("checks", "checkGate") is True  # the old env's checkgate
        row = handover_rows(sup.home)[-1]
        assert (row["outcome"], row["failed_phase"]) == ("failed", "validate")
        assert row["add"] == ["checkgate==2.0"]
    finally:
        client.send("checks", "removeSlot:", "checkGate")


def drop_method(client: Client, target: str, slot: str) -> None:
    """Remove a method that imports a package the env may lose (cleanup for later tests)."""
    try:
        slots = client.send(target, "slotNames")
    except RemoteError as exc:
        if exc.type != "UnknownTarget":  # made by a test that did not run
            raise
        return
    if slot in slots:
        client.send(target, "removeSlot:", slot)


def test_removing_a_package_a_method_imports_needs_force(sup: Supervisor,
                                                         dirs: SharedDirs) -> None:
    client = sup.client
    before = ensure_greetlib(sup, dirs)
    uuid = make_object(client, "remover")
    client.send("remover", "defineMethod:source:", "greet:", GREET)
    try:
        assert client.send("remover", "greet:", "x") == "hello x"

        refused = evolve_fails(client, dirs, remove=["greetlib"])
        assert refused.message.startswith("phase validate failed:"), refused.message
        assert "still import removed packages" in refused.message
        assert f"greet on {uuid}" in refused.message
        assert "--force" in refused.message
        assert_still_serving(sup, before)
        assert client.send("remover", "greet:", "y") == "hello y"

        forced = evolve(client, dirs, remove=["greetlib"], force=True)
        assert forced["outcome"] == "switched"
        stale = forced["validation"]["methods_importing_removed"]
        assert {"object": uuid, "slot": "greet", "modules": ["greetlib"]} in stale
        after = wait_idle(sup)
        assert after["env"]["id"] == forced["env_after"]["id"] != before["env"]["id"]
        assert "greetlib" not in active(after)["packages"]
        with pytest.raises(RemoteError) as gone:
            client.send("remover", "greet:", "z")
        assert gone.value.type == "MethodSourceError"
        assert "greetlib" in gone.value.message
        row = handover_rows(sup.home)[-1]
        assert (row["outcome"], row["remove"]) == ("completed", ["greetlib"])
    finally:
        # the module's later handovers validate every method: leave none importing greetlib
        for target in ("remover", "greeter"):
            drop_method(client, target, "greet")


def test_a_forced_removal_does_not_block_later_handovers(sup: Supervisor,
                                                         dirs: SharedDirs) -> None:
    """``--force`` accepts that some methods stop working; the next, unrelated evolve must
    not then fail because those same methods do not compile without the package."""
    client = sup.client
    ensure_greetlib(sup, dirs)
    uuid = make_object(client, "stale")
    client.send("stale", "defineMethod:source:", "greet:", GREET)
    try:
        forced = evolve(client, dirs, remove=["greetlib"], force=True)
        assert forced["outcome"] == "switched"
        state = wait_idle(sup)
        change = (dict(add=["rolllib==1.0"]) if version_of(state, "rolllib") is None
                  else dict(remove=["rolllib"]))
        try:
            later = evolve(client, dirs, **change)
        except RemoteError as exc:
            pytest.fail(f"an unrelated evolve after a forced removal was refused: {exc}")
        assert later["outcome"] == "switched"
        noted = later["validation"]["methods_importing_unavailable"]
        assert {"object": uuid, "slot": "greet", "modules": ["greetlib"]} in noted
    finally:
        drop_method(client, "stale", "greet")
    wait_idle(sup)


def test_rollback_returns_to_the_previous_env(sup: Supervisor, dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    rolllib = "rolllib==1.0" if version_of(before, "rolllib") is None else None
    changed = evolve(sup.client, dirs, add=[rolllib] if rolllib else [],
                     remove=[] if rolllib else ["rolllib"])
    assert changed["outcome"] == "switched"
    wait_idle(sup)

    done = run_batos("rollback", "--endpoint", sup.endpoint, "--probation", "1", "--json",
                     timeout=EVOLVE_TIMEOUT)
    assert done.code == 0, done
    reply = json.loads(done.out.splitlines()[-1])["result"]
    assert reply["outcome"] == "switched"
    assert reply["handover"] != changed["handover"]
    assert reply["env_before"]["id"] == changed["env_after"]["id"]
    assert reply["env_after"]["id"] == before["env"]["id"]
    state = wait_idle(sup)
    assert state["env"]["id"] == before["env"]["id"]
    assert active(state)["env_id"] == before["env"]["id"]
    assert active(state)["packages"] == active(before)["packages"]
    row = handover_rows(sup.home)[-1]
    assert (row["handover"], row["kind"], row["outcome"]) == (
        reply["handover"], "rollback", "completed")


def test_rollback_skips_an_env_that_never_served(sup: Supervisor, dirs: SharedDirs) -> None:
    """A failed evolve leaves its freshly built env behind; "the one before" is still the
    env that served before, not the most recently built one."""
    before = wait_idle(sup)
    target = "1.2" if version_of(before, "greetlib") != "1.2" else "1.1"
    changed = evolve(sup.client, dirs, add=[f"greetlib=={target}"])
    assert changed["outcome"] == "switched"
    wait_idle(sup)
    failed = evolve_fails(sup.client, dirs, add=["boomlib==1.0"])
    assert "phase validate failed" in failed.message
    wait_idle(sup)

    done = run_batos("rollback", "--endpoint", sup.endpoint, "--probation", "1", "--json",
                     timeout=EVOLVE_TIMEOUT)
    assert done.code == 0, (
        "batos rollback did not return to the env that served before "
        f"({before['env']['id']}); it chose another:\n{done}")
    assert json.loads(done.out.splitlines()[-1])["result"]["env_after"]["id"] == before["env"]["id"]
    assert wait_idle(sup)["env"]["id"] == before["env"]["id"]


def test_a_second_handover_while_one_runs_is_busy(sup: Supervisor, dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    first = "1.1" if version_of(before, "greetlib") != "1.1" else "1.0"
    result: dict[str, Any] = {}

    def run() -> None:
        with sup.new_client() as client:
            try:
                result["reply"] = evolve(client, dirs, add=[f"greetlib=={first}"], probation=4)
            except Exception as exc:  # reported by the test thread
                result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        running = wait_until(lambda: sup.status()["handover"], timeout=30, interval=0.02)
        with pytest.raises(RemoteError) as busy:
            evolve(sup.client, dirs, add=["greetlib==1.2"])
        assert busy.value.type == "Busy"
        assert f"handover {running['id']} (evolve" in busy.value.message
        with pytest.raises(RemoteError) as busy_rollback:
            sup.client.rollback(timeout=30)
        assert busy_rollback.value.type == "Busy"
        assert running["id"] in busy_rollback.value.message
    finally:
        thread.join(timeout=EVOLVE_TIMEOUT)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")
    assert result["reply"]["outcome"] == "switched"
    assert result["reply"]["handover"] == running["id"]
    # Busy was refused, not queued: the one handover completes and nothing follows it
    state = wait_idle(sup)
    assert version_of(state, "greetlib") == first
    rows = handover_rows(sup.home)
    assert rows[-1]["handover"] == running["id"]
    assert rows[-1]["outcome"] == "completed"


def test_handovers_verify_names_an_edited_removed_or_swapped_entry(
        sup: Supervisor, dirs: SharedDirs, tmp_path: Path) -> None:
    state = wait_idle(sup)
    if not handover_rows(sup.home):  # run on its own: make a log to check
        toggle = ({"add": ["rolllib==1.0"]} if version_of(state, "rolllib") is None
                  else {"remove": ["rolllib"]})
        evolve(sup.client, dirs, **toggle)
        wait_idle(sup)
    log_path = sup.home / "logs" / handover_log.LOG_FILE
    rows = handover_rows(sup.home)

    listed = run_batos("handovers", "--home", sup.home, "--verify")
    assert listed.code == 0, listed
    lines = listed.out.splitlines()
    assert lines[0].startswith("WHEN (UTC)")
    for row in rows:
        assert sum(row["handover"] in line for line in lines) == 1, (row["handover"], listed.out)
    entries = len(log_path.read_bytes().splitlines())
    assert f"chain ok: {entries} entries" in lines[-1]
    assert sup.client.handovers(verify=True)["verify"]["ok"] is True
    as_json = run_batos("handovers", "--home", sup.home, "--json")
    assert [r["handover"] for r in as_json.json()["handovers"]] == [r["handover"] for r in rows]

    original = log_path.read_bytes().splitlines(keepends=True)
    assert len(original) > 6
    k = 3  # a 1-based line in the middle of the chain

    def tampered(name: str, lines: list[bytes]) -> Path:
        home = tmp_path / name
        (home / "logs").mkdir(parents=True)
        copy = home / "logs" / handover_log.LOG_FILE
        copy.write_bytes(b"".join(lines))
        return copy

    entry = json.loads(original[k - 1])
    entry["ts"] = entry["ts"] + 1.0  # a plausible edit: still valid JSON, keys sorted
    edited_line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    edited = tampered("edited", [*original[:k - 1], edited_line, *original[k:]])
    result = handover_chain.verify(edited)
    assert (result.ok, result.first_bad, result.bad_seq) == (False, k, k - 1), result
    assert result.reason.startswith(f"line {k} (seq {k - 1}): edited")

    removed = tampered("removed", [*original[:k - 1], *original[k:]])
    result = handover_chain.verify(removed)
    assert (result.ok, result.first_bad) == (False, k), result
    assert "removed" in result.reason
    assert f"seq {k - 1}" in result.reason

    swapped = tampered("swapped", [*original[:k - 1], original[k], original[k - 1], *original[k + 1:]])
    result = handover_chain.verify(swapped)
    assert (result.ok, result.first_bad) == (False, k), result
    assert "out of order" in result.reason
    assert f"line {k + 1}" in result.reason

    broken = run_batos("handovers", "--home", edited.parent.parent, "--verify")
    assert broken.code == 1, broken
    assert f"chain BROKEN at line {k} (seq {k - 1}): edited" in broken.out
    shutil.rmtree(tmp_path / "edited")
