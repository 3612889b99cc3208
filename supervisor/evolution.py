"""The handover desk: evolve/rollback admitted and run one at a time, over the pool.

``Evolution`` is the object the loop calls about handovers: ``admit`` (may a
handover start now, and from which spec), ``start``, ``step`` (the loop's timer:
the build's result, then the running ``Handover``'s own timers), the backend's
news (``on_ready``, ``on_validated``, ``on_probe``, ``on_exit``; the pool calls
the first and last as its ``HandoverHooks``) and ``recover_handover`` before the
loop starts. It is also the ``HandoverHost`` a ``Handover`` acts through: it spawns
the candidate in the pool, sends ``Validate`` and the probes on the sockets,
switches the routing table and back, retires the old incarnation and prunes old
envs. ``current`` is the evolution lock: one handover at a time; a second request is
refused ``Busy`` naming the one running.

Idempotent by request id (``recall``, asked before ``admit``): a resend of the
running handover's request id joins it (every asker gets the one reply, once per
envelope); a resend of an id already answered gets that reply again, rebuilt from
the handover log (``handover_requests.RequestIndex``, built at start), also after
a restart; a seen id never starts a second handover. An evolve whose spec already
serves is answered ``unchanged`` and recorded too (no handover).

Runs in the loop's thread; the only blocking work (the uv build) goes to the
supervisor's worker thread, whose future ``step`` polls.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future
from typing import Any

from pydantic import BaseModel

from bridge.codec import decode_reply, encode
from bridge.errors import ProtocolError
from bridge.messages import SendRequest, Stop, Validate
from envs import BuildWatch, EnvSpec
from lexicon.frames import CONTROL, REQUEST

from . import generations, process
from .config import Config, Home
from .errors import HomeError, RequestRefused
from .handover import Handover
from .handover_entries import UNCHANGED
from .handover_log import HandoverLog
from .handover_requests import RequestIndex
from .incarnations import EnvInfo, build, current_spec, save_current_spec
from .notify import Notifier
from .pool import Pool
from .routing import RoutingTable
from .sockets import Sockets

__all__ = ["Evolution"]

log = logging.getLogger("batos.supervisor.evolution")

#: how a handover's reply is given: (ok, the reply's result or the failure's details)
Answer = Callable[[bool, dict[str, Any]], None]


class Evolution:
    def __init__(self, home: Home, config: Config, *, pool: Pool, routing: RoutingTable,
                 sockets: Sockets, hlog: HandoverLog, notifier: Notifier, worker: Executor,
                 build_watch: BuildWatch) -> None:
        self.home = home
        self.config = config
        self.pool = pool
        self.routing = routing
        self.sockets = sockets
        self.hlog = hlog
        self.notifier = notifier
        self.worker = worker
        self.build_watch = build_watch
        #: the handover running (the evolution lock)
        self.current: Handover | None = None
        #: how to answer each asker of the running handover's request, by envelope
        self._askers: dict[Hashable, Answer] = {}
        self._requests: RequestIndex | None = None
        #: a handover recovered at start, published once the loop runs
        self._recovered: dict[str, Any] | None = None
        self._build_job: Future[EnvInfo] | None = None

    # --- the loop asks ----------------------------------------------------------------

    def recover_handover(self) -> dict[str, Any] | None:
        """At start, before any incarnation: finish or revert what a previous supervisor
        left unfinished (``generations.recover``); then index the requests the log records."""
        self._recovered = generations.recover(self.config, self.home, self.hlog)
        self._requests = RequestIndex.scan(self.hlog.path)
        return self._recovered

    @property
    def requests(self) -> RequestIndex:
        """The request ids the handover log records (read once, then kept up to date)."""
        if self._requests is None:
            self._requests = RequestIndex.scan(self.hlog.path)
        return self._requests

    def recall(self, request: str, kind: str, asker: Hashable, answer: Answer) -> bool:
        """A request id seen before is answered as it was (or, running, will be): True.
        False: never seen, the caller may start a handover. ``RequestRefused`` when the
        id was a request of the other kind, or the log cannot be read."""
        h = self.current
        if h is not None and h.request == request:
            _same_kind(request, h.kind, kind, h.id)
            if h.answered is not None:  # answered at the switch; probation goes on
                answer(*h.answered)
            else:
                self._askers.setdefault(asker, answer)
            return True
        try:
            seen = self.requests.find(request)
            if seen is None:
                return False
            _same_kind(request, seen.kind, kind, seen.handover)
            recorded = self.requests.recorded(seen)
        except HomeError as exc:
            raise RequestRefused("Unavailable", f"cannot look up request {request!r}: {exc}") from exc
        answer(recorded.ok, recorded.body)
        return True

    def admit(self, kind: str = "evolve") -> EnvSpec:
        """The spec a ``kind`` handover starts from; ``RequestRefused`` when one may not
        start now."""
        if self.pool.state == "stopping":
            raise RequestRefused("Unavailable", "the supervisor is shutting down")
        if self.current is not None:
            h = self.current
            raise RequestRefused("Busy", f"handover {h.id} ({h.kind}, phase {h.phase}, asked by "
                                 f"{h.who or 'unknown'}) is running; send again when it has ended")
        if self.pool.state != "serving" or self.pool.env is None:
            raise RequestRefused("Unavailable", f"no incarnation is serving (state {self.pool.state}); "
                                 "a handover needs a live incarnation to hand over from")
        try:
            spec = current_spec(self.config, self.home)
        except Exception as exc:
            raise RequestRefused("InvalidRequest", str(exc)) from exc
        if spec is None:
            raise RequestRefused("InvalidRequest", f"{kind} needs env.mode = 'uv': incarnations now "
                                 "run on the supervisor's own interpreter, which a handover cannot "
                                 "replace")
        return spec

    def rollback_spec(self, env_id: str | None) -> EnvSpec:
        """The spec of ``env_id``, else of the env that served before the current one."""
        current = self.pool.env.id if self.pool.env is not None else None
        return generations.rollback_spec(self.config, self.home, self.hlog, current, env_id)

    def start(self, kind: str, after: EnvSpec, answer: Answer, *, request: str, asker: Hashable,
              who: str, add: list[str], remove: list[str], force: bool, offline: bool | None,
              probation: float | None) -> None:
        """Hand over to ``after`` for request id ``request`` (``recall`` said never seen,
        ``admit`` said yes); ``answer`` is called once, at the switch or the failure (at
        once, and recorded, when ``after`` already serves)."""
        env = self.pool.env
        assert env is not None
        if after.id == env.id:
            body = {"outcome": "unchanged", "env": env.describe(),
                    "message": "the incarnation already runs this spec"}
            hid, offset = "u-" + uuid.uuid4().hex[:12], self.hlog.size
            self.hlog.append(hid, UNCHANGED, request=request, kind=kind, env=body["env"],
                             message=body["message"])
            self.requests.note(request, kind, hid, offset)
            answer(True, body)
            return
        self._askers = {asker: answer}
        offset = self.hlog.size
        self.current = Handover(
            host=self, log=self.hlog, kind=kind, spec_after=after, reply=self._answer_askers,
            who=who, request=request, add=add, remove=remove,
            removed_modules=generations.modules_of(env, remove), force=force, offline=offline,
            probation=probation if probation is not None else self.config.probation,
        )
        self.current.begin()
        self.requests.note(request, kind, self.current.id, offset)

    def _answer_askers(self, ok: bool, body: dict[str, Any]) -> None:
        askers, self._askers = self._askers, {}
        for answer in askers.values():
            answer(ok, body)

    def step(self, now: float) -> None:
        if self._recovered is not None:  # the event socket is open once the loop runs
            found, self._recovered = self._recovered, None
            finished = found["action"] == "finish"
            self.publish("handover.completed", handover=found["handover"], request="",
                         outcome="completed" if finished else "interrupted", after_restart=True,
                         failed_phase=None if finished else found.get("phase"),
                         reason=found["why"])
        self._poll_build()
        if self.current is not None:
            self.current.step(now)

    def _poll_build(self) -> None:
        job = self._build_job
        if job is None or not job.done():
            return
        self._build_job = None
        if self.current is None:
            return
        try:
            env = job.result()
        except Exception as exc:
            self.current.build_failed(exc)
        else:
            self.current.built(env)

    def describe(self) -> dict[str, Any] | None:
        """The running handover, for ``status``."""
        h = self.current
        if h is None:
            return None
        return {"id": h.id, "kind": h.kind, "phase": h.phase, "who": h.who, "request": h.request,
                "elapsed": round(time.monotonic() - h.started, 3)}

    # --- news from the backend and the pool -------------------------------------------

    def on_ready(self, ident: str) -> None:
        if self.current is not None:
            self.current.on_ready(ident)

    def on_exit(self, ident: str, code: int | None) -> bool:
        return self.current is not None and self.current.on_exit(ident, code)

    def on_validated(self, ident: str, ok: bool, record: dict[str, Any]) -> None:
        if self.current is not None:
            self.current.on_validated(ident, ok, record)

    def takes_reply(self, rid: str) -> bool:
        """A reply with id ``rid`` answers the running handover's probe, not a client."""
        return self.current is not None and self.current.owns_probe(rid)

    def on_probe(self, rid: str, payload: bytes) -> None:
        assert self.current is not None
        try:
            self.current.on_probe(rid, decode_reply(payload).model_dump(exclude={"v", "id"}))
        except ProtocolError as exc:
            self.current.on_probe(rid, {"ok": False, "error": str(exc)})

    # --- the HandoverHost: what a Handover does through this desk ---------------------

    def env(self) -> EnvInfo | None:
        return self.pool.env

    def active(self) -> str | None:
        return self.routing.active

    def served(self) -> int:
        return self.pool.served

    def in_flight(self, ident: str) -> int:
        return self.routing.on(ident)

    def publish(self, kind: str, **data: Any) -> None:
        self.sockets.publish(kind, **data)

    def start_build(self, handover: Handover) -> None:
        self._build_job = self.worker.submit(build, handover.spec_after, self.config, self.home,
                                             offline=handover.offline, watch=self.build_watch)

    def spawn_candidate(self, env: EnvInfo) -> str:
        return self.pool.spawn(env, time.monotonic(), role="candidate").id

    def _send(self, ident: str, tag: bytes, message: BaseModel) -> None:
        error = self.sockets.send(ident, [tag, encode(message)])
        if error is not None:
            log.warning("could not send to %s: %s", ident, error)

    def send_validate(self, ident: str, handover: str, packages: list[str],
                      removed: list[str]) -> None:
        self._send(ident, CONTROL, Validate(handover=handover, packages=packages,
                                            removed_modules=removed))

    def send_probe(self, ident: str, rid: str, target: str, selector: str,
                   args: list[Any]) -> None:
        self._send(ident, REQUEST, SendRequest(id=rid, target=target, selector=selector,
                                               args=args, author="probe"))

    def switch_to(self, candidate: str, env: EnvInfo) -> str | None:
        incarnations = self.pool.incarnations
        previous = self.routing.switch(candidate)
        incarnations[candidate].role = "active"
        if previous in incarnations:
            incarnations[previous].role = "old"
        self.pool.env = env
        save_current_spec(self.home, env.spec)
        self.sockets.forward_all(self.routing.release_pending(time.monotonic()))
        self.notifier.status(f"serving: incarnation {candidate} (env {env.id}) on probation")
        return previous

    def switch_back(self, old: str | None, env: EnvInfo | None, *, failed: str | None) -> None:
        now = time.monotonic()
        incarnations = self.pool.incarnations
        back = incarnations.get(old) if old else None
        if env is not None:
            self.pool.env = env
            save_current_spec(self.home, env.spec)
        if back is not None and back.state == "ready":
            self.routing.switch(back.id)
            back.role = "active"
        else:
            self.routing.switch(None)
            self.pool.spawn_soon(now)
        if failed:
            bad = incarnations.get(failed)  # gone already when it exited
            if bad is not None:
                bad.role, bad.expected_exit = "failed", True
                process.kill(bad.proc, f"incarnation {bad.id}")
            self.routing.orphan(failed)  # its in-flight requests go to the one we switch to
        self.sockets.forward_all(self.routing.release_pending(now))

    def retire(self, ident: str) -> None:
        inc = self.pool.incarnations.get(ident)
        if inc is not None:
            self.pool.stop(inc, "retired after a handover")

    def discard(self, ident: str) -> None:
        inc = self.pool.incarnations.get(ident)
        if inc is not None:
            inc.role, inc.expected_exit = "failed", True
            self.routing.orphan(inc.id)
            self._send(ident, CONTROL, Stop(reason="handover failed"))
            process.kill(inc.proc, f"candidate {ident}")

    def prune_envs(self) -> None:
        in_use = {i.env.id for i in self.pool.incarnations.values()}
        if self.pool.env is not None:
            in_use.add(self.pool.env.id)
        generations.prune(self.config, self.home, in_use)

    def ended(self, handover: Handover) -> None:
        if self.current is handover:
            self.current = None


def _same_kind(request: str, was: str, asked: str, handover: str) -> None:
    if was != asked:
        raise RequestRefused("InvalidRequest", f"request id {request!r} was a {was} (handover "
                             f"{handover}); a {asked} needs an id of its own")
