"""The conformance suite (``bridge.conformance``) against a real ``batos up``: every check
that can run passes.

* On a plain ``batos up`` (env mode ``current``) the suite runs in-process (``run``)
  and as ``python -m bridge.conformance ENDPOINT --json`` in a subprocess: no check
  fails, and the only ones skipped are those that need a real evolve or events the
  suite cannot provoke (``SKIPPED_WITHOUT_EVOLVE``), so a check that quietly stopped
  running shows here.
* On a ``batos up`` in uv mode with ``--evolve-requirement`` (a wheel from the session's
  find-links folder, offline) the handover checks run too: a real evolve joined and
  resent, ``Busy`` for another id, a rollback resent, and their events; the server is
  left on the env it started with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.conformance import FAIL, PASS, SKIP, Options, Result, ordered, run
from tests.integration.handover_fixtures import shared_dirs, uv_supervisor, wait_idle
from tests.integration.supervisor_fixtures import (
    Supervisors,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

#: checks that need a real evolve, or events of kinds nothing in the suite provokes
HANDOVER_CHECKS = {"evolve-switch", "busy", "evolve-resend", "evolve-unchanged",
                   "rollback-switch", "events-handover", "events-handover-topic"}
UNPROVOKED_TOPICS = {"events-supervisor", "events-zeo", "events-vllm", "events-image"}
SKIPPED_WITHOUT_EVOLVE = HANDOVER_CHECKS | UNPROVOKED_TOPICS | {"events-shape",
                                                                "events-incarnation"}
REPLY_TIMEOUT = 30.0  # s: a loaded machine runs image messages slowly
SUITE_TIMEOUT = 300.0


def _table(results: list[Result]) -> str:
    return "\n".join(f"{r.name:<24} {r.outcome:<5} {r.reason}" for r in results)


def _outcomes(results: list[Result]) -> dict[str, set[str]]:
    return {o: {r.name for r in results if r.outcome == o} for o in (PASS, FAIL, SKIP)}


def test_the_suite_passes_against_batos_up(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    results = run(Options(sup.endpoint, timeout=REPLY_TIMEOUT))
    outcomes = _outcomes(results)
    assert not outcomes[FAIL], _table(results)
    assert outcomes[SKIP] == SKIPPED_WITHOUT_EVOLVE, _table(results)
    assert outcomes[PASS] == {c.name for c in ordered()} - SKIPPED_WITHOUT_EVOLVE

    done = subprocess.run(
        [sys.executable, "-m", "bridge.conformance", sup.endpoint, "--json",
         "--timeout", str(REPLY_TIMEOUT)],
        capture_output=True, text=True, timeout=SUITE_TIMEOUT, stdin=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["failed"] == 0
    assert summary["passed"] == len(outcomes[PASS])
    assert {line["name"] for line in lines[:-1] if line["outcome"] == SKIP} == outcomes[SKIP]
    assert sup.status()["state"] == "serving"


@pytest.mark.timeout(900)
def test_the_suite_with_a_real_evolve(tmp_path: Path,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    dirs = shared_dirs(tmp_path_factory)
    with uv_supervisor(tmp_path / "uv", dirs) as sup:
        env_before = wait_idle(sup)["env"]["id"]
        results = run(Options(
            sup.endpoint, timeout=REPLY_TIMEOUT, evolve_requirement="greetlib==1.0",
            find_links=(str(dirs.wheels),), offline=True, handover_timeout=SUITE_TIMEOUT))
        outcomes = _outcomes(results)
        assert not outcomes[FAIL], _table(results)
        assert outcomes[SKIP] == UNPROVOKED_TOPICS, _table(results)
        assert HANDOVER_CHECKS | {"events-shape", "events-incarnation"} <= outcomes[PASS]
        assert wait_idle(sup)["env"]["id"] == env_before  # the rollback undid the evolve
