"""The supervisor: its collaborators put together, and the loop that drives them.

One thread, one ``zmq.Poller`` loop, no asyncio: every socket is owned and
used only here. Long work never runs in the loop: env builds run in a
worker thread (their futures are polled), child processes are watched with
``poll()``. Signals wake the loop through ``signal.set_wakeup_fd``.

``Supervisor`` builds the parts and wires them (each gets what it uses, none
gets the supervisor):

* ``sockets.Sockets``      the frontend/backend ROUTERs and the events PUB;
* ``routing.RoutingTable`` which incarnation serves, what is in flight or pending
  (the one place of in-flight state), with the poison ledger;
* ``pool.Pool``            the incarnations: spawn, ready, heartbeats, exits,
  restarts, degraded; the supervisor's state;
* ``poisoning.Poisoning``  what an unasked death decides about poison messages;
* ``evolution.Evolution``  the handover desk (evolve/rollback, one at a time);
* ``frontend.Frontend``    client frames -> one handler per request kind
  (the ``request_*`` modules, answering through a ``desk.Desk``);
* ``backend.Backend``      incarnation frames -> the pool, the routing table, the
  handover desk;
* the ZEO server, the vLLM server, ``children.json``, sd_notify.

The loop (``_loop``) receives in batches (``_pump``, ``sockets.drain``) and runs the
timers (``_tick``); what was built before it is frozen out of the garbage collector's
generations (``gc.freeze``), so a collection under load scans only what the messages
made; shutdown answers what waits, drains what is in flight for up to
``stop_grace``, stops the incarnations, vLLM and ZEO.
"""

from __future__ import annotations

import fcntl
import gc
import logging
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq

from envs import BuildWatch

from .backend import Backend
from .children import ChildRecord
from .config import Config, Home
from .desk import Desk
from .errors import HomeError
from .evolution import Evolution
from .frontend import Frontend
from .handover_log import LOG_FILE, HandoverLog
from .logs import configure_logging
from .notify import Notifier
from .poisoning import Poisoning
from .pool import Pool
from .routing import RoutingTable
from .sockets import Sockets, drain
from .vllm import VllmChild
from .zeo import ZeoServer

__all__ = ["Supervisor"]

log = logging.getLogger("batos.supervisor")
_BATCH = 512  # messages drained from one socket per loop turn
_TICK = 0.01  # s between timer checks; the loop turns far more often under load
#: the most backend frames handled at an exit before judging it
_DRAIN_LIMIT = 512


class Supervisor:
    def __init__(self, home: Home, config: Config) -> None:
        self.home = home
        # the vLLM server's port is fixed here (0: a free one), before any incarnation
        # or handover reads config.vllm for its mind
        self.vllm = VllmChild(config.vllm, home.logs / "vllm.log",
                              degraded_retry=config.degraded_retry)
        self.config = config = config.model_copy(update={"vllm": self.vllm.config})
        self.started = time.time()
        self.notifier = Notifier.from_environment()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batos-envs")
        self.zeo = ZeoServer(home.image, home.zeo_socket, home.logs / "zeo.log")
        self.children = ChildRecord(home.run / "children.json")
        self.hlog = HandoverLog(home.logs / LOG_FILE)
        # uv processes are children too: recorded (reaped after a SIGKILL of ours) and
        # cancelled at shutdown, so neither path waits for or leaves behind a build
        self.build_watch = BuildWatch(started=lambda pid: self.children.add(pid, "uv build"),
                                      ended=self.children.remove)
        self.routing = RoutingTable(max_pending=config.max_pending)
        self.sockets = Sockets(home, config, routing=self.routing)
        self.poisoning = Poisoning(self.routing, self.sockets, drain=self._drain_backend)
        self.pool = Pool(home, config, routing=self.routing, sockets=self.sockets,
                         poisoning=self.poisoning, notifier=self.notifier, children=self.children,
                         zeo=self.zeo, worker=self.worker, build_watch=self.build_watch)
        self.evolution = Evolution(home, config, pool=self.pool, routing=self.routing,
                                   sockets=self.sockets, hlog=self.hlog, notifier=self.notifier,
                                   worker=self.worker, build_watch=self.build_watch)
        self.pool.handovers = self.evolution
        self.sockets.incarnations = self.pool.incarnations  # where forward finds the lanes
        self.backend = Backend(pool=self.pool, evolution=self.evolution, routing=self.routing,
                               sockets=self.sockets)
        self.frontend = Frontend(Desk(
            home=home, config=config, sockets=self.sockets, routing=self.routing, pool=self.pool,
            evolution=self.evolution, hlog=self.hlog, zeo=self.zeo, vllm=self.vllm,
            started=self.started))
        self._stop = False
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # --- life cycle ---------------------------------------------------------------

    def run(self) -> int:
        self.home.prepare()
        configure_logging(self.home.logs, level=self.config.log_level)
        lock = self._lock()
        log.info("supervisor starting", extra={"home": str(self.home.root), "pid": os.getpid(),
                                                "endpoint": self.config.endpoint})
        self.children.reap_strays()
        self.evolution.recover_handover()
        try:
            self.zeo.start()
            self.children.add(self.zeo.pid, "zeo")
            self._open()
            if self.config.vllm.enabled:  # serving does not wait for it to be ready
                self._vllm_events(self.vllm.start(time.monotonic()))
            self.pool.prepare()
            gc.freeze()  # the startup's objects: never scanned again
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

    def _open(self) -> None:
        self.sockets.open()
        wake_r, wake_w = self._wake = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        self.sockets.poller.register(wake_r, zmq.POLLIN)

    # --- the loop -------------------------------------------------------------------

    def _loop(self) -> None:
        last_tick = 0.0
        while not self._stop:
            now = self._pump(100)  # ms: the tick's timers are all coarser than this
            if now - last_tick >= _TICK:
                self._tick(now)
                last_tick = now

    def _pump(self, timeout_ms: int) -> float:
        """Wait up to ``timeout_ms`` and handle what arrived on every socket; answers ``now``."""
        events = dict(self.sockets.poller.poll(timeout_ms))
        now = time.monotonic()
        for index, sock in enumerate(self.sockets.frontends):
            if sock in events:
                for frames in drain(sock, _BATCH):
                    self.frontend.receive(index, frames, now)
        if self.sockets.backend in events:
            self._drain_backend(now, _BATCH)
        if self._wake is not None and self._wake[0].fileno() in events:
            try:
                self._wake[0].recv(256)
            except BlockingIOError:
                pass
        return now

    def _drain_backend(self, now: float, limit: int = _DRAIN_LIMIT) -> None:
        """Handle what the backend already holds (without waiting)."""
        backend = self.sockets.backend
        if backend is None:
            return
        for frames in drain(backend, limit):
            self.backend.receive(frames, now)

    def _tick(self, now: float) -> None:
        self.notifier.tick(now)
        zeo_pid = self.zeo.pid
        if self.zeo.ensure(now):
            self.children.remove(zeo_pid)
            self.children.add(self.zeo.pid, "zeo")
            self.sockets.publish("zeo.restarted", restarts=self.zeo.restarts)
        if self.config.vllm.enabled:
            self._vllm_events(self.vllm.step(now))
        self.pool.step_env(now)
        self.evolution.step(now)
        self.pool.step(now)
        for entry in self.routing.expire(now, self.config.request_timeout):
            self.sockets.reply_error(entry, "Unavailable", f"no incarnation could take the request "
                                     f"within {self.config.request_timeout:g}s "
                                     f"(state: {self.pool.state})")

    def _vllm_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Record the vLLM server's process in children.json and publish what it did."""
        for kind, data in events:
            if kind == "vllm.starting":
                self.children.add(data["pid"], "vllm")
            elif kind == "vllm.exited":
                self.children.remove(data["pid"])
            self.sockets.publish(kind, **data)

    # --- shutdown -------------------------------------------------------------------

    def _shutdown(self) -> None:
        self.pool.state = "stopping"
        self.notifier.stopping()
        log.info("supervisor stopping")
        if self.sockets.opened:
            self.sockets.publish("supervisor.stopping")
            for entry in self.routing.drop_pending():
                self.sockets.reply_error(entry, "Unavailable", "the supervisor is shutting down")
            self._drain(time.monotonic() + self.config.stop_grace)
            self.pool.shutdown()
        vllm_pid = self.vllm.pid
        if vllm_pid is not None:
            self.vllm.stop()
            self.children.remove(vllm_pid)
        self.build_watch.cancel.set()
        self.worker.shutdown(wait=True, cancel_futures=True)
        self.zeo.stop()
        self.children.path.unlink(missing_ok=True)
        if self._wake is not None:
            signal.set_wakeup_fd(-1)
        self.sockets.close()
        if self._wake is not None:
            for end in self._wake:
                end.close()
        log.info("supervisor stopped")

    def _drain(self, deadline: float) -> None:
        """Let in-flight requests finish (their replies still reach their clients); new
        requests meanwhile are answered ``Unavailable`` (state ``stopping``)."""
        while self.routing.inflight and time.monotonic() < deadline:
            self._pump(50)
            for inc in self.pool.incarnations.values():
                if inc.proc.poll() is not None:
                    for entry in self.routing.orphan(inc.id):
                        self.sockets.reply_error(entry, "Unavailable",
                                                 "the supervisor is shutting down")
