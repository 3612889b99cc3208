"""The pool of incarnations: spawn, ready, heartbeats, exits, restarts, degraded.

``Pool`` holds the process table (``incarnations``, by id) and the supervisor's
state that follows from it: ``starting`` -> ``serving`` (the active incarnation
is ready) -> ``restarting`` (it crashed; the next start waits the backoff of the
``RestartPolicy``) -> ``degraded`` (too many crashes, or no env could be built:
stays up, answers ``Unavailable``, retries after ``degraded_retry``) ->
``stopping`` (shutdown). It starts the active incarnation's env build at start
(in the supervisor's worker thread, polled by ``step_env``), spawns incarnations
(``spawn``: the active one, and a handover's candidates), watches them on the
loop's timer (``step``: an exit, no ``Ready`` within ``start_timeout``, missed
heartbeats, a stop past its grace) and judges an exit: poison messages first
(``supervisor.poisoning``), then the handover in progress may claim it
(``HandoverHooks.on_exit``), else the requests in flight go back to pending and
the restart policy decides.

Runs in the loop's thread and never blocks: the env build runs in the worker
thread, children are watched with ``poll()``, stopping one is a ``Stop`` message
and a deadline (``process.stop``, which waits, only at shutdown).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Executor, Future
from typing import Protocol

from bridge.messages import Ready, Stop
from envs import BuildWatch

from . import process
from .children import ChildRecord
from .config import Config, Home
from .incarnations import EnvInfo, Incarnation, prepare_env, spawn_incarnation
from .notify import Notifier
from .poisoning import Poisoning
from .restart import RestartPolicy
from .routing import RoutingTable
from .sockets import Sockets
from .zeo import ZeoServer

__all__ = ["HandoverHooks", "Pool"]

log = logging.getLogger("batos.supervisor")


class HandoverHooks(Protocol):
    """What the pool tells the handover desk (``supervisor.evolution.Evolution``)."""

    def on_ready(self, ident: str) -> None:
        """A candidate incarnation sent ``Ready``."""

    def on_exit(self, ident: str, code: int | None) -> bool:
        """An incarnation exited; True when the handover in progress dealt with it."""


class _NoHandovers:
    def on_ready(self, ident: str) -> None:
        pass

    def on_exit(self, ident: str, code: int | None) -> bool:
        return False


class Pool:
    def __init__(self, home: Home, config: Config, *, routing: RoutingTable, sockets: Sockets,
                 poisoning: Poisoning, notifier: Notifier, children: ChildRecord, zeo: ZeoServer,
                 worker: Executor, build_watch: BuildWatch) -> None:
        self.home = home
        self.config = config
        self.routing = routing
        self.sockets = sockets
        self.poisoning = poisoning
        self.notifier = notifier
        self.children = children
        self.zeo = zeo
        self.worker = worker
        self.build_watch = build_watch
        self.handovers: HandoverHooks = _NoHandovers()
        self.policy = RestartPolicy(
            max_restarts=config.max_restarts, period=config.restart_period,
            initial=config.backoff_initial, maximum=config.backoff_max,
            degraded_retry=config.degraded_retry,
        )
        self.incarnations: dict[str, Incarnation] = {}
        self.state = "starting"
        self.reason = ""
        #: the active incarnation's environment (None until built)
        self.env: EnvInfo | None = None
        #: requests the incarnations answered, all together
        self.served = 0
        self._env_job: Future[EnvInfo] | None = None
        self._next_spawn: float | None = None
        self._seq = 0
        self._pid = os.getpid()
        self._announced = False
        #: why the supervisor killed an incarnation (its exit's cause for a PoisonMessage)
        self._killed_for: dict[str, str] = {}

    # --- what the others ask --------------------------------------------------------

    def active(self) -> Incarnation | None:
        return self.incarnations.get(self.routing.active or "")

    def unavailable(self) -> str:
        return (f"the supervisor is degraded: {self.reason}; it stays up and retries "
                f"(see 'batos status' and {self.home.logs})")

    def replied(self, inc: Incarnation) -> None:
        inc.served += 1
        self.served += 1

    def send_quarantines(self) -> None:
        self.poisoning.quarantine(self.active())

    # --- starting -------------------------------------------------------------------

    def prepare(self) -> None:
        """Build (or find) the active incarnation's env in the worker thread."""
        self._env_job = self.worker.submit(prepare_env, self.config, self.home, self.build_watch)

    def step_env(self, now: float) -> None:
        if self._env_job is None or not self._env_job.done():
            return
        job, self._env_job = self._env_job, None
        try:
            self.env = job.result()
            self._next_spawn = now
        except Exception as exc:
            log.error("environment build failed: %s", exc)
            self.degrade(f"the incarnation's environment could not be built: {exc}")

    def spawn(self, env: EnvInfo, now: float, *, role: str = "active") -> Incarnation:
        self._seq += 1
        ident = f"inc-{self._seq}-{self._pid}"
        inc = self.incarnations[ident] = spawn_incarnation(
            ident, env, home=self.home, config=self.config, zeo=self.zeo.address, now=now,
            role=role)
        if role == "active":
            self.children.add(inc.pid, f"incarnation {ident}")
            self._next_spawn = None
            self.sockets.publish("incarnation.spawned", incarnation=ident, env_id=env.id)
        else:
            self.children.add(inc.pid, f"{role} {ident}")
            self.sockets.publish("incarnation.spawned", incarnation=ident, env_id=env.id, role=role)
        return inc

    def spawn_soon(self, now: float) -> None:
        """Start a new active incarnation at the next timer (the old one is gone)."""
        self._next_spawn = now

    def on_ready(self, inc: Incarnation, ready: Ready, now: float) -> None:
        inc.state = "ready"
        inc.ready_at = now
        inc.packages = dict(ready.packages)
        inc.python = ready.python
        inc.lanes = ready.lanes
        if ready.quarantined is not None:
            self.routing.poison.report(inc.id, ready.quarantined, now)
        log.info("incarnation ready", extra={"incarnation": inc.id, "pid": inc.code_pid,
                                             "env_id": ready.env_id,
                                             "seconds": round(now - inc.started_at, 3)})
        self.sockets.publish("incarnation.ready", incarnation=inc.id, pid=inc.code_pid,
                             env_id=ready.env_id, role=inc.role)
        if inc.role == "candidate":
            self.handovers.on_ready(inc.id)
        elif inc.role == "active":
            self.routing.switch(inc.id)
            self.state, self.reason = "serving", ""
            self.send_quarantines()
            self.sockets.forward_all(self.routing.release_pending(now))
            summary = f"serving: incarnation {inc.id} (pid {inc.pid}, env {inc.env.id})"
            if not self._announced:
                self._announced = True
                self.notifier.ready(summary)
            else:
                self.notifier.status(summary)

    def on_attach(self, inc: Incarnation, lane: int) -> None:
        """Lane ``lane`` of ``inc`` sent ``Attach``: requests may go to it from now on; the
        quarantines ``inc`` was sent go to it first (it may attach after they were sent)."""
        if lane in inc.attached:
            return
        inc.attached.add(lane)
        log.info("lane attached", extra={"incarnation": inc.id, "lane": lane})
        self.poisoning.quarantine_lane(inc, lane)

    # --- stopping -------------------------------------------------------------------

    def stop(self, inc: Incarnation, reason: str) -> None:
        """Ask ``inc`` to stop (``Stop``); ``step`` kills it after ``stop_grace``."""
        inc.expected_exit = True
        inc.state = "stopping"
        inc.stop_deadline = time.monotonic() + self.config.stop_grace
        self.sockets.control(inc.id, Stop(reason=reason))

    def kill(self, inc: Incarnation, *, why: str = "") -> None:
        if why:
            self._killed_for[inc.id] = why
        process.kill(inc.proc, f"incarnation {inc.id}")

    def shutdown(self) -> None:
        """Every incarnation asked to stop, then stopped (SIGTERM, grace, SIGKILL): blocks."""
        for inc in list(self.incarnations.values()):
            self.stop(inc, "supervisor shutdown")
        for inc in list(self.incarnations.values()):
            process.stop(inc.proc, f"incarnation {inc.id}", grace=self.config.stop_grace)

    # --- the loop's timer -----------------------------------------------------------

    def step(self, now: float) -> None:
        cfg = self.config
        for inc in list(self.incarnations.values()):
            if inc.proc.poll() is not None:
                self.on_exit(inc, now)
            elif inc.state == "stopping" and inc.stop_deadline and now > inc.stop_deadline:
                log.warning("incarnation %s did not stop within %.0fs", inc.id, cfg.stop_grace)
                self.kill(inc)
            elif inc.state == "starting" and now - inc.started_at > cfg.start_timeout:
                log.error("incarnation %s sent no Ready within %.0fs", inc.id, cfg.start_timeout)
                self.kill(inc)
            elif inc.state == "ready" and now - inc.last_seen > cfg.heartbeat_timeout:
                log.error("incarnation %s missed heartbeats for %.1fs", inc.id, now - inc.last_seen)
                self.kill(inc, why=(f"killed by the supervisor after missed heartbeats "
                                    f"for {now - inc.last_seen:.1f}s"))
        if self.state == "degraded" and self.policy.retry_due(now):
            log.info("retrying after %.0fs degraded", cfg.degraded_retry)
            self.policy.clear()
            self.state = "restarting"
            if self.env is None:
                self.prepare()
            else:
                self._next_spawn = now
        if (self._next_spawn is not None and now >= self._next_spawn and self.env is not None
                and not any(i.role == "active" for i in self.incarnations.values())):
            self.spawn(self.env, now)

    def on_exit(self, inc: Incarnation, now: float) -> None:
        inc.exit_code = inc.proc.returncode
        was = inc.state
        inc.state = "exited"
        if self.routing.active == inc.id:
            self.routing.switch(None)  # first: nothing drained below may be sent to it
        judgement = self.poisoning.judge(inc, now, why=self._killed_for.pop(inc.id, ""))
        if judgement.pardoned:
            self.policy.pardon(judgement.pardoned)
        if judgement.poisoned:
            self.send_quarantines()
        explained, poisoned = judgement.explained, len(judgement.poisoned)
        del self.incarnations[inc.id]
        self.children.remove(inc.pid)
        if self.handovers.on_exit(inc.id, inc.exit_code):
            self.sockets.publish("incarnation.exited", incarnation=inc.id, exit_code=inc.exit_code,
                                 expected=False, poisoned=poisoned, role=inc.role)
            return
        lost = self.routing.orphan(inc.id)
        if self.routing.pending and self.routing.active is not None:
            self.sockets.forward_all(self.routing.release_pending(now))
        self.sockets.publish("incarnation.exited", incarnation=inc.id, exit_code=inc.exit_code,
                             expected=inc.expected_exit, requeued=len(lost), poisoned=poisoned,
                             role=inc.role)
        if inc.expected_exit or inc.role != "active":
            log.info("incarnation %s (%s) exited (%s)", inc.id, inc.role, inc.exit_code)
            return
        log.error("incarnation crashed", extra={"incarnation": inc.id, "exit_code": inc.exit_code,
                                                "state": was, "requeued": len(lost),
                                                "explained": explained})
        decision = self.policy.record_crash(now, explained=explained)
        if decision.degraded:
            self.degrade(f"{decision.recent} incarnation crashes within "
                         f"{self.config.restart_period:g}s (last exit code {inc.exit_code})")
        else:
            self.state = "restarting"
            self._next_spawn = now + decision.delay
            self.notifier.status(f"restarting incarnation in {decision.delay:.2f}s")

    def degrade(self, reason: str) -> None:
        self.state, self.reason = "degraded", reason
        self._next_spawn = None
        log.error("supervisor degraded: %s", reason)
        for entry in self.routing.drop_pending():
            self.sockets.reply_error(entry, "Unavailable", self.unavailable())
        self.sockets.publish("supervisor.degraded", reason=reason)
        self.notifier.status(f"degraded: {reason}")
