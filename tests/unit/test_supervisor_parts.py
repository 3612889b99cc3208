"""The supervisor's parts, put together without processes or sockets.

The real ``Frontend``, request handlers, ``Pool``, ``Poisoning`` and ``Evolution``
over a real ``RoutingTable``; only the sockets are a recorder (``Sockets`` with its
three I/O primitives replaced), and an incarnation's process is a record with a
return code. Also the shape: every request kind has a handler, nothing in
``supervisor/`` imports the ``Supervisor`` back, the handover's error is the
supervisor's.
"""

from __future__ import annotations

import ast
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.codec import encode, unpack
from bridge.messages import Reply, Request
from envs import BuildWatch
from lexicon.frames import REQUEST
from supervisor.config import Config, Home
from supervisor.desk import Desk
from supervisor.errors import RequestRefused, SupervisorError
from supervisor.evolution import Evolution
from supervisor.frontend import HANDLERS, Frontend
from supervisor.handover import HandoverFailed
from supervisor.handover_log import HandoverLog
from supervisor.incarnations import EnvInfo, Incarnation
from supervisor.poisoning import Poisoning
from supervisor.pool import Pool
from supervisor.routing import RoutingTable
from supervisor.sockets import Sockets

ROOT = Path(__file__).resolve().parents[2]
CLIENT = (b"client-a",)


class Recorder(Sockets):
    """The sockets, less the sockets: what would be sent is kept."""

    def __init__(self, home: Home, config: Config) -> None:
        super().__init__(home, config)
        self.replies: list[tuple[tuple[bytes, ...], dict[str, Any]]] = []
        self.sent: list[tuple[str, list[bytes]]] = []
        self.published: list[tuple[str, dict[str, Any]]] = []

    def reply(self, envelope: tuple[bytes, ...], reply: Reply | bytes) -> None:
        self.replies.append((envelope, unpack(reply if isinstance(reply, bytes) else encode(reply))))

    def send(self, ident: str | bytes, frames: list[bytes]) -> None:
        self.sent.append((ident if isinstance(ident, str) else ident.decode(), frames))

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.published.append((kind, data))


class Parts:
    def __init__(self, root: Path) -> None:
        self.home = Home.at(root / "home")
        self.home.prepare()
        self.config = config = Config.model_validate({"max_restarts": 5})
        self.sockets = Recorder(self.home, config)
        self.routing = RoutingTable(max_pending=config.max_pending)
        self.poisoning = Poisoning(self.routing, self.sockets, drain=lambda now: None)
        self.worker = ThreadPoolExecutor(max_workers=1)
        watch = BuildWatch(started=lambda pid: None, ended=lambda pid: None)
        self.notifier = SimpleNamespace(ready=lambda text: None, status=lambda text: None)
        self.hlog = HandoverLog(self.home.logs / "handovers.jsonl")
        self.pool = Pool(self.home, config, routing=self.routing, sockets=self.sockets,
                         poisoning=self.poisoning, notifier=self.notifier,  # type: ignore[arg-type]
                         children=SimpleNamespace(remove=lambda pid: None),  # type: ignore[arg-type]
                         zeo=SimpleNamespace(address="unused"),  # type: ignore[arg-type]
                         worker=self.worker, build_watch=watch)
        self.evolution = Evolution(self.home, config, pool=self.pool, routing=self.routing,
                                   sockets=self.sockets, hlog=self.hlog,
                                   notifier=self.notifier,  # type: ignore[arg-type]
                                   worker=self.worker, build_watch=watch)
        self.pool.handovers = self.evolution
        self.frontend = Frontend(Desk(
            home=self.home, config=config, sockets=self.sockets, routing=self.routing,
            pool=self.pool, evolution=self.evolution, hlog=self.hlog,
            zeo=SimpleNamespace(pid=None, address="unused", restarts=0),  # type: ignore[arg-type]
            vllm=SimpleNamespace(),  # type: ignore[arg-type]
            started=0.0))

    def ask(self, now: float = 1.0, **request: Any) -> dict[str, Any] | None:
        """``request`` from a client; answers the reply it got at once (None: none yet)."""
        before = len(self.sockets.replies)
        self.frontend.receive(0, [*CLIENT, encode({"v": 1, **request})], now)
        if len(self.sockets.replies) == before:
            return None
        envelope, reply = self.sockets.replies[-1]
        assert envelope == (b"\x00", *CLIENT)
        return reply

    def close(self) -> None:
        self.hlog.close()
        self.worker.shutdown(wait=True)

    def incarnation(self, ident: str, *, state: str = "ready") -> Incarnation:
        proc = SimpleNamespace(pid=4242, returncode=None, poll=lambda: None)
        inc = Incarnation(id=ident, proc=proc, env=EnvInfo(id="e1", python="python"),  # type: ignore[arg-type]
                          started_at=0.0, state=state)
        self.pool.incarnations[ident] = inc
        return inc

    def serve(self, ident: str) -> Incarnation:
        inc = self.incarnation(ident)
        self.routing.switch(ident)
        self.pool.state, self.pool.env = "serving", inc.env
        return inc


@pytest.fixture
def parts(tmp_path: Path) -> typing.Iterator[Parts]:
    made = Parts(tmp_path)
    try:
        yield made
    finally:
        made.close()


# --- the shape ----------------------------------------------------------------------------


def test_every_request_kind_has_a_handler():
    union = typing.get_args(Request)[0]
    kinds = {model.model_fields["kind"].default for model in typing.get_args(union)}
    assert kinds == set(HANDLERS)


def test_no_supervisor_module_imports_the_supervisor_back():
    for path in (ROOT / "supervisor").rglob("*.py"):
        if path.name == "server.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
                assert not any(n.endswith("server") or n.endswith(".server.Supervisor")
                               for n in names), f"{path.relative_to(ROOT)} imports the server"


def test_the_supervisors_errors_have_one_root():
    assert issubclass(HandoverFailed, SupervisorError)
    assert issubclass(RequestRefused, SupervisorError)
    failed = HandoverFailed("validate", "a probe answered differently")
    assert (failed.phase, failed.reason) == ("validate", "a probe answered differently")


# --- requests -----------------------------------------------------------------------------


def test_a_bad_frame_is_answered_and_a_ping_says_the_state(parts):
    parts.frontend.receive(0, [*CLIENT, b"\xc1 not msgpack"], 1.0)
    _, reply = parts.sockets.replies[-1]
    assert reply["ok"] is False
    assert reply["error"]["where"] == "supervisor"
    pong = parts.ask(kind="ping", id="p1")
    assert pong is not None
    assert pong["ok"] is True
    assert pong["result"]["pong"] is True
    assert pong["result"]["state"] == "starting"


def test_sends_wait_while_starting_and_are_refused_while_degraded(parts):
    assert parts.ask(kind="send", id="r1", target="genesis", selector="printString") is None
    assert list(parts.routing.pending) == ["r1"]
    parts.pool.degrade("the env could not be built")
    _, dropped = parts.sockets.replies[-1]
    assert dropped["id"] == "r1"
    assert dropped["error"]["type"] == "Unavailable"
    assert ("supervisor.degraded", {"reason": "the env could not be built"}) in parts.sockets.published
    refused = parts.ask(kind="send", id="r2", target="genesis", selector="printString")
    assert refused is not None
    assert refused["error"]["type"] == "Unavailable"
    assert "degraded: the env could not be built" in refused["error"]["message"]


def test_a_send_goes_to_the_active_incarnation_as_the_clients_bytes(parts):
    parts.serve("inc-1")
    assert parts.ask(kind="send", id="r1", target="genesis", selector="printString") is None
    (ident, frames), = parts.sockets.sent
    assert ident == "inc-1"
    assert frames[0] == REQUEST
    assert unpack(frames[1])["id"] == "r1"


def test_a_handover_is_refused_unless_one_serves_none_runs_and_the_supervisor_stays(parts):
    refused = parts.ask(kind="evolve", id="e1", add=["six"])
    assert refused is not None
    assert refused["error"]["type"] == "Unavailable"
    assert "no incarnation is serving (state starting)" in refused["error"]["message"]
    parts.serve("inc-1")
    parts.evolution.current = SimpleNamespace(  # type: ignore[assignment]
        id="h-1", kind="evolve", phase="validate", who="ops", request="e0")
    busy = parts.ask(kind="rollback", id="e2")
    assert busy is not None
    assert busy["error"]["type"] == "Busy"
    assert "handover h-1 (evolve, phase validate, asked by ops)" in busy["error"]["message"]
    parts.pool.state = "stopping"
    stopping = parts.ask(kind="evolve", id="e3")
    assert stopping is not None
    assert stopping["error"]["message"] == "the supervisor is shutting down"


# --- the pool and poison ------------------------------------------------------------------


def test_a_crash_requeues_then_a_second_death_poisons_the_request_and_is_explained(parts):
    first = parts.serve("inc-1")
    parts.ask(kind="send", id="r1", target="genesis", selector="crash")
    first.proc.returncode = -11
    parts.pool.on_exit(first, now=10.0)
    assert list(parts.routing.pending) == ["r1"]  # requeued, not answered
    assert parts.pool.state == "restarting"
    assert parts.pool.policy.recent(10.0) == 1
    second = parts.incarnation("inc-2")
    parts.pool.on_ready(second, SimpleNamespace(  # type: ignore[arg-type]
        packages={}, python="3", quarantined=None, env_id="e1", lanes=0), now=11.0)
    assert parts.pool.state == "serving"
    assert parts.routing.inflight["r1"].incarnation == "inc-2"
    second.proc.returncode = -11
    parts.pool.on_exit(second, now=12.0)
    _, poisoned = parts.sockets.replies[-1]
    assert poisoned["id"] == "r1"
    assert poisoned["error"]["type"] == "PoisonMessage"
    assert "crash" in poisoned["error"]["message"]
    assert "-11 SIGSEGV" in poisoned["error"]["message"]
    assert parts.pool.policy.recent(12.0) == 0  # explained, and the first death pardoned
    kinds = [kind for kind, _ in parts.sockets.published]
    assert kinds.count("incarnation.exited") == 2
    assert "supervisor.poisoned" in kinds
