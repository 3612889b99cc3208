"""A UVM incarnation's serving object: the image served to the supervisor over the backend.

``Incarnation.run`` opens the image through the supervisor's ZEO server (bootstrapping
it if it is new; ``server_sync`` off: each message catches up to the transaction id the
supervisor sends, ``uvm.kernel``), starts ``workers`` request lanes (``uvm.lanes``: each
a DEALER with identity ``f"{id}#{k}"`` and its own thread, which says ``Attach``),
connects its main DEALER with its id as identity, says ``Ready`` (pid, env id, package
versions, what confinement applied, ``lanes``), heartbeats, and serves requests: each
``send``/``describe`` runs as one kernel transaction with the request's id, so a
request resent after a crash runs at most once. Every ``maintenance`` seconds the
exactly-once record is pruned. ``Stop`` or ``stop()`` (SIGTERM) stops taking requests,
lets those in flight and those already in the lanes' sockets finish, says ``Bye``;
``run`` answers 0.

The process around it (arguments, the process lock, the fork-server, which mind and
inquiry loop) is the composition root's, ``batos.root.incarnation``: this module
imports nothing of ``crucible``, ``weaver``, ``supervisor`` or ``batos``. What it
serves with is injected: ``mind`` builds the mind (a ``uvm.synthesis.Synthesizer``;
none, doesNotUnderstand: answers ``NoMind``), ``close_mind`` stops it,
``start_inquiry(kernel, publish)`` starts the inquiry loop (a handle with ``touch()``
and ``stop()``, or None); ``spawner`` is the fork-server (``envs.spawner``) the process
starts children through, closed at the end; ``confinement`` what the lock applied.

Backend frames (docs/protocol.md; tags in ``lexicon.frames``): supervisor ->
incarnation ``[REQUEST, request(, after)]`` or ``[CONTROL, control]``; incarnation ->
supervisor ``[REPLY, id, reply(, tid)]`` or ``[CONTROL, control]``. Requests normally
come to the lanes; the main socket takes them too (handover probes, a lane not yet
attached): decoded in the loop, run on a small executor (``MAIN_WORKERS`` threads),
answered on main the same way, the reply recorded in the shard of the lane its target
belongs to (``uvm.lanes.shard_for``), as if its lane had run it. Control frames on main are acted on by
``uvm.control`` (``Stop``, ``Quarantine``, ``Validate``); a lane applies a
``Quarantine`` itself.

Boundaries: the event loop owns the main socket (control, heartbeats, publish,
maintenance) and never touches ZODB; each lane's thread owns its socket and runs its
messages; the main executor runs main's. Methods may import the top-level modules of
the env spec's packages (``packages``; ``uvm.allowlist``). ``publish(kind, **data)``
sends an image event (``image.*``) for the supervisor to re-publish on its event
stream; it may be called from the loop or from any worker thread (the send itself
always runs in the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import logging
import os
import resource
import sys
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from typing import Any

import zmq
import zmq.asyncio

from bridge.codec import encode
from bridge.errors import BridgeError
from bridge.messages import MAX_PUBLISH_BYTES, Bye, Heartbeat, Publish, Ready
from lexicon.frames import CONTROL, REQUEST

from .allowlist import set_allowed, top_level_modules
from .budget_link import BudgetLink, limits_from_args
from .control import on_control
from .errors import InvalidValue, UVMError
from .genesis import bootstrap
from .image import catch_up, open_db
from .kernel import Kernel
from .lanes import Lanes, Serving, after_frame, shard_for

__all__ = ["MAIN_WORKERS", "Incarnation", "installed_packages"]

log = logging.getLogger("batos.incarnation")

#: threads that run the requests the main socket takes (probes, the lanes' fallback)
MAIN_WORKERS = 2
#: the sockets' LINGER (ms): replies and control frames still queued get this long to leave
LINGER = 2000
#: the longest (seconds) the lanes may take to connect and say Attach
ATTACH_TIMEOUT = 30.0


def installed_packages() -> dict[str, str]:
    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            packages[name.lower()] = dist.version
    return dict(sorted(packages.items()))


class Incarnation:
    def __init__(
        self, *, backend: str, zeo: str, ident: str, env_id: str, workers: int = 4,
        heartbeat: float = 1.0, packages: Sequence[str] = (), maintenance: float = 300.0,
        image: str | None = None, spawner: Any = None,
        confinement: dict[str, Any] | None = None,
        mind: Callable[[], Any] | None = None,
        close_mind: Callable[[Any], None] | None = None,
        start_inquiry: Callable[[Kernel, Callable[..., Any]], Any] | None = None,
    ) -> None:
        self.backend = backend
        self.zeo = zeo
        self.ident = ident
        self.env_id = env_id
        self.workers = workers
        self.heartbeat = heartbeat
        self.packages = list(packages)
        self.image = image
        self.maintenance = maintenance
        self.serving: Serving  # set by run, before any request is taken
        self.lanes: Lanes | None = None
        self._pool = ThreadPoolExecutor(max_workers=MAIN_WORKERS, thread_name_prefix="batos-main")
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._serving: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: set[asyncio.Task[bool]] = set()
        self.inquiry: Any = None
        #: the fork-server this process starts children through (None: unconfined)
        self.spawner = spawner
        #: what the process lock applied; None when this process is not locked
        self.confinement = confinement
        #: builds the mind once the image is there (None: no mind); closes it at the end
        self.build_mind, self.close_mind = mind, close_mind
        #: starts the inquiry loop on the kernel: a handle (touch, stop) or None
        self.start_inquiry = start_inquiry
        #: each message's budget (uvm.budget; --budget-* or BATOS_BUDGET_*)
        self.budget = limits_from_args(argparse.Namespace())
        self.link: BudgetLink | None = None

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        set_allowed(top_level_modules(self.packages))
        db = open_db(zeo=self.zeo, pool_size=self.workers + MAIN_WORKERS + 4, server_sync=False)
        mind = None
        try:
            await asyncio.to_thread(self._bootstrap, db)
            self.db = db
            # a misconfigured mind stops the start here, with the reason in the log
            if self.build_mind is not None:
                mind = await asyncio.to_thread(self.build_mind)
            log.info("mind: %s", "none configured" if mind is None else
                     f"{type(mind.chat).__name__} {getattr(mind.chat, 'model', '')}")
            kernel = Kernel(db, mind=mind, limits=self.budget)
            self.link = BudgetLink(self, kernel)
            self.link.enable()  # over-budget messages are reported, stuck ones end the process
            if self.start_inquiry is not None:
                self.inquiry = await asyncio.to_thread(self.start_inquiry, kernel, self.publish)
            self.serving = Serving(kernel, self.ident, inquiry=self.inquiry)
            ctx = zmq.asyncio.Context()
            try:
                await self._serve_all(ctx, kernel, self.link)
            finally:
                ctx.term()
        finally:
            if self.inquiry is not None:
                await asyncio.to_thread(self.inquiry.stop)
            if mind is not None and self.close_mind is not None:
                self.close_mind(mind)
            self._pool.shutdown(wait=True)
            db.close()
            if self.spawner is not None:
                self.spawner.close()  # its remaining children (trial workers) die with it
        return 0

    async def _serve_all(self, ctx: zmq.asyncio.Context, kernel: Kernel,
                         link: BudgetLink) -> None:
        """The lanes first (each says Attach), then main: Ready, serving until Stop, the
        lanes drained and joined, Bye. Every socket is closed when this returns."""
        lanes = self.lanes = Lanes(
            self.serving, context=zmq.Context.shadow(ctx.underlying), backend=self.backend,
            count=self.workers, linger=LINGER, on_quarantine=link.apply_here,
            on_failure=self._lane_failed)
        await asyncio.to_thread(lanes.start, ATTACH_TIMEOUT)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, LINGER)
        sock.setsockopt(zmq.IDENTITY, self.ident.encode())
        sock.connect(self.backend)
        self.sock = sock
        try:
            self._settle_memory()
            await self._control(Ready(
                incarnation=self.ident, pid=os.getpid(), env_id=self.env_id,
                packages=installed_packages(), python=sys.version.split()[0],
                confinement=self._confinement_report(),
                quarantined=await link.listing(), lanes=self.workers,
            ))
            log.info("ready: %s (%d lanes)", self.ident, self.workers)
            gc.collect()
            gc.freeze()  # what start-up made is kept: full collections skip it from now on
            background = [asyncio.create_task(self._beat()),
                          asyncio.create_task(self._maintain(kernel))]
            self._serving = asyncio.create_task(self._serve())
            try:
                await self._serving
            except asyncio.CancelledError:
                if not self._stopping.is_set():
                    raise
            finally:
                lanes.stop()
                for task in background:
                    task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
            await asyncio.to_thread(lanes.join)
            await self._control(Bye(incarnation=self.ident, reason="stopped"))
        finally:
            lanes.stop()
            sock.close()

    def _lane_failed(self) -> None:
        """A lane ended on its own (logged): stop the incarnation (a lane's thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.stop)

    def _settle_memory(self) -> None:
        """Every thread, library and the storage are up: the memory budget becomes the
        headroom over what this process holds now (``envs.confine.settle_memory``), as a
        trial worker's is over what it holds when its trial begins."""
        if self.confinement is None:
            return
        from envs.confine import settle_memory

        # the lanes are running; the main executor's threads start at their first message:
        # their stacks (the pthread default, RLIMIT_STACK) are counted as held already
        stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
        stack = 8 << 20 if stack == resource.RLIM_INFINITY else stack
        settled = settle_memory(pending=MAIN_WORKERS * (stack + (64 << 10)))
        if settled is not None:
            log.info("memory budget: %d MiB over the %.0f MiB this process holds serving",
                     settled["headroom_mb"], settled["held"] / (1 << 20))

    def _confinement_report(self) -> dict[str, Any]:
        if self.confinement is None:
            return {"mode": "off"}
        applied = self.confinement
        return {"mode": "locked", "seccomp": applied.get("seccomp"),
                "pid": applied.get("pid"),
                "network": applied.get("network"), "rlimits": applied.get("rlimits"),
                "setup_ms": applied.get("setup_ms"),
                "denied": len(applied.get("denied", ())),
                "fork_server": self.spawner.server_pid if self.spawner is not None else None,
                "sandbox": os.environ.get("BATOS_SANDBOX", "none")}

    @staticmethod
    def _bootstrap(db: Any) -> None:
        for _attempt in range(5):
            catch_up(db, None)  # no server_sync: see every commit before this try
            try:
                bootstrap(db)
                return
            except Exception as exc:  # a concurrent first bootstrap can conflict: retry
                if "Conflict" not in type(exc).__name__:
                    raise
        bootstrap(db)

    def stop(self) -> None:
        """Stop taking requests; those in flight, and those already in the lanes'
        sockets, finish. Called in the loop."""
        self._stopping.set()
        if self.lanes is not None:
            self.lanes.stop()
        if self._serving is not None:
            self._serving.cancel()

    def track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (a main request or a validation) as a task that ``run`` waits for
        before it says ``Bye``. Called in the loop."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, frames: list[bytes]) -> None:
        async with self._send_lock:
            await self.sock.send_multipart(frames)

    async def _control(self, message: Any) -> None:
        await self._send([CONTROL, encode(message)])

    def publish(self, kind: str, **data: Any) -> asyncio.Future[bool] | concurrent.futures.Future[bool]:
        """Send an image event of ``kind`` (``image.<words>``) with ``data`` (plain,
        msgpack-able, at most ``MAX_PUBLISH_BYTES`` encoded) for the supervisor to
        re-publish on its event stream.

        Thread-safe and non-blocking: from the loop's thread it answers an
        ``asyncio.Task``, from any other thread a ``concurrent.futures.Future``; either
        resolves to True once the frame is handed to the socket (False when the
        incarnation is not connected or already stopped). Events are best effort, like
        the PUB stream itself. A bad kind or data raises ``InvalidValue`` at once.
        """
        try:
            frame = encode(Publish(incarnation=self.ident, event=kind, data=data))
        except (ValueError, BridgeError) as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidValue(
                f"cannot publish event {kind!r}: the kind is 'image.' followed by letters, "
                f"digits, '_', '.' or '-', and the data plain values ({exc})"
            ) from None
        if len(frame) > MAX_PUBLISH_BYTES:
            raise InvalidValue(f"event {kind!r} takes {len(frame)} bytes; the limit is "
                               f"{MAX_PUBLISH_BYTES}: publish a summary, keep details in the image")
        loop = self._loop
        if loop is None or loop.is_closed() or getattr(self, "sock", None) is None:
            log.debug("event %s dropped: not connected", kind)
            return _done(False)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(self._publish(frame))
            self._events.add(task)
            task.add_done_callback(self._events.discard)
            return task
        try:
            return asyncio.run_coroutine_threadsafe(self._publish(frame), loop)
        except RuntimeError:  # the loop closed meanwhile
            return _done(False)

    async def _publish(self, frame: bytes) -> bool:
        if self.sock.closed:
            return False
        await self._send([CONTROL, frame])
        return True

    async def _beat(self) -> None:
        serving = self.serving
        while True:
            await asyncio.sleep(self.heartbeat)  # a period, not a readiness wait
            await self._control(Heartbeat(incarnation=self.ident, served=serving.served,
                                          busy=serving.busy,
                                          quarantined=self.link.reported() if self.link else None))

    async def _maintain(self, kernel: Kernel) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.maintenance)  # a period, not a readiness wait
            try:
                dropped = await loop.run_in_executor(self._pool, kernel.maintain)
                if dropped:
                    log.info("pruned %d exactly-once records", dropped)
            except UVMError as exc:
                log.warning("reply record maintenance failed: %s", exc)

    async def _serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            if len(frames) >= 2 and frames[0] == REQUEST:
                self._request(frames)
            elif len(frames) >= 2 and frames[0] == CONTROL:
                quarantine = on_control(self, frames[1])
                if quarantine is not None:  # committed before the next frame is read
                    await quarantine
            else:
                log.warning("unexpected backend frames (%d)", len(frames))

    def _request(self, frames: list[bytes]) -> None:
        """A request on main: decoded here, run on the main executor, answered on main."""
        request, error = self.serving.decode(frames[1])
        if error is not None:
            self.track(self._send(error))
        else:
            self.track(self._run(request, after_frame(frames)))

    async def _run(self, request: Any, after: bytes | None) -> None:
        # its lane's shard: a resend on the lane meets this run's record (uvm.replies)
        shard = shard_for(getattr(request, "target", ""), self.workers)
        frames = await asyncio.get_running_loop().run_in_executor(
            self._pool, self.serving.run, request, after, shard)
        await self._send(frames)


def _done(value: bool) -> concurrent.futures.Future[bool]:
    future: concurrent.futures.Future[bool] = concurrent.futures.Future()
    future.set_result(value)
    return future
