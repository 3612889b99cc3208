"""A UVM incarnation's serving object: the image served to the supervisor over the backend.

``Incarnation.run`` opens the image through the supervisor's ZEO server (bootstrapping
it if it is new), connects a DEALER to the backend with its id as identity, says
``Ready`` (pid, env id, package versions, what confinement applied), heartbeats, and
serves requests: each ``send``/``describe`` runs as one kernel transaction with the
request's id, so a request resent after a crash runs at most once. Every
``maintenance`` seconds the exactly-once record is pruned. ``Stop`` or ``stop()``
(SIGTERM) stops taking requests, lets those in flight finish, says ``Bye``; ``run``
answers 0.

The process around it (arguments, the process lock, the fork-server, which mind and
inquiry loop) is the composition root's, ``batos.root.incarnation``: this module
imports nothing of ``crucible``, ``weaver``, ``supervisor`` or ``batos``. What it
serves with is injected: ``mind`` builds the mind (a ``uvm.synthesis.Synthesizer``;
none, doesNotUnderstand: answers ``NoMind``), ``close_mind`` stops it,
``start_inquiry(kernel, publish)`` starts the inquiry loop (a handle with ``touch()``
and ``stop()``, or None); ``spawner`` is the fork-server (``envs.spawner``) the process
starts children through, closed at the end; ``confinement`` what the lock applied.

Backend frames (docs/protocol.md; tags in ``lexicon.frames``): supervisor ->
incarnation ``[REQUEST, request]`` or ``[CONTROL, control]``; incarnation ->
supervisor ``[REPLY, id, reply]`` or ``[CONTROL, control]``. Control frames in are
acted on by ``uvm.control`` (``Stop``, ``Quarantine``, ``Validate``).

Boundaries: the event loop owns the socket and never touches ZODB; the kernel runs
in the ``AsyncKernel`` worker threads. Methods may import the top-level modules of
the env spec's packages (``packages``; ``uvm.allowlist``). ``publish(kind, **data)``
sends an image event (``image.*``) for the supervisor to re-publish on its event
stream; it may be called from the loop or from any worker thread (the send itself
always runs in the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import resource
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from typing import Any

import zmq
import zmq.asyncio

from bridge.codec import decode_request, encode
from bridge.errors import BridgeError, ProtocolError
from bridge.messages import (
    MAX_PUBLISH_BYTES,
    Bye,
    ErrorInfo,
    Heartbeat,
    Publish,
    Ready,
    Reply,
)
from lexicon.frames import CONTROL, REPLY, REQUEST

from .allowlist import set_allowed, top_level_modules
from .budget_link import BudgetLink, limits_from_args
from .control import on_control
from .errors import InvalidValue, UVMError
from .front import AsyncKernel
from .genesis import bootstrap
from .image import open_db
from .kernel import Kernel

__all__ = ["Incarnation", "installed_packages"]

log = logging.getLogger("batos.incarnation")


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
        self.served = 0
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
        db = open_db(zeo=self.zeo, pool_size=self.workers + 4)
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
            ctx = zmq.asyncio.Context()
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 2000)
            sock.setsockopt(zmq.IDENTITY, self.ident.encode())
            sock.connect(self.backend)
            self.sock = sock
            try:
                async with AsyncKernel(kernel, workers=self.workers) as front:
                    self.front = front
                    self._settle_memory()
                    await self._control(Ready(
                        incarnation=self.ident, pid=os.getpid(), env_id=self.env_id,
                        packages=installed_packages(), python=sys.version.split()[0],
                        confinement=self._confinement_report(),
                        quarantined=await self.link.listing(),
                    ))
                    log.info("ready: %s", self.ident)
                    background = [asyncio.create_task(self._beat()),
                                  asyncio.create_task(self._maintain(kernel))]
                    self._serving = asyncio.create_task(self._serve())
                    try:
                        await self._serving
                    except asyncio.CancelledError:
                        if not self._stopping.is_set():
                            raise
                    finally:
                        for task in background:
                            task.cancel()
                    if self._tasks:
                        await asyncio.wait(self._tasks)
                await self._control(Bye(incarnation=self.ident, reason="stopped"))
            finally:
                sock.close()
                ctx.term()
        finally:
            if self.inquiry is not None:
                await asyncio.to_thread(self.inquiry.stop)
            if mind is not None and self.close_mind is not None:
                self.close_mind(mind)
            db.close()
            if self.spawner is not None:
                self.spawner.close()  # its remaining children (trial workers) die with it
        return 0

    def _settle_memory(self) -> None:
        """Every thread, library and the storage are up: the memory budget becomes the
        headroom over what this process holds now (``envs.confine.settle_memory``), as a
        trial worker's is over what it holds when its trial begins."""
        if self.confinement is None:
            return
        from envs.confine import settle_memory

        # the message workers' threads start at their first message: their stacks (the
        # pthread default, RLIMIT_STACK) are counted as held already
        stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
        stack = 8 << 20 if stack == resource.RLIM_INFINITY else stack
        settled = settle_memory(pending=self.workers * (stack + (64 << 10)))
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
            try:
                bootstrap(db)
                return
            except Exception as exc:  # a concurrent first bootstrap can conflict: retry
                if "Conflict" not in type(exc).__name__:
                    raise
        bootstrap(db)

    def stop(self) -> None:
        """Stop taking requests; those in flight finish. Called in the loop."""
        self._stopping.set()
        if self._serving is not None:
            self._serving.cancel()

    def track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (a request or a validation) as a task that ``run`` waits for
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
        while True:
            await asyncio.sleep(self.heartbeat)  # a period, not a readiness wait
            await self._control(Heartbeat(incarnation=self.ident, served=self.served,
                                          busy=len(self._tasks),
                                          quarantined=self.link.reported() if self.link else None))

    async def _maintain(self, kernel: Kernel) -> None:
        while True:
            await asyncio.sleep(self.maintenance)  # a period, not a readiness wait
            try:
                dropped = await self.front.run(kernel.maintain)
                if dropped:
                    log.info("pruned %d exactly-once records", dropped)
            except UVMError as exc:
                log.warning("reply record maintenance failed: %s", exc)

    async def _serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            if len(frames) >= 2 and frames[0] == REQUEST:
                self.track(self._handle(frames[1]))
            elif len(frames) >= 2 and frames[0] == CONTROL:
                quarantine = on_control(self, frames[1])
                if quarantine is not None:  # committed before the next frame is read
                    await quarantine
            else:
                log.warning("unexpected backend frames (%d)", len(frames))

    async def _handle(self, frame: bytes) -> None:
        try:
            request = decode_request(frame)
        except ProtocolError as exc:
            log.warning("bad request from supervisor: %s", exc)
            return
        if self.inquiry is not None:
            self.inquiry.touch()  # a client asked: not idle
        try:
            if request.kind == "send":
                result = await self.front.send(request.target, request.selector, request.args,
                                               author=request.author, request_id=request.id)
            elif request.kind == "describe":
                result = await self.front.send(request.target, "describe", [])
            else:
                raise UVMError(f"an incarnation does not answer {request.kind!r} requests")
            reply = Reply(id=request.id, ok=True, result=result)
        except UVMError as exc:
            reply = Reply(id=request.id, ok=False, error=ErrorInfo(
                type=type(exc).__name__, message=str(exc), where=self.ident))
        except Exception as exc:
            log.exception("request %s failed unexpectedly", request.id)
            reply = Reply(id=request.id, ok=False, error=ErrorInfo(
                type="InternalError", message=f"{type(exc).__name__}: {exc}", where=self.ident))
        self.served += 1
        try:
            payload = encode(reply)
        except ProtocolError as exc:
            payload = encode(Reply(id=request.id, ok=False, error=ErrorInfo(
                type="UnserializableResult", message=str(exc), where=self.ident)))
        await self._send([REPLY, request.id.encode(), payload])


def _done(value: bool) -> concurrent.futures.Future[bool]:
    future: concurrent.futures.Future[bool] = concurrent.futures.Future()
    future.set_result(value)
    return future


def _done(value: bool) -> concurrent.futures.Future[bool]:
    future: concurrent.futures.Future[bool] = concurrent.futures.Future()
    future.set_result(value)
    return future
