"""Evolve and rollback by request id, without processes: the reply recorded and rebuilt.

A real ``Handover`` driven through its phases by a host that records what it is
asked (no pool, no sockets): the reply it gives equals the one the handover log
rebuilds (``handover_requests``), for a switch, a failure, a switch followed by a
rollback in probation, and a handover a restarted supervisor recovered. Then the
handover desk behind the real request handlers, its worker held (a build is a future
the test settles): a resend joins the running handover (one reply per asker, one
handover), a resend after the end gets the same reply, also from a new desk over the
same log (a restart), an ``unchanged`` evolve is recorded, another id is ``Busy``,
the other kind is refused. And the index: old logs, eviction, records that are no
handover. Every ``handover.*`` event names its handover and request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ormsgpack
import pytest

from bridge.codec import encode
from bridge.messages import EvolveRequest, RollbackRequest
from envs import BuildWatch, EnvError, EnvSpec
from supervisor import handover_report, request_evolve, request_rollback
from supervisor.config import Config, Home
from supervisor.desk import Asked, Desk
from supervisor.evolution import Evolution
from supervisor.handover import PROBES, Handover
from supervisor.handover_entries import ANSWERED, COMPLETED, RECOVERED, REQUESTED, read_entries
from supervisor.handover_log import HandoverLog
from supervisor.handover_requests import RequestIndex, replay
from supervisor.incarnations import EnvInfo, Incarnation, current_spec
from supervisor.poisoning import Poisoning
from supervisor.pool import Pool
from supervisor.routing import RoutingTable
from tests.unit.test_supervisor_parts import Recorder

CONFIG = Config.model_validate({"start_timeout": 5, "validate_timeout": 5, "stop_grace": 1,
                                "heartbeat_timeout": 5})
BEFORE = EnvInfo(id="e-before", python="3.11", packages={"zodb": "6.0"}, path="/envs/e-before",
                 spec={"python": "3.11", "requirements": ["zodb"]})
AFTER = EnvInfo(id="e-after", python="3.11", packages={"zodb": "6.0", "greetlib": "1.0"},
                path="/envs/e-after", spec={"python": "3.11", "requirements": ["zodb", "greetlib"]})
VALIDATION = {"objects": 12, "digest": "ab" * 32, "imports": {"greetlib": "ok"},
              "checks": {"checkGate": "ok"}, "genesis": [], "failures": [], "ratio": 0.25}


def wire(ok: bool, body: dict[str, Any]) -> dict[str, Any]:
    """What a client decodes: the reply through msgpack (tuples become lists, as in the log)."""
    return {"ok": ok, "body": ormsgpack.unpackb(ormsgpack.packb(body))}


class Host:
    """A ``HandoverHost`` that does what it is told on nothing, and remembers it."""

    config = CONFIG

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.probes: list[str] = []
        self.current = "inc-old"

    def env(self) -> EnvInfo:
        return BEFORE

    def active(self) -> str | None:
        return self.current

    def served(self) -> int:
        return 0

    def in_flight(self, ident: str) -> int:
        return 0

    def publish(self, kind: str, **data: Any) -> None:
        self.events.append((kind, data))

    def start_build(self, handover: Handover) -> None:
        pass

    def spawn_candidate(self, env: EnvInfo) -> str:
        return "inc-new"

    def send_validate(self, *args: Any) -> None:
        pass

    def send_probe(self, ident: str, rid: str, *args: Any) -> None:
        self.probes.append(rid)

    def switch_to(self, candidate: str, env: EnvInfo) -> str | None:
        previous, self.current = self.current, candidate
        return previous

    def switch_back(self, old: str | None, env: EnvInfo | None, *, failed: str | None) -> None:
        self.current = old

    def retire(self, ident: str) -> None:
        pass

    def discard(self, ident: str) -> None:
        pass

    def prune_envs(self) -> None:
        pass

    def ended(self, handover: Handover) -> None:
        pass


@pytest.fixture
def hlog(tmp_path: Path) -> Iterator[HandoverLog]:
    log = HandoverLog(tmp_path / "handovers.jsonl")
    try:
        yield log
    finally:
        log.close()


def run_to_validation(hlog: HandoverLog, host: Host, request: str,
                      replies: list[tuple[bool, dict[str, Any]]], *, ok: bool = True) -> Handover:
    """A handover for ``request`` built, started, validated and probed, not yet judged."""
    h = Handover(host=host, log=hlog, kind="evolve", spec_after=EnvSpec(python="3.11"),
                 reply=lambda ok, body: replies.append((ok, body)), who="ops", request=request,
                 add=["greetlib==1.0"], probation=0.5)
    h.begin()
    h.built(AFTER)
    h.on_ready("inc-new")
    h.on_validated("inc-new", ok, dict(VALIDATION, failures=[] if ok else ["checkGate failed"]))
    for rid in list(host.probes):
        h.on_probe(rid, {"ok": True, "result": "same"})
    return h


def rebuilt(hlog: HandoverLog, request: str) -> dict[str, Any]:
    """The reply to ``request`` as a supervisor started now would rebuild it."""
    index = RequestIndex.scan(hlog.path)
    seen = index.find(request)
    assert seen is not None, f"{request} not in the log"
    recorded = index.recorded(seen)
    return wire(recorded.ok, recorded.body)


# --- the reply, recorded and rebuilt --------------------------------------------------------


def test_the_switch_reply_is_rebuilt_exactly_from_the_log(hlog):
    host, replies = Host(), []
    h = run_to_validation(hlog, host, "req-1", replies)
    assert len(host.probes) == 2 * len(PROBES)
    h.step(h.phase_started + 0.01)
    assert h.phase == "drain"
    (ok, body), = replies
    assert ok
    assert (body["outcome"], body["handover"]) == ("switched", h.id)
    assert set(body["timings"]) == {"build", "incarnate", "validate", "switch"}
    assert rebuilt(hlog, "req-1") == wire(ok, body)
    while not h.done:  # drain, probation (health probes answered), retire
        h.step(h.phase_started + 1.0)
        if h.health_probe:
            h.on_probe(h.health_probe, {"ok": True})
    assert h.outcome == "completed"
    assert rebuilt(hlog, "req-1") == wire(ok, body), "the end of probation changed the record"
    answered = [e for e in read_entries(hlog.path) if e["event"] == ANSWERED]
    assert [(e["data"]["request"], e["data"]["ok"]) for e in answered] == [("req-1", True)]
    assert read_entries(hlog.path)[0]["data"]["request"] == "req-1"


def test_a_failure_is_rebuilt_as_the_same_failure(hlog):
    host, replies = Host(), []
    h = run_to_validation(hlog, host, "req-2", replies, ok=False)
    h.step(h.phase_started + 0.01)
    (ok, body), = replies
    assert not ok
    assert (body["phase"], body["handover"]) == ("validate", h.id)
    assert "checkGate failed" in body["reason"]
    assert rebuilt(hlog, "req-2") == wire(ok, body)


def test_a_rollback_in_probation_keeps_the_reply_the_client_got(hlog):
    host, replies = Host(), []
    h = run_to_validation(hlog, host, "req-3", replies)
    h.step(h.phase_started + 0.01)
    h.on_exit("inc-new", -9)
    assert h.outcome == "rolled_back"
    assert rebuilt(hlog, "req-3") == wire(*replies[0])


def test_every_handover_event_names_its_handover_and_request(hlog):
    host, replies = Host(), []
    h = run_to_validation(hlog, host, "req-4", replies)
    h.step(h.phase_started + 0.01)
    h.on_exit("inc-new", -9)
    kinds = [kind for kind, _ in host.events]
    assert {"handover.phase", "handover.switched", "handover.rolled_back",
            "handover.completed"} <= set(kinds)
    for kind, data in host.events:
        assert kind.startswith("handover.")
        assert (data["handover"], data["request"]) == (h.id, "req-4"), (kind, data)


def test_a_handover_a_restart_recovered_answers_how_it_ended(hlog):
    host, replies = Host(), []
    run_to_validation(hlog, host, "req-5", replies)  # the supervisor dies in validate
    found = handover_report.interrupted(hlog.path)
    assert found is not None
    assert found["action"] == "revert"
    hid = found["handover"]
    hlog.append(hid, RECOVERED, found=found, action="revert")
    hlog.append(hid, COMPLETED, outcome="interrupted", after_restart=True, reason=found["why"],
                failed_phase=found["phase"])
    again = rebuilt(hlog, "req-5")
    assert again["ok"] is False
    assert (again["body"]["handover"], again["body"]["phase"]) == (hid, "validate")
    assert again["body"]["reason"].startswith("interrupted: the supervisor stopped")


def test_a_switch_whose_answer_was_never_logged_is_rebuilt_as_the_switch(hlog):
    entries = [("requested", {"kind": "evolve", "request": "r", "env_before": {"id": "a"}}),
               ("phase.end", {"phase": "build", "duration": 1.5, "env": {"id": "b"}}),
               ("phase.end", {"phase": "validate", "duration": 2.0, "validation": {"ok": True}}),
               ("switched", {"old": "i1", "new": "i2"})]
    for event, data in entries:
        hlog.append("h-1", event, **data)
    recorded = replay("evolve", read_entries(hlog.path))
    assert recorded.ok
    assert recorded.body["env_before"] == {"id": "a"}
    assert recorded.body["env_after"] == {"id": "b"}
    assert recorded.body["timings"] == {"build": 1.5, "validate": 2.0}
    assert recorded.body["total"] >= 0


# --- the index ------------------------------------------------------------------------------


def test_an_old_log_has_no_request_ids_and_reports_as_before(hlog):
    hlog.append("h-old", REQUESTED, kind="evolve", who="ops", add=["six"], remove=[])
    hlog.append("h-old", COMPLETED, outcome="failed", failed_phase="build", reason="no six")
    assert len(RequestIndex.scan(hlog.path)) == 0
    row, = handover_report.summarize(hlog.path)
    assert (row["handover"], row["outcome"], row["request"]) == ("h-old", "failed", None)


def test_ids_pushed_out_of_memory_are_still_found_in_the_log(hlog):
    index = RequestIndex(hlog.path, capacity=2)
    for n in range(5):
        offset = hlog.size
        hlog.append(f"h-{n}", REQUESTED, kind="rollback", request=f"r{n}")
        hlog.append(f"h-{n}", COMPLETED, outcome="failed")
        index.note(f"r{n}", "rollback", f"h-{n}", offset)
    assert (len(index), index.evicted) == (2, 3)
    for n in range(5):
        seen = index.find(f"r{n}")
        assert seen is not None
        assert (seen.handover, seen.kind) == (f"h-{n}", "rollback")
        assert index.recorded(seen).body["handover"] == f"h-{n}"
    assert index.find("never") is None
    scanned = RequestIndex.scan(hlog.path, capacity=2)
    assert scanned.find("r0") == index.find("r0")


def test_an_unchanged_record_is_no_handover(hlog):
    hlog.append("u-1", "unchanged", request="r1", kind="evolve", env={"id": "e"}, message="m")
    assert handover_report.summarize(hlog.path) == []
    assert handover_report.interrupted(hlog.path) is None
    assert rebuilt(hlog, "r1") == wire(True, {"outcome": "unchanged", "env": {"id": "e"},
                                              "message": "m"})


# --- the handover desk behind the request handlers ------------------------------------------


class Held(Executor):
    """The supervisor's worker thread, held: each job is a future the test settles."""

    def __init__(self) -> None:
        self.jobs: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        job: Future[Any] = Future()
        self.jobs.append(job)
        return job


class Desked:
    """The handover desk and the request handlers over a real log, pool and routing table."""

    def __init__(self, root: Path, hlog: HandoverLog | None = None) -> None:
        self.home = Home.at(root / "home")
        self.home.prepare()
        self.config = config = Config.model_validate({"env": {"mode": "uv"}})
        self.sockets = Recorder(self.home, config)
        self.routing = RoutingTable(max_pending=config.max_pending)
        self.worker = Held()
        self.hlog = hlog or HandoverLog(self.home.logs / "handovers.jsonl")
        notifier = SimpleNamespace(ready=lambda text: None, status=lambda text: None)
        watch = BuildWatch(started=lambda pid: None, ended=lambda pid: None)
        self.pool = Pool(self.home, config, routing=self.routing, sockets=self.sockets,
                         poisoning=Poisoning(self.routing, self.sockets, drain=lambda now: None),
                         notifier=notifier,  # type: ignore[arg-type]
                         children=SimpleNamespace(remove=lambda pid: None),  # type: ignore[arg-type]
                         zeo=SimpleNamespace(address="unused"),  # type: ignore[arg-type]
                         worker=self.worker, build_watch=watch)
        self.evolution = Evolution(self.home, config, pool=self.pool, routing=self.routing,
                                   sockets=self.sockets, hlog=self.hlog,
                                   notifier=notifier,  # type: ignore[arg-type]
                                   worker=self.worker, build_watch=watch)
        self.evolution.recover_handover()
        self.desk = Desk(home=self.home, config=config, sockets=self.sockets,
                         routing=self.routing, pool=self.pool, evolution=self.evolution,
                         hlog=self.hlog, zeo=SimpleNamespace(),  # type: ignore[arg-type]
                         vllm=SimpleNamespace(), started=0.0)  # type: ignore[arg-type]
        spec = current_spec(config, self.home)
        assert spec is not None
        self.spec = spec
        proc = SimpleNamespace(pid=4242, returncode=None, poll=lambda: None)
        env = EnvInfo(id=spec.id, python=spec.python, spec=spec.to_dict())
        inc = Incarnation(id="inc-1", proc=proc, env=env,  # type: ignore[arg-type]
                          started_at=0.0, state="ready")
        self.pool.incarnations["inc-1"] = inc
        self.routing.switch("inc-1")
        self.pool.state, self.pool.env = "serving", env

    def ask(self, request: Any, client: bytes = b"a") -> list[dict[str, Any]]:
        """The replies ``client``'s request got at once."""
        before = len(self.sockets.replies)
        handler = {"evolve": request_evolve.handle, "rollback": request_rollback.handle}
        handler[request.kind](self.desk, Asked(request, (b"\x00", client), encode(request), 1.0))
        return [reply for _, reply in self.sockets.replies[before:]]

    def replies_to(self, client: bytes) -> list[dict[str, Any]]:
        return [reply for envelope, reply in self.sockets.replies if envelope[-1] == client]

    def handovers(self) -> list[dict[str, Any]]:
        return handover_report.summarize(self.hlog.path)


@pytest.fixture
def desked(tmp_path: Path) -> Iterator[Desked]:
    made = Desked(tmp_path)
    try:
        yield made
    finally:
        made.hlog.close()


def evolve(rid: str, *add: str) -> EvolveRequest:
    return EvolveRequest(id=rid, add=list(add), offline=True)


def test_a_resend_joins_the_running_handover_and_later_gets_its_reply(desked, tmp_path):
    assert desked.ask(evolve("E1", "six"), b"a") == []
    running = desked.evolution.current
    assert running is not None
    assert running.request == "E1"
    assert desked.ask(evolve("E1", "six"), b"b") == []  # another client joins
    assert desked.ask(evolve("E1", "six"), b"a") == []  # the same one twice: answered once
    busy, = desked.ask(evolve("E2", "six"), b"c")
    assert busy["error"]["type"] == "Busy"
    other_kind, = desked.ask(RollbackRequest(id="E1"), b"c")
    assert other_kind["error"]["type"] == "InvalidRequest"
    assert "'E1' was a evolve" in other_kind["error"]["message"]

    desked.worker.jobs[0].set_exception(EnvError("no version of six in the find-links"))
    desked.evolution.step(2.0)
    first, = desked.replies_to(b"a")
    joined, = desked.replies_to(b"b")
    assert first == joined
    assert first["error"]["type"] == "HandoverFailed"
    assert first["error"]["message"] == (f"phase build failed: no version of six in the "
                                         f"find-links (handover {running.id})")
    again, = desked.ask(evolve("E1", "six"), b"d")
    assert again == first
    assert len(desked.worker.jobs) == 1
    assert len(desked.handovers()) == 1

    restarted = Desked(tmp_path / "restart", hlog=desked.hlog)  # a new desk over the same log
    again, = restarted.ask(evolve("E1", "six"), b"e")
    assert again == first
    assert restarted.worker.jobs == []
    assert restarted.evolution.current is None


def test_the_events_of_a_desks_handover_name_the_request(desked):
    desked.ask(evolve("E3", "six"), b"a")
    desked.worker.jobs[0].set_exception(EnvError("offline"))
    desked.evolution.step(2.0)
    events = [(k, d) for k, d in desked.sockets.published if k.startswith("handover.")]
    assert [k for k, _ in events] == ["handover.phase", "handover.completed"]
    assert all(d["request"] == "E3" and d["handover"].startswith("h-") for _, d in events)
    assert desked.evolution.describe() is None


def test_an_unchanged_evolve_is_recorded_and_answers_the_same_after_the_env_changed(
        desked, tmp_path):
    first, = desked.ask(evolve("U1"), b"a")
    assert first["ok"] is True
    assert first["result"]["outcome"] == "unchanged"
    assert desked.ask(evolve("U1"), b"b") == [first]
    desked.pool.env = EnvInfo(id="another", python="3.11")  # a later handover changed it
    assert desked.ask(evolve("U1"), b"c") == [first]
    assert desked.evolution.current is None
    assert desked.worker.jobs == []
    restarted = Desked(tmp_path / "restart", hlog=desked.hlog)
    restarted.pool.env = EnvInfo(id="another", python="3.11")
    assert restarted.ask(evolve("U1"), b"d") == [first]
    assert restarted.evolution.current is None
    assert desked.handovers() == []


def test_a_refused_request_is_not_recorded(desked):
    desked.pool.state = "stopping"
    refused, = desked.ask(evolve("R1", "six"), b"a")
    assert refused["error"]["type"] == "Unavailable"
    desked.pool.state = "serving"
    assert desked.ask(evolve("R1", "six"), b"a") == []  # judged anew: a handover starts
    assert desked.evolution.current is not None


def test_a_recovered_handover_is_published_with_no_request(tmp_path):
    home = Home.at(tmp_path / "home")
    home.prepare()
    with HandoverLog(home.logs / "handovers.jsonl") as log:
        log.append("h-dead", REQUESTED, kind="evolve", request="R9", env_before=None)
        log.append("h-dead", "phase.start", phase="build")
    desked = Desked(tmp_path)
    try:
        desked.evolution.step(1.0)
        (kind, data), = [(k, d) for k, d in desked.sockets.published if k.startswith("handover.")]
        assert kind == "handover.completed"
        assert (data["handover"], data["request"], data["outcome"]) == ("h-dead", "", "interrupted")
        again, = desked.ask(evolve("R9", "six"))
        assert again["error"]["type"] == "HandoverFailed"
        assert "phase build failed: interrupted" in again["error"]["message"]
    finally:
        desked.hlog.close()


def test_only_the_probes_a_handover_sent_are_its_own_a_clients_probe_id_is_the_clients(hlog):
    """A client may use any id: ``probe-...`` or ``health-...`` from a client during a
    handover still reaches the client (the match is exact, not by prefix)."""
    host, replies = Host(), []
    h = Handover(host=host, log=hlog, kind="evolve", spec_after=EnvSpec(python="3.11"),
                 reply=lambda ok, body: replies.append((ok, body)), who="ops", request="req-p",
                 add=["greetlib==1.0"], probation=0.5)
    h.begin()
    h.built(AFTER)
    h.on_ready("inc-new")
    sent = list(host.probes)
    assert sent
    assert all(h.owns_probe(rid) for rid in sent)
    for rid in (f"probe-{h.id}-99-candidate", "probe-1", "health-1", "client-1"):
        assert not h.owns_probe(rid), rid
    for rid in sent:  # answered: still its own (a late duplicate is not a client's reply)
        h.on_probe(rid, {"ok": True, "result": "same"})
        assert h.owns_probe(rid)
