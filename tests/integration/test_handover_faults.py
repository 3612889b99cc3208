"""Handovers under faults and load, with a real ``batos up`` in uv mode and real signals.

What this proves:

* a new incarnation that passed validation and is SIGKILLed during its probation is
  rolled back: the old incarnation (kept ready) serves again, in the old env, the log
  row says ``rolled_back``; a client streaming writes with ids through the evolve, the
  switch, the crash and the rollback, and a slow write in flight on the new incarnation
  when it dies, lose nothing: every id is answered ok once, every effect is in the
  image once;
* three successful handovers and two failed ones (a package whose import raises, a
  package that is in no find-links folder, offline) while three clients write at a
  steady rate: every request answered ok, no error reply at all, every effect once;
* ``kill -9`` of the supervisor in the build, incarnate, validate and probation
  phases of a handover (found through the ``handover.phase`` events), each followed by
  ``batos up`` on the same home: the image is intact, exactly one incarnation serves,
  no process of the killed supervisor is left, and ``batos handovers`` says how the
  interrupted handover ended (``interrupted`` before the switch, ``completed`` after
  restart for a kill in probation), with the env in status matching that decision;
* SIGTERM while a handover's uv build runs stops ``batos up`` promptly (it does not wait
  for the build) and leaves no build process running.

``slowbuild`` (an sdist whose ``setup.py`` sleeps) keeps a build running as long as a
test needs it; a slow self-check on ``checks`` keeps a candidate in ``validate``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import zmq

from bridge import Client, RemoteError, Timeout
from bridge.codec import encode
from bridge.messages import EvolveRequest
from tests.conftest import wait_until
from tests.integration.handover_fixtures import (
    EVOLVE_TIMEOUT,
    SLOW_CHECK,
    SharedDirs,
    active,
    handover_rows,
    incarnation_processes,
    kill_process_groups,
    run_batos,
    shared_dirs,
    uv_config,
    uv_supervisor,
    wait_idle,
)
from tests.integration.supervisor_fixtures import (
    EventStream,
    Supervisor,
    Supervisors,
    alive,
    make_recorders,
    spin_count,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

REPLY_DEADLINE = 30.0  # s one id may take, resends included, before the test calls it lost
SLOW_RECORD = ("def slowRecord(self, i, k):\n    t = 0\n    for j in range(k):\n"
               "        t = t + j\n    self.seen.append(i)\n    self.n = self.n + 1\n"
               "    return self.n\n")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> SharedDirs:
    return shared_dirs(tmp_path_factory)


@pytest.fixture(scope="module")
def fsup(tmp_path_factory: pytest.TempPathFactory, dirs: SharedDirs) -> Iterator[Supervisor]:
    with uv_supervisor(tmp_path_factory.mktemp("handover-faults"), dirs) as supervisor:
        yield supervisor


def evolve(client: Client, dirs: SharedDirs, add: list[str], probation: float = 1.0) -> Any:
    return client.evolve(add=add, offline=True, find_links=[str(dirs.wheels)],
                         probation=probation, timeout=EVOLVE_TIMEOUT)


def other_greetlib(state: dict[str, Any]) -> list[str]:
    """greetlib 1.0, 1.1, 1.2 in an order whose first differs from the current env's."""
    versions = ["1.0", "1.1", "1.2"]
    current = state["env"]["packages"].get("greetlib")
    while versions[0] == current:
        versions = versions[1:] + versions[:1]
    return versions


def resend_until_answered(client: Client, target: str, selector: str, *args: Any,
                          request_id: str) -> tuple[str, Any]:
    """("ok", result) or (error type, message): resends by id on Timeout only."""
    deadline = time.monotonic() + REPLY_DEADLINE
    while True:
        try:
            return "ok", client.send(target, selector, *args, request_id=request_id)
        except RemoteError as exc:
            return exc.type, exc.message
        except Timeout:
            if time.monotonic() > deadline:
                return "lost", f"no reply within {REPLY_DEADLINE}s, resending by id"


class Writer:
    """A thread with its own client: ``record:`` with ids ``<prefix>-<i>`` on ``target``
    every ``interval`` s until stopped; an error reply or a lost id is a finding."""

    def __init__(self, sup: Supervisor, target: str, prefix: str, interval: float = 0.02):
        self.sup, self.target, self.prefix, self.interval = sup, target, prefix, interval
        self.replies: dict[int, Any] = {}
        self.problems: list[str] = []
        self.stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._paused = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.sup.new_client(timeout=2) as client:
                i = 0
                while not self.stop.is_set():
                    if not self._go.is_set():
                        self._paused.set()
                        self._go.wait()
                        self._paused.clear()
                        continue
                    kind, value = resend_until_answered(
                        client, self.target, "record:", i, request_id=f"{self.prefix}-{i}")
                    if kind == "ok":
                        self.replies[i] = value
                    else:
                        self.problems.append(f"{self.prefix}-{i}: {kind}: {value}")
                    i += 1
                    self.stop.wait(self.interval)  # the pace of the stream, not a readiness wait
        except Exception as exc:  # reported by the test thread
            self.problems.append(f"writer {self.prefix} crashed: {type(exc).__name__}: {exc}")

    def pause(self) -> None:
        """Return once the writer has nothing in flight and sends nothing more."""
        self._go.clear()
        assert self._paused.wait(timeout=REPLY_DEADLINE + 5), f"writer {self.prefix} never paused"

    def resume(self) -> None:
        self._go.set()

    def finish(self) -> None:
        self.stop.set()
        self._go.set()
        self.thread.join(timeout=REPLY_DEADLINE + 15)
        assert not self.thread.is_alive(), f"writer {self.prefix} did not finish"

    def check(self, client: Client) -> None:
        """Every id answered ok once, one execution each, each effect in the image once."""
        assert not self.problems, "\n".join(self.problems[:20])
        count = len(self.replies)
        assert count > 0
        assert sorted(self.replies) == list(range(count))
        assert sorted(self.replies.values()) == list(range(1, count + 1))
        assert sorted(client.send(self.target, "seen", timeout=30)) == list(range(count))
        assert client.send(self.target, "n") == count


def test_a_new_incarnation_that_dies_in_probation_is_rolled_back(fsup: Supervisor,
                                                                  dirs: SharedDirs) -> None:
    client = fsup.client
    before = wait_idle(fsup)
    old = active(before)
    make_recorders(client, ["crashrec", "crashslow"])
    client.send("crashslow", "defineMethod:source:", "slowRecord:k:", SLOW_RECORD)
    slow_k = spin_count(client, "crashslow", 4.0)
    writer = Writer(fsup, "crashrec", "crash").start()
    slow: dict[str, Any] = {}
    slow_sent = threading.Event()

    def slow_write() -> None:
        with fsup.new_client(timeout=2) as own:
            slow_sent.set()
            slow["reply"] = resend_until_answered(own, "crashslow", "slowRecord:k:", 1, slow_k,
                                                  request_id="crash-slow")

    slow_thread = threading.Thread(target=slow_write, daemon=True)
    try:
        reply = evolve(client, dirs, [f"greetlib=={other_greetlib(before)[0]}"], probation=8)
        assert reply["outcome"] == "switched"
        state = fsup.status()
        new = active(state)
        assert new["id"] != old["id"]
        assert new["env_id"] == reply["env_after"]["id"]
        assert state["handover"]["phase"] in ("drain", "probation")
        # the slow write alone in flight on the new incarnation, then the stream again
        writer.pause()
        idle = fsup.status()["routing"]["inflight"]
        slow_thread.start()
        assert slow_sent.wait(timeout=10)
        wait_until(lambda: fsup.status()["routing"]["inflight"] == idle + 1, timeout=10,
                   interval=0.01)
        writer.resume()
        resumed = len(writer.replies)
        wait_until(lambda: len(writer.replies) >= resumed + 3, timeout=10, interval=0.01)
        os.kill(new["pid"], signal.SIGKILL)

        def rolled_back() -> dict[str, Any] | None:
            now = fsup.status()
            return now if now["handover"] is None and now["active"] == old["id"] else None
        after = wait_until(rolled_back, timeout=30, interval=0.05)
        assert after["env"]["id"] == before["env"]["id"]
        assert active(after)["pid"] == old["pid"]
        assert active(after)["env_id"] == before["env"]["id"]
        assert [i["id"] for i in after["incarnations"]] == [old["id"]]
        assert client.send("genesis", "printString") is not None
        # the stream goes on (or the writer gives an id up as lost: reported below)
        answered = len(writer.replies)
        wait_until(lambda: len(writer.replies) >= answered + 20 or writer.problems,
                   timeout=REPLY_DEADLINE + 15)
    finally:
        writer.finish()
        slow_thread.join(timeout=REPLY_DEADLINE + 15)
    row = handover_rows(fsup.home)[-1]
    assert row["handover"] == reply["handover"]
    assert row["outcome"] == "rolled_back", row
    assert row["failed_phase"] in ("drain", "probation")
    assert "exited" in row["reason"]
    lost = list(writer.problems)
    if slow.get("reply") != ("ok", 1):
        lost.append(f"crash-slow (in flight on the killed incarnation): {slow.get('reply')}")
    assert not lost, "requests not answered ok across the crash and rollback:\n" + "\n".join(lost)
    assert client.send("crashslow", "seen") == [1]
    writer.check(client)


def test_writes_through_handovers_that_succeed_and_fail_get_no_error(fsup: Supervisor,
                                                                    dirs: SharedDirs) -> None:
    client = fsup.client
    state = wait_idle(fsup)
    names = [f"load{w}" for w in range(3)]
    make_recorders(client, names)
    writers = [Writer(fsup, name, name).start() for name in names]
    versions = other_greetlib(state)
    outcomes: list[tuple[str, str | None]] = []
    try:
        for step in range(5):
            wait_until(lambda: all(len(w.replies) >= 5 for w in writers), timeout=30)
            if step % 2 == 0:
                reply = evolve(client, dirs, [f"greetlib=={versions[step // 2]}"])
                assert reply["outcome"] == "switched"
                outcomes.append(("completed", None))
            else:
                add = ["boomlib==1.0"] if step == 1 else ["batos-no-such-lib==1.0"]
                with pytest.raises(RemoteError) as failed:
                    evolve(client, dirs, add)
                assert failed.value.type == "HandoverFailed"
                outcomes.append(("failed", "validate" if step == 1 else "build"))
            wait_idle(fsup)
    finally:
        for w in writers:
            w.finish()
    problems = [p for w in writers for p in w.problems]
    assert not problems, "error replies or lost ids during handovers:\n" + "\n".join(problems[:20])
    for w in writers:
        w.check(client)
    rows = handover_rows(fsup.home)[-5:]
    assert [(r["outcome"], r["failed_phase"]) for r in rows] == outcomes
    assert "batos-no-such-lib" in rows[3]["reason"]
    assert all(r["served"] > 0 for r in rows if r["outcome"] == "completed"), rows
    assert active(wait_idle(fsup))["packages"]["greetlib"] == versions[2]


# --- kill -9 of the supervisor inside a handover --------------------------------------------


@contextlib.contextmanager
def evolve_request(endpoint: str, add: list[str], dirs: SharedDirs,
                   probation: float) -> Iterator[None]:
    """An evolve request sent and never waited for (the supervisor will die)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(encode(EvolveRequest(id=f"evolve-{time.monotonic_ns()}", add=add, offline=True,
                                       find_links=[str(dirs.wheels)], probation=probation,
                                       who="test")))
        yield
    finally:
        sock.close(linger=0)
        ctx.term()


class EventWatch:
    """The ``handover`` topic of the event stream; ``wait_phase`` waits for a phase start."""

    def __init__(self, address: str) -> None:
        self.stream = EventStream(address, b"handover")

    def wait_phase(self, phase: str, timeout: float) -> dict[str, Any]:
        return self.stream.wait_for(
            lambda e: e["kind"] == "handover.phase" and e["data"].get("phase") == phase, timeout)

    def __enter__(self) -> EventWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def descendants(sup: Supervisor) -> list[psutil.Process]:
    assert sup.proc is not None
    try:
        return psutil.Process(sup.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cmdline(proc: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return proc.cmdline()
    return []


def build_running(sup: Supervisor) -> bool:
    """uv is installing slowbuild and its build backend runs (sleeping in setup.py)."""
    for proc in descendants(sup):
        line = cmdline(proc)
        if "install" in line and "slowbuild==1.0" in line and any(
                alive(child) for child in proc.children()):
            return True
    return False


def candidate_running(sup: Supervisor, serving: str) -> bool:
    for proc in descendants(sup):
        line = cmdline(proc)
        if "batos.root.incarnation" in line and serving not in line and alive(proc):
            return True
    return False


SCENARIOS = [
    # phase killed in, what evolve adds, probation, outcome after restart
    ("build", "slowbuild==1.0", 1.0, "interrupted"),
    ("incarnate", "greetlib==1.0", 1.0, "interrupted"),
    ("validate", "greetlib==1.1", 1.0, "interrupted"),
    ("probation", "greetlib==1.2", 60.0, "completed"),
]


def test_kill_9_of_the_supervisor_in_each_phase_of_a_handover(
        supervisors: Supervisors, dirs: SharedDirs) -> None:
    config = uv_config(dirs)
    sup = supervisors.start("up-0", config=config, env_mode="uv", timeout=300)
    home = sup.home
    make_recorders(sup.client, ["store"])
    problems: list[str] = []
    marks: dict[str, int] = {}
    orphans: list[psutil.Process] = []  # what each killed supervisor left: killed at the end
    try:
        for n, (phase, add, probation, expected) in enumerate(SCENARIOS, start=1):
            before, left = kill_in_phase(sup, n, phase, add, probation, dirs, marks)
            orphans.extend(left)
            sup = supervisors.start(f"up-{n}", config=config, env_mode="uv", home=home,
                                    timeout=120)
            check_recovery(sup, before, left, phase, expected, marks, problems)
        verified = run_batos("handovers", "--home", home, "--verify")
        assert verified.code == 0, verified
    finally:
        kill_process_groups(orphans)
    assert not problems, "\n".join(problems)


def kill_in_phase(sup: Supervisor, n: int, phase: str, add: str, probation: float,
                  dirs: SharedDirs, marks: dict[str, int],
                  ) -> tuple[dict[str, Any], list[psutil.Process]]:
    """Write a mark, start an evolve and SIGKILL the supervisor once it is in ``phase``:
    answers the status before, and the supervisor's descendants alive at the kill."""
    before = wait_idle(sup)
    marks[f"mark{n}"] = n
    sup.client.send("store", "setSlot:value:", f"mark{n}", n)
    if phase == "validate":  # a self-check that keeps the candidate in validate a while
        k = spin_count(sup.client, "store", 4.0)
        sup.client.send("checks", "defineMethod:source:", "checkSlowly", SLOW_CHECK.format(k=k))
    with EventWatch(before["supervisor"]["events"]) as events, evolve_request(
            sup.endpoint, [add], dirs, probation):
        events.wait_phase(phase, timeout=EVOLVE_TIMEOUT)
        if phase == "build":
            wait_until(lambda: build_running(sup), timeout=60, interval=0.05)
        elif phase == "incarnate":
            wait_until(lambda: candidate_running(sup, before["active"]), timeout=30,
                       interval=0.02)
        left = [p for p in descendants(sup) if alive(p)]
        sup.track()
        sup.expect_clean = False
        assert sup.proc is not None
        os.kill(sup.proc.pid, signal.SIGKILL)
        sup.proc.wait(timeout=10)
    return before, left


def check_recovery(sup: Supervisor, before: dict[str, Any], left: list[psutil.Process],
                   phase: str, expected: str, marks: dict[str, int],
                   problems: list[str]) -> None:
    """What the restarted supervisor must show; findings go to ``problems`` so that every
    phase is tried, and stray processes are killed so they cannot disturb the next one."""
    strays = [f"pid {p.pid} {' '.join(cmdline(p))[:160]}" for p in left if alive(p)]
    if strays:
        problems.append(f"kill -9 in {phase}: processes of the killed supervisor still "
                        "running after the next one serves:\n  " + "\n  ".join(strays))
        kill_process_groups(left)
    state = wait_idle(sup)
    incarnations = state["incarnations"]
    assert len(incarnations) == 1, incarnations
    assert incarnations[0]["role"] == "active", incarnations
    run = state["supervisor"]["events"].removeprefix("ipc://").removesuffix("/ev.sock")
    serving = [p.pid for p in incarnation_processes(run)]
    if serving != [active(state)["pid"]]:
        problems.append(f"kill -9 in {phase}: incarnation processes on this home: {serving}, "
                        f"serving: {active(state)['pid']}")
    for name, value in marks.items():
        assert sup.client.send("store", name) == value, f"{name} lost after kill in {phase}"
    sup.client.send("store", "bump")

    listed = run_batos("handovers", "--home", sup.home, "--json")
    assert listed.code == 0, listed
    row = listed.json()["handovers"][-1]
    env_before = before["env"]["id"]
    env_after = row["env_after"]["id"] if isinstance(row["env_after"], dict) else row["env_after"]
    kept = env_after if expected == "completed" else env_before
    if (row["outcome"], row["after_restart"]) != (expected, True):
        problems.append(f"kill -9 in {phase}: handovers row says {row['outcome']!r} "
                        f"(after_restart {row['after_restart']}), expected {expected!r}")
    if expected == "interrupted" and row["failed_phase"] != phase:
        problems.append(f"kill -9 in {phase}: the row names phase {row['failed_phase']!r}")
    if state["env"]["id"] != kept or active(state)["env_id"] != kept:
        problems.append(f"kill -9 in {phase}: serving env {state['env']['id']}, but the log "
                        f"decided {expected} (env before {env_before}, after {env_after})")
    if phase == "validate":
        sup.client.send("checks", "removeSlot:", "checkSlowly")


TERM_GRACE = 20.0  # s: batos up exits well within this after SIGTERM when nothing is stuck


def test_sigterm_during_a_build_stops_the_supervisor_promptly(
        supervisors: Supervisors, dirs: SharedDirs) -> None:
    """A graceful stop must not wait for a handover's uv build to finish (it may take up to
    ``env.build_timeout``); the build is abandoned and nothing of it is left running."""
    sup = supervisors.start("term", config=uv_config(dirs), env_mode="uv", timeout=300)
    assert sup.proc is not None
    build: list[psutil.Process] = []
    try:
        with evolve_request(sup.endpoint, ["slowbuild==1.0"], dirs, 1.0):
            wait_until(lambda: build_running(sup), timeout=60, interval=0.05)
            build = [p for p in descendants(sup) if "install" in cmdline(p)]
            started = time.monotonic()
            sup.sigterm()
            try:
                code: int | None = sup.proc.wait(timeout=TERM_GRACE)
            except subprocess.TimeoutExpired:
                code = None
                sup.expect_clean = False
                os.killpg(sup.proc.pid, signal.SIGKILL)
                sup.proc.wait(timeout=10)
        left = [f"pid {p.pid} {' '.join(cmdline(p))[:120]}" for p in build if alive(p)]
    finally:
        kill_process_groups(build)  # uv's group: its build backend too
    assert code == 0, (
        f"batos up did not exit within {TERM_GRACE:g}s of SIGTERM during a handover's build "
        f"(exit code {code}); its log says it stopped:\n{sup.tail(5)}")
    assert time.monotonic() - started < TERM_GRACE
    assert left == [], "the abandoned build left processes running"
