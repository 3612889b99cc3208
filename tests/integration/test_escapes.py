"""The escape corpus, run for real against the walls of issue 11.

Every hostile case (``escape_corpus.CASES``, by family) is run two ways, on one
image served by a real supervisor (``escape_fixtures.Walls``):

* **crucible**: the whole review (static, then the trial in a real worker
  process that opens the live image as a read-only ZEO client). It must be
  rejected with a specific reason, and the image's storage must not move.
* **direct**: a person clones ``escapee`` and defines the proposal on the clone
  in one ``applyActs:`` message, then calls it through the real incarnation.
  It must be refused at definition or fail at call with an error reply; a
  crash or a budget case must be answered too, and the supervisor must go on
  serving. The failing call must commit nothing: the storage does not move,
  the clone, ``escapee``, every Genesis object and the names table read back
  the same, ``validate_image`` finds nothing and the graph digest holds, even
  after a later unrelated message commits (a write planted in the connection
  would ride along with it).

After each case, on both paths: the canary file does not exist, no
``sleep`` process was started, the secret is in no reply or verdict, and the
fingerprint (process-wide state benign code can see) is unchanged. The log
files of every supervisor are searched for the secret at the end.

``agree`` cases are probes of the trial: whatever the crucible decides, the
live path must decide the same. The benign corpus must be accepted both ways
with the right answer.

Holes that a part of issue 11 has not closed yet are strict xfails named in
``escape_corpus.HOLES``: the file stays green, and turns red when a wall lands
until the mark goes.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.integration.escape_corpus import (
    BENIGN,
    CASES,
    FAMILIES,
    HOLES,
    OS_ALONE,
    Benign,
    Case,
)
from tests.integration.escape_fixtures import Outcome, Walls
from tests.integration.escape_fixtures import exposed as exposed  # noqa: F401 - a fixture
from tests.integration.escape_fixtures import walls as walls  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

MAX_ERROR_CHARS = 64 * 1024  # an error reply's message: capped, never a flood
_INDEX = {case.id: index for index, case in enumerate(CASES)}


def _params(way: str, cases: list[Case]) -> list[Any]:
    params = []
    for case in cases:
        reason = HOLES.get(case.id, {}).get(way)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


HOSTILE = [case for case in CASES if case.family != "agree"]
AGREE = [case for case in CASES if case.family == "agree"]


def test_the_corpus_covers_every_family():
    assert len(CASES) >= 200
    assert len(BENIGN) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert len({case.id for case in BENIGN}) == len(BENIGN)
    assert {case.family for case in CASES} == set(FAMILIES)
    for family in FAMILIES:
        assert sum(case.family == family for case in CASES) >= 4, family
    unknown = set(HOLES) - {case.id for case in [*CASES, *BENIGN]}
    assert not unknown, f"HOLES names cases that do not exist: {unknown}"
    for case_id, ways in HOLES.items():
        assert set(ways) <= {"crucible", "direct", "benign"}, case_id
        assert all(ways.values()), case_id


# --- the crucible path --------------------------------------------------------------------

@pytest.mark.parametrize("case", _params("crucible", HOSTILE))
def test_crucible_rejects(walls: Walls, case: Case) -> None:
    mark = walls.image_mark()
    verdict = walls.review(case.proposal, case.selector, list(case.args))
    problems = walls.canaries(texts=[verdict.model_dump_json()])
    if walls.image_mark() != mark:
        problems.append("the image's storage moved during the review")
    if verdict.approved and case.state_only:
        pass  # harmless if nothing of it outlives the call: the direct path proves that
    elif verdict.approved:
        trial = next((s for s in verdict.stages if s.stage == "trial"), None)
        problems.append(f"approved; the trial answered {trial.detail if trial else None!r:.300}")
    elif not verdict.reasons or any(len(reason) < 20 for reason in verdict.reasons):
        problems.append(f"rejected without a specific reason: {verdict.reasons}")
    walls.note(case.id, "crucible", f"{problems}" if problems else
               f"{'approved' if verdict.approved else 'rejected'}: {verdict.reasons[:1]}")
    assert not problems, problems


# --- the direct path ----------------------------------------------------------------------

def _clean_error(outcome: Outcome) -> str | None:
    # a state-only case (case.state_only) may answer: the fingerprint after it is the proof
    """Why ``outcome`` is not a clean failure (None if it is)."""
    if outcome.how == "answered":
        return f"the call answered {outcome.value!r:.300}: the wall did not hold"
    if outcome.how == "timeout":
        return "no reply within the client's timeout"
    if outcome.type in ("Unavailable", "Timeout"):
        return f"the supervisor could not serve it: {outcome}"
    if len(outcome.message) > MAX_ERROR_CHARS:
        return f"an error message of {len(outcome.message)} characters (not capped)"
    return None


def _run_direct(walls: Walls, case: Case) -> list[str]:
    name = f"esc-{_INDEX[case.id]}-{walls.generation}"
    problems: list[str] = []
    pid = walls.pid
    before = walls.image_mark()
    snapshot = walls.snapshot()
    refused = walls.define(name, case.proposal, case.selector)
    if refused is not None:
        why = _clean_error(refused)
        if why:
            problems.append(f"at definition: {why}")
        if walls.image_mark() != before:
            problems.append("a refused definition moved the storage")
        if walls.snapshot() != snapshot:
            problems.append("a refused definition changed Genesis or the names")
        outcomes = [refused]
        walls.note(case.id, "direct", f"refused: {refused}")
    else:
        if case.person_may:
            return problems  # a person may, with the change in the history: fine
        problems_before, digest = walls.image_report()
        graph = walls.graph()
        if problems_before:
            problems.append(f"the image was not valid after the definition: {problems_before}")
        snapshot = walls.snapshot(name, "escapee")
        mark = walls.image_mark()
        outcomes = [walls.send(name, case.selector, list(case.args)) for _ in range(case.calls)]
        walls.note(case.id, "direct", "; ".join(str(o) for o in outcomes))
        for outcome in outcomes:
            why = _clean_error(outcome)
            if why and not (case.state_only and outcome.how == "answered"):
                problems.append(f"at call: {why}")
        poisoned = any(o.type == "PoisonMessage" for o in outcomes)
        if case.crash and not walls.serving():
            problems.append("the supervisor does not serve after the case")
            return problems
        if poisoned:
            # the one legitimate write: the kernel quarantines the method that killed it
            problems += _quarantined(walls, name, case)
        elif walls.image_mark() != mark:
            problems.append("the failing call moved the storage")
        problems_after, digest_after = walls.image_report()
        if problems_after:
            problems.append(f"the image does not validate: {problems_after}")
        if digest_after != digest and not poisoned:
            now = walls.graph()
            diff = sorted((k, graph.get(k), now.get(k)) for k in set(graph) | set(now)
                          if graph.get(k) != now.get(k))
            problems.append(f"the image's graph digest changed: {diff[:6]}")
        # an unrelated message that commits (its reply record, a slot of prober) must
        # commit only its own change: a write planted in the connection would ride along
        walls.call(walls.sup.client, "prober", "setSlot:value:", "tick", _INDEX[case.id])
        after = walls.snapshot(name, "escapee")
        changed = sorted(k for k in snapshot if snapshot[k] != after.get(k))
        if changed:
            problems.append(f"state changed outside the message's transaction: {changed}")
    if not case.crash and walls.sup.active_pid() != pid:
        problems.append("the incarnation was replaced by a case that is not a crash")
    return problems


def _quarantined(walls: Walls, name: str, case: Case) -> list[str]:
    """After a PoisonMessage: the method is quarantined in the image, and calling it again
    answers Quarantined at once (nothing runs, nothing dies)."""
    try:
        wait_until(lambda: walls.quarantined(name), timeout=20, interval=0.1)
    except AssertionError:
        return ["answered PoisonMessage, but the method was not quarantined in the image"]
    again = walls.send(name, case.selector, list(case.args))
    if again.type != "Quarantined":
        return [f"a quarantined method called again: {again}"]
    return []


@pytest.mark.parametrize("case", _params("direct", HOSTILE))
def test_direct_fails_cleanly(walls: Walls, case: Case) -> None:
    texts_from = len(walls.replies)
    problems = _run_direct(walls, case)
    problems += walls.canaries(texts=walls.replies[texts_from:])
    if not case.crash or walls.serving(timeout=5):
        problems += walls.state_changed()
    if problems:
        walls.note(case.id, "direct_problems", f"{problems}")
    if problems or walls.spinning():
        walls.recover()  # one broken wall fails one case, not every case after it
    else:
        walls.pid = walls.sup.active_pid()
    assert not problems, problems


# --- the trial is the live path -----------------------------------------------------------

@pytest.mark.parametrize("case", _params("direct", AGREE))
def test_trial_and_live_agree(walls: Walls, case: Case) -> None:
    verdict = walls.review(case.proposal, case.selector, list(case.args))
    name = f"esc-{_INDEX[case.id]}-{walls.generation}"
    refused = walls.define(name, case.proposal, case.selector)
    live = refused or walls.send(name, case.selector, list(case.args))
    problems = walls.canaries(texts=[verdict.model_dump_json(), *walls.replies[-3:]])
    trial = next((s for s in verdict.stages if s.stage == "trial"), None)
    if verdict.approved:
        assert trial is not None
        if live.how != "answered" or live.value != trial.detail.get("result"):
            problems.append(f"the trial answered {trial.detail.get('result')!r}, live: {live}")
    elif live.how == "answered":
        problems.append(f"rejected by the crucible ({verdict.reasons}) but live answered "
                        f"{live.value!r:.200}")
    elif _clean_error(live):
        problems.append(f"live: {_clean_error(live)}")
    if not walls.serving() or walls.spinning():
        problems.append("the live path was left unhealthy")
    if problems:
        walls.recover()
    assert not problems, problems


# --- the benign side ----------------------------------------------------------------------

@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(
    reason=HOLES[c.id]["benign"], strict=True)] if "benign" in HOLES.get(c.id, {}) else [])
    for c in BENIGN])
def test_benign_accepted_both_ways(walls: Walls, case: Benign) -> None:
    verdict = walls.review(case.source, case.selector, list(case.args))
    trial = next((s for s in verdict.stages if s.stage == "trial"), None)
    problems = []
    if not verdict.approved:
        problems.append(f"the crucible rejected it: {verdict.reasons}")
    elif trial is None or trial.detail.get("result") != case.expected:
        problems.append(f"the trial answered {trial.detail.get('result') if trial else None!r}")
    elif not (trial.detail.get("sandbox") == "bwrap"
              and (trial.detail.get("confined") or {}).get("seccomp")):
        problems.append(f"the trial did not run confined: {trial.detail}")
    name = f"benign-{case.id}-{walls.generation}"
    refused = walls.define(name, case.source, case.selector)
    if refused is not None:
        problems.append(f"refused at definition: {refused}")
    else:
        live = walls.send(name, case.selector, list(case.args))
        if live.how != "answered" or live.value != case.expected:
            problems.append(f"live: {live}")
    assert not problems, problems


# --- the OS layer on its own ----------------------------------------------------------------

@pytest.mark.parametrize("case", _params("direct", OS_ALONE))
def test_os_layer_holds_alone(exposed: Walls, case: Case, tmp_path: Any) -> None:
    """With the Python wall bypassed (real os, socket, subprocess, ctypes in methods), the
    process still cannot write a host file, start a process, reach a socket, read the
    host's files or the supervisor's environment, or touch the image file."""
    hostfile = tmp_path / "host-secret.txt"
    hostfile.write_text(exposed.secret)
    with socket.socket() as listener, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        udp.bind(("127.0.0.1", listener.getsockname()[1]))
        udp.setblocking(False)
        filled = {"$PORT": listener.getsockname()[1], "$HOSTFILE": str(hostfile),
                  "$IMAGE": str(exposed.home.image), "$SUPERVISOR": exposed.sup.proc.pid}
        args = [filled.get(a, a) if isinstance(a, str) else a for a in case.args]
        mark = exposed.image_mark()
        texts_from = len(exposed.replies)
        name = f"os-{case.id}-{exposed.generation}"
        outcome = exposed.define(name, case.proposal, case.selector) or exposed.send(
            name, case.selector, args)
        exposed.note(case.id, "os", str(outcome))
        problems = exposed.canaries(texts=exposed.replies[texts_from:])
        for sock in (listener, udp):
            try:
                got = sock.accept() if sock is listener else sock.recvfrom(16)
            except BlockingIOError:
                continue
            problems.append(f"the test's socket was reached: {got}")
    if outcome.how == "timeout":
        problems.append("no reply")
    if not exposed.serving():
        problems.append("the supervisor does not serve after the case")
    elif case.proposal and "$IMAGE" in case.args:
        report, _digest = exposed.image_report()
        problems += [f"the image: {line}" for line in report]
    if "$IMAGE" in case.args and exposed.image_mark()[0] < mark[0]:
        problems.append("the image file shrank")
    if problems:
        exposed.recover()
    assert not problems, problems


def test_os_layer_left_no_secret_anywhere(exposed: Walls) -> None:
    assert not exposed.logs_clean()
    assert not exposed.large_files()


def test_no_secret_in_any_log_or_image(walls: Walls) -> None:
    """Last: every file of every supervisor the module started (output, logs, images); and
    no log file flooded by the floods of the corpus (30 MB messages and results)."""
    assert not walls.logs_clean()
    assert not walls.large_files()
