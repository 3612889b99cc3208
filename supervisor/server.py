"""The supervisor's loop: sockets, routing, incarnation life cycle, restarts.

One thread, one ``zmq.Poller`` loop, no asyncio: every socket is owned and
used only here. Long work never runs in the loop: the env build runs in a
worker thread (the loop polls its future), child processes are watched with
``poll()``. Signals wake the loop through ``signal.set_wakeup_fd``.

Sockets (addresses from ``config.Home``):

* frontend  ROUTER  ``config.endpoint`` (TCP, loopback unless CURVE) and
  ``ipc://<run>/fe.sock``: client requests and replies;
* backend   ROUTER  ``ipc://<run>/be.sock``: incarnations (DEALER, identity =
  incarnation id);
* events    PUB     ``ipc://<run>/ev.sock``: incarnation and supervisor events.

What the supervisor answers itself (``ping``, ``status``) lives in
``supervisor.control``; everything else is forwarded to the active
incarnation through the ``RoutingTable``. Bad frames become error replies
and a log line; nothing a client sends can stop the loop.

An incarnation that dies unasked has its in-flight requests judged
(``supervisor.poison``): a poison message is answered ``PoisonMessage`` and
its method sent to the next ready incarnation as a ``Quarantine``; the rest
are resent. Deaths a poison message explains do not count toward ``degraded``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import zmq

from bridge.codec import decode_control, decode_reply, encode, peek_id, unpack, validate_request
from bridge.errors import ProtocolError
from bridge.messages import (
    FORWARDED_KINDS,
    MAX_PUBLISH_BYTES,
    ErrorInfo,
    Event,
    Heartbeat,
    Publish,
    Ready,
    Reply,
    Stop,
    Suspect,
    Validated,
)
from envs import BuildWatch

from . import control, keys, process
from .children import ChildRecord
from .config import Config, Home
from .errors import HomeError
from .evolution import EvolutionMixin
from .handover import Handover
from .handover_log import LOG_FILE, HandoverLog
from .incarnations import EnvInfo, Incarnation, prepare_env, spawn_incarnation
from .logs import configure_logging
from .notify import Notifier
from .poisoning import PoisoningMixin
from .restart import RestartPolicy
from .routing import InFlight, Route, RoutingTable
from .vllm import VllmChild
from .zeo import ZeoServer

__all__ = ["Supervisor"]

log = logging.getLogger("batos.supervisor")
_BATCH = 512  # messages drained from one socket per loop turn
_TICK = 0.01  # s between timer checks; the loop turns far more often under load


class Supervisor(EvolutionMixin, PoisoningMixin):
    def __init__(self, home: Home, config: Config) -> None:
        self.home = home
        # the vLLM server's port is fixed here (0: a free one), before any incarnation
        # or handover reads config.vllm for its mind
        self.vllm = VllmChild(config.vllm, home.logs / "vllm.log",
                              degraded_retry=config.degraded_retry)
        self.config = config = config.model_copy(update={"vllm": self.vllm.config})
        self.routing = RoutingTable(max_pending=config.max_pending)
        self.policy = RestartPolicy(
            max_restarts=config.max_restarts, period=config.restart_period,
            initial=config.backoff_initial, maximum=config.backoff_max,
            degraded_retry=config.degraded_retry,
        )
        self.incarnations: dict[str, Incarnation] = {}
        self.state = "starting"
        self.reason = ""
        self.started = time.time()
        self.notifier = Notifier.from_environment()
        self.env: EnvInfo | None = None
        self._env_job: Future[EnvInfo] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batos-envs")
        self._next_spawn: float | None = None
        self._seq = 0
        self._stop = False
        self._announced = False
        self.zeo = ZeoServer(home.image, home.zeo_socket, home.logs / "zeo.log")
        self.children = ChildRecord(home.run / "children.json")
        self.hlog = HandoverLog(home.logs / LOG_FILE)
        self.handover: Handover | None = None
        self._build_job: Future[EnvInfo] | None = None
        self.served_total = 0
        #: why the supervisor killed an incarnation (its exit's cause for a PoisonMessage)
        self._killed_for: dict[str, str] = {}
        self._pid = os.getpid()
        # uv processes are children too: recorded (reaped after a SIGKILL of ours) and
        # cancelled at shutdown, so neither path waits for or leaves behind a build
        self.build_watch = BuildWatch(started=lambda pid: self.children.add(pid, "uv build"),
                                      ended=self.children.remove)

    # --- life cycle ---------------------------------------------------------------

    def run(self) -> int:
        self.home.prepare()
        configure_logging(self.home.logs, level=self.config.log_level)
        lock = self._lock()
        log.info("supervisor starting", extra={"home": str(self.home.root), "pid": os.getpid(),
                                                "endpoint": self.config.endpoint})
        self.children.reap_strays()
        self.recover_handover()
        try:
            self.zeo.start()
            self.children.add(self.zeo.pid, "zeo")
            self._open_sockets()
            if self.config.vllm.enabled:  # serving does not wait for it to be ready
                self._vllm_events(self.vllm.start(time.monotonic()))
            self._env_job = self._pool.submit(prepare_env, self.config, self.home, self.build_watch)
            self._loop()
        finally:
            self._shutdown()
            lock.close()
        return 0

    def request_stop(self, *_: object) -> None:
        self._stop = True

    def _lock(self) -> Any:
        handle = open(self.home.lock, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise HomeError(f"another supervisor is already running with home {self.home.root}") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _open_sockets(self) -> None:
        ctx = self.ctx = zmq.Context()
        self.frontends: list[zmq.Socket[bytes]] = []
        tcp = ctx.socket(zmq.ROUTER)
        self._router_options(tcp)
        self.authenticator = None
        if self.config.curve or (self.config.curve is None and not keys.is_loopback(self.config.endpoint)):
            curve = keys.server_curve(self.home.root)  # KeysMissing before any thread starts
            self.authenticator = keys.start_authenticator(ctx, self.home.root)
            curve.apply(tcp)
            log.info("frontend requires CURVE", extra={"endpoint": self.config.endpoint})
        tcp.bind(self.config.endpoint)
        self.frontends.append(tcp)
        if self.config.ipc_frontend:
            ipc = ctx.socket(zmq.ROUTER)
            self._router_options(ipc)
            ipc.bind(self.home.frontend_ipc)
            self.frontends.append(ipc)
        self.backend = ctx.socket(zmq.ROUTER)
        self._router_options(self.backend)
        self.backend.bind(self.home.backend)
        self.events = ctx.socket(zmq.PUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(self.home.events)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        self.poller = zmq.Poller()
        for sock in (*self.frontends, self.backend):
            self.poller.register(sock, zmq.POLLIN)
        self.poller.register(self._wake_r, zmq.POLLIN)

    def _router_options(self, sock: zmq.Socket[bytes]) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_frame * 4)

    def _loop(self) -> None:
        last_tick = 0.0
        while not self._stop:
            now = self._pump(self._poll_timeout())
            if now - last_tick >= _TICK:
                self._tick(now)
                last_tick = now

    def _pump(self, timeout_ms: int) -> float:
        """Wait up to ``timeout_ms`` and handle what arrived on every socket; answers ``now``."""
        events = dict(self.poller.poll(timeout_ms))
        now = time.monotonic()
        for index, sock in enumerate(self.frontends):
            if sock in events:
                for _ in range(_BATCH):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_client(index, frames, now)
        if self.backend in events:
            for _ in range(_BATCH):
                try:
                    frames = self.backend.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_backend(frames, now)
        if self._wake_r.fileno() in events:
            try:
                self._wake_r.recv(256)
            except BlockingIOError:
                pass
        return now

    def _poll_timeout(self) -> int:
        return 100  # ms: the tick's timers are all coarser than this

    def _shutdown(self) -> None:
        self.state = "stopping"
        self.notifier.stopping()
        log.info("supervisor stopping")
        if hasattr(self, "poller"):
            self.publish("supervisor.stopping")
            for entry in self.routing.drop_pending():
                self._reply_error(entry, "Unavailable", "the supervisor is shutting down")
            self._drain(time.monotonic() + self.config.stop_grace)
            for inc in list(self.incarnations.values()):
                self._stop_incarnation(inc, "supervisor shutdown")
            for inc in list(self.incarnations.values()):
                process.stop(inc.proc, f"incarnation {inc.id}", grace=self.config.stop_grace)
        vllm_pid = self.vllm.pid
        if vllm_pid is not None:
            self.vllm.stop()
            self.children.remove(vllm_pid)
        self.build_watch.cancel.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.zeo.stop()
        self.children.path.unlink(missing_ok=True)
        if hasattr(self, "poller"):
            signal.set_wakeup_fd(-1)
            if self.authenticator is not None:
                self.authenticator.stop()
            for sock in (*self.frontends, self.backend, self.events):
                sock.close(linger=0)
            self.ctx.term()
            self._wake_r.close()
            self._wake_w.close()
        log.info("supervisor stopped")

    def _drain(self, deadline: float) -> None:
        """Let in-flight requests finish (their replies still reach their clients); new
        requests meanwhile are answered ``Unavailable`` (state ``stopping``)."""
        while self.routing.inflight and time.monotonic() < deadline:
            self._pump(50)
            for inc in self.incarnations.values():
                if inc.proc.poll() is not None:
                    for entry in self.routing.orphan(inc.id):
                        self._reply_error(entry, "Unavailable", "the supervisor is shutting down")

    # --- clients --------------------------------------------------------------------

    def _on_client(self, index: int, frames: list[bytes], now: float) -> None:
        if len(frames) < 2 or len(frames) > 6:
            log.warning("dropped a client message with %d frames", len(frames))
            return
        envelope = (bytes([index]), *frames[:-1])
        payload = frames[-1]
        try:
            data = unpack(payload, max_size=self.config.max_frame)
        except ProtocolError as exc:
            log.warning("bad frame from a client: %s", exc)
            self._reply(envelope, Reply(id="", ok=False, error=self._error(exc)))
            return
        try:
            request = validate_request(data)
        except ProtocolError as exc:
            log.warning("invalid request from a client: %s", exc)
            self._reply(envelope, Reply(id=peek_id(data), ok=False, error=self._error(exc)))
            return
        if request.kind in ("evolve", "rollback"):
            if self.state == "stopping":
                self._reply(envelope, Reply(id=request.id, ok=False, error=ErrorInfo(
                    type="Unavailable", message="the supervisor is shutting down", where="supervisor")))
            else:
                self._evolve(request, envelope)
            return
        if request.kind == "handovers":
            self._handovers(request, envelope)
            return
        if request.kind not in FORWARDED_KINDS:
            reply = control.answer(self, request, now)
            if request.kind == "status" and reply.ok and isinstance(reply.result, dict):
                reply.result["vllm"] = self.vllm.status() if self.config.vllm.enabled else None
            self._reply(envelope, reply)
            return
        if self.state in ("degraded", "stopping") and self.routing.poison.verdict(request.id) is None:
            why = self._unavailable() if self.state == "degraded" else (
                "the supervisor is shutting down; send again once it is back (by the same id)")
            self._reply(envelope, Reply(id=request.id, ok=False, error=ErrorInfo(
                type="Unavailable", message=why, where="supervisor")))
            return
        route = self.routing.accept(request.id, envelope, payload, now, target=request.target,
                                    selector=getattr(request, "selector", request.kind))
        if route is Route.SEND:
            self._forward(self.routing.inflight[request.id])
        elif route is Route.POISONED:
            record = self.routing.poison.verdict(request.id)
            assert record is not None
            self._reply(envelope, self._poison_reply(record))
        elif route is Route.FULL:
            self._reply(envelope, Reply(id=request.id, ok=False, error=ErrorInfo(
                type="Unavailable", message=f"{self.config.max_pending} requests are already "
                "waiting for an incarnation; retry later", where="supervisor")))

    def _unavailable(self) -> str:
        return (f"the supervisor is degraded: {self.reason}; it stays up and retries "
                f"(see 'batos status' and {self.home.logs})")

    @staticmethod
    def _error(exc: Exception) -> ErrorInfo:
        return ErrorInfo(type=type(exc).__name__, message=str(exc), where="supervisor")

    def _reply(self, envelope: tuple[bytes, ...], reply: Reply | bytes) -> None:
        payload = reply if isinstance(reply, bytes) else encode(reply)
        sock = self.frontends[envelope[0][0]]
        try:
            sock.send_multipart([*envelope[1:], payload], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client went away (EHOSTUNREACH) or is not reading
            log.info("reply not delivered: %s", exc)

    def _reply_error(self, entry: InFlight, type_: str, message: str) -> None:
        reply = encode(Reply(id=entry.request_id, ok=False,
                             error=ErrorInfo(type=type_, message=message, where="supervisor")))
        for envelope in entry.waiters:
            self._reply(envelope, reply)

    # --- incarnations ---------------------------------------------------------------

    def _forward(self, entry: InFlight) -> None:
        assert entry.incarnation is not None
        try:
            self.backend.send_multipart([entry.incarnation.encode(), b"Q", entry.payload], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # it just went away: its exit will requeue the request
            log.warning("could not forward to %s: %s", entry.incarnation, exc)

    def _on_backend(self, frames: list[bytes], now: float) -> None:
        if len(frames) < 3:
            log.warning("dropped a backend message with %d frames", len(frames))
            return
        ident = frames[0].decode(errors="replace")
        inc = self.incarnations.get(ident)
        if inc is None:
            log.warning("message from unknown incarnation %r: asking it to stop", ident)
            try:
                self.backend.send_multipart([frames[0], b"C", encode(Stop(reason="unknown"))], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            return
        inc.last_seen = now
        tag = frames[1]
        if tag == b"R" and len(frames) == 4:
            rid = frames[2].decode(errors="replace")
            if self.handover is not None and rid.startswith(("probe-", "health-")):
                try:
                    self.handover.on_probe(rid, decode_reply(frames[3]).model_dump(exclude={"v", "id"}))
                except ProtocolError as exc:
                    self.handover.on_probe(rid, {"ok": False, "error": str(exc)})
                return
            entry = self.routing.complete(rid)
            inc.served += 1
            self.served_total += 1
            if entry is not None:
                for envelope in entry.waiters:
                    self._reply(envelope, frames[3])
                if self.routing.pending and self.routing.lane is None:
                    self._release(now)  # the next suspect may go
        elif tag == b"C":
            try:
                message = decode_control(frames[2])
            except ProtocolError as exc:
                log.warning("bad control message from %s: %s", ident, exc)
                return
            if isinstance(message, Ready):
                self._on_ready(inc, message, now)
            elif isinstance(message, Validated):
                if self.handover is not None:
                    self.handover.on_validated(inc.id, message.ok, message.record)
            elif isinstance(message, Publish):
                self._on_publish(inc, message, len(frames[2]))
            elif isinstance(message, Suspect):
                log.warning("incarnation %s suspects request %s: %s", inc.id, message.request,
                            message.reason)
                self.routing.poison.announce(inc.id, message.request, message.reason)
            elif isinstance(message, Heartbeat):
                inc.busy = message.busy
                if message.quarantined is not None:
                    self.routing.poison.report(inc.id, message.quarantined, now)
            elif message.kind == "bye":
                # expected only if we asked (Stop): an incarnation that leaves on its own
                # (an operator's SIGTERM) is replaced like any other exit
                inc.state = "stopping"
        else:
            log.warning("unexpected backend frames from %s", ident)

    def _on_ready(self, inc: Incarnation, ready: Ready, now: float) -> None:
        inc.state = "ready"
        inc.ready_at = now
        inc.packages = dict(ready.packages)
        inc.python = ready.python
        if ready.quarantined is not None:
            self.routing.poison.report(inc.id, ready.quarantined, now)
        log.info("incarnation ready", extra={"incarnation": inc.id, "pid": inc.code_pid,
                                             "env_id": ready.env_id,
                                             "seconds": round(now - inc.started_at, 3)})
        self.publish("incarnation.ready", incarnation=inc.id, pid=inc.code_pid, env_id=ready.env_id,
                      role=inc.role)
        if inc.role == "candidate" and self.handover is not None:
            self.handover.on_ready(inc.id)
        elif inc.role == "active":
            self.routing.switch(inc.id)
            self.state, self.reason = "serving", ""
            self._send_quarantines()
            for entry in self.routing.release_pending(now):
                self._forward(entry)
            summary = f"serving: incarnation {inc.id} (pid {inc.pid}, env {inc.env.id})"
            if not self._announced:
                self._announced = True
                self.notifier.ready(summary)
            else:
                self.notifier.status(summary)

    def _spawn(self, now: float) -> None:
        assert self.env is not None
        self._seq += 1
        ident = f"inc-{self._seq}-{self._pid}"
        inc = self.incarnations[ident] = spawn_incarnation(
            ident, self.env, home=self.home, config=self.config, zeo=self.zeo.address, now=now)
        self.children.add(inc.pid, f"incarnation {ident}")
        self._next_spawn = None
        self.publish("incarnation.spawned", incarnation=ident, env_id=self.env.id)

    def _stop_incarnation(self, inc: Incarnation, reason: str) -> None:
        inc.expected_exit = True
        inc.state = "stopping"
        inc.stop_deadline = time.monotonic() + self.config.stop_grace
        try:
            self.backend.send_multipart([inc.id.encode(), b"C", encode(Stop(reason=reason))], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def _release(self, now: float) -> None:
        for entry in self.routing.release_pending(now):
            self._forward(entry)

    def _on_exit(self, inc: Incarnation, now: float) -> None:
        inc.exit_code = inc.proc.returncode
        was = inc.state
        inc.state = "exited"
        if self.routing.active == inc.id:
            self.routing.switch(None)  # first: nothing drained below may be sent to it
        explained, poisoned = self._judge_death(inc, now)
        self._killed_for.pop(inc.id, None)
        del self.incarnations[inc.id]
        self.children.remove(inc.pid)
        if self.handover is not None and self.handover.on_exit(inc.id, inc.exit_code):
            self.publish("incarnation.exited", incarnation=inc.id, exit_code=inc.exit_code,
                         expected=False, poisoned=poisoned, role=inc.role)
            return
        lost = self.routing.orphan(inc.id)
        if self.routing.pending and self.routing.active is not None:
            self._release(now)
        self.publish("incarnation.exited", incarnation=inc.id, exit_code=inc.exit_code,
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
            self._degrade(f"{decision.recent} incarnation crashes within "
                          f"{self.config.restart_period:g}s (last exit code {inc.exit_code})")
        else:
            self.state = "restarting"
            self._next_spawn = now + decision.delay
            self.notifier.status(f"restarting incarnation in {decision.delay:.2f}s")

    def _degrade(self, reason: str) -> None:
        self.state, self.reason = "degraded", reason
        self._next_spawn = None
        log.error("supervisor degraded: %s", reason)
        for entry in self.routing.drop_pending():
            self._reply_error(entry, "Unavailable", self._unavailable())
        self.publish("supervisor.degraded", reason=reason)
        self.notifier.status(f"degraded: {reason}")

    # --- timers ---------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self.notifier.tick(now)
        zeo_pid = self.zeo.pid
        if self.zeo.ensure(now):
            self.children.remove(zeo_pid)
            self.children.add(self.zeo.pid, "zeo")
            self.publish("zeo.restarted", restarts=self.zeo.restarts)
        if self.config.vllm.enabled:
            self._vllm_events(self.vllm.step(now))
        if self._env_job is not None and self._env_job.done():
            job, self._env_job = self._env_job, None
            try:
                self.env = job.result()
                self._next_spawn = now
            except Exception as exc:
                log.error("environment build failed: %s", exc)
                self._degrade(f"the incarnation's environment could not be built: {exc}")
        self._poll_build()
        if self.handover is not None:
            self.handover.step(now)
        for inc in list(self.incarnations.values()):
            if inc.proc.poll() is not None:
                self._on_exit(inc, now)
            elif inc.state == "stopping" and inc.stop_deadline and now > inc.stop_deadline:
                log.warning("incarnation %s did not stop within %.0fs", inc.id, self.config.stop_grace)
                self._kill(inc)
            elif inc.state == "starting" and now - inc.started_at > self.config.start_timeout:
                log.error("incarnation %s sent no Ready within %.0fs", inc.id, self.config.start_timeout)
                self._kill(inc)
            elif inc.state == "ready" and now - inc.last_seen > self.config.heartbeat_timeout:
                log.error("incarnation %s missed heartbeats for %.1fs", inc.id, now - inc.last_seen)
                self._killed_for[inc.id] = (f"killed by the supervisor after missed heartbeats "
                                            f"for {now - inc.last_seen:.1f}s")
                self._kill(inc)
        if self.state == "degraded" and self.policy.retry_due(now):
            log.info("retrying after %.0fs degraded", self.config.degraded_retry)
            self.policy.clear()
            self.state = "restarting"
            if self.env is None:
                self._env_job = self._pool.submit(prepare_env, self.config, self.home,
                                                  self.build_watch)
            else:
                self._next_spawn = now
        if (self._next_spawn is not None and now >= self._next_spawn and self.env is not None
                and not any(i.role == "active" for i in self.incarnations.values())):
            self._spawn(now)
        for entry in self.routing.expire(now, self.config.request_timeout):
            self._reply_error(entry, "Unavailable", f"no incarnation could take the request within "
                              f"{self.config.request_timeout:g}s (state: {self.state})")

    def _vllm_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Record the vLLM server's process in children.json and publish what it did."""
        for kind, data in events:
            if kind == "vllm.starting":
                self.children.add(data["pid"], "vllm")
            elif kind == "vllm.exited":
                self.children.remove(data["pid"])
            self.publish(kind, **data)

    def _kill(self, inc: Incarnation) -> None:
        process.kill(inc.proc, f"incarnation {inc.id}")

    def _on_publish(self, inc: Incarnation, message: Publish, size: int) -> None:
        """An image event from an incarnation, re-published as its own kind (``image.*``)."""
        if size > MAX_PUBLISH_BYTES or not message.event.startswith("image."):
            log.warning("dropped an event from %s: %s", inc.id,
                        f"{size} bytes (limit {MAX_PUBLISH_BYTES})" if size > MAX_PUBLISH_BYTES
                        else f"kind {message.event!r} is not an image event")
            return
        self._emit(message.event, {**message.data, "incarnation": inc.id})

    def publish(self, kind: str, **data: Any) -> None:
        self._emit(kind, data)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if not hasattr(self, "events"):
            return
        event = Event(kind=kind, ts=time.time(), data=data)
        try:
            self.events.send_multipart([kind.split(".")[0].encode(), encode(event)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
