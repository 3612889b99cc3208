"""A UVM incarnation: the disposable process that serves the image for the supervisor.

Run by the supervisor inside an environment built by ``envs``::

    python -m uvm.incarnation --backend ipc://.../be.sock --zeo .../zeo.sock \
        --id inc-3 --env-id 4f2a... [--workers 4] [--heartbeat 1.0]

It opens the image through the supervisor's ZEO server (bootstrapping it if
it is new), connects a DEALER to the backend with its id as identity, says
``Ready`` (pid, env id, package versions), heartbeats, and serves requests:
each ``send``/``describe`` runs as one kernel transaction with the request's
id, so a request resent after a crash runs at most once.

Backend frames (see docs/protocol.md): supervisor -> incarnation
``[b"Q", request]`` or ``[b"C", control]``; incarnation -> supervisor
``[b"R", id, reply]`` or ``[b"C", control]``.

Boundaries: the event loop owns the socket and never touches ZODB; the
kernel runs in the ``AsyncKernel`` worker threads. ``Stop`` or SIGTERM stops
taking requests, lets those in flight finish, says ``Bye`` and exits 0.
A mind (``uvm.mindkit``: ``BATOS_MIND_CONFIG`` or ``BATOS_MIND_*`` in the
environment) makes doesNotUnderstand: synthesize; none configured, it answers
``NoMind``. ``Validate`` (a handover's candidate) runs ``uvm.validation.validate_image``
in a thread and answers ``Validated``. Methods may import the top-level
modules of the env spec's packages (``--packages``; ``uvm.allowlist``).
Every ``maintenance`` seconds the exactly-once record is pruned.

Confinement (docs/design.md, issue 11): ``main`` first starts the fork-server
(``envs.spawner``: the only way this process starts children afterwards, from
a fixed table: crucible trial workers, the inquiry loop's training runs), then
locks the whole process (``envs.confine.lock``: no exec, no fork, no signals
to others, no namespaces or mounts, the kernel's dangerous surface shut,
rlimits: ``--memory-mb`` MiB of headroom, the same as its trial workers get,
``envs.confine.memory_budget``; ``--cpu-seconds``), all before asyncio, ZMQ or
ZODB start a thread and before any image code (bootstrap included) runs.
``Ready`` carries what was applied (``confinement``). A missing mechanism ends
the start with exit status 3 and the reason; ``--unconfined`` (the operator's
``batos up --unconfined``) skips both, with a warning in the log, and its trial
workers run unlocked too: the trial is always the live path.
``publish(kind, **data)`` sends an image event (``image.*``) for the supervisor
to re-publish on its event stream; it may be called from the loop or from any
worker thread (the send itself always runs in the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import zmq
import zmq.asyncio

from bridge.codec import decode_control, decode_request, encode
from bridge.errors import BridgeError, ProtocolError
from bridge.messages import (
    MAX_PUBLISH_BYTES,
    Bye,
    ErrorInfo,
    Heartbeat,
    Publish,
    Quarantine,
    Ready,
    Reply,
    Stop,
    Validate,
    Validated,
)

from .allowlist import set_allowed, top_level_modules
from .budget_link import BudgetLink, add_budget_arguments, limits_from_args
from .errors import InvalidValue, UVMError
from .front import AsyncKernel
from .genesis import bootstrap
from .image import open_db
from .kernel import Kernel
from .mindkit import build_mind, close_mind, table_from_env
from .validation import validate_image

__all__ = ["Incarnation", "main"]

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
            mind = await asyncio.to_thread(build_mind, zeo=self.zeo, packages=self.packages,
                                           spawner=self.spawner,
                                           confine=self.confinement is not None)
            log.info("mind: %s", "none configured" if mind is None else
                     f"{type(mind.chat).__name__} {getattr(mind.chat, 'model', '')}")
            kernel = Kernel(db, mind=mind, limits=self.budget)
            self.link = BudgetLink(self, kernel)
            self.link.enable()  # over-budget messages are reported, stuck ones end the process
            self.inquiry = await asyncio.to_thread(self._start_inquiry, kernel)
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
            close_mind(mind)
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

    def _start_inquiry(self, kernel: Kernel) -> Any:
        """The Characterological Inquiry Loop, when ``BATOS_INQUIRY_CONFIG`` names a base
        model and a vLLM server (the supervisor's ``[inquiry]`` and ``[vllm]`` tables)."""
        table = table_from_env("BATOS_INQUIRY_CONFIG")
        base, url = table.get("base_model"), table.get("vllm_url")
        if not (base and url):
            log.info("inquiry loop: off (no base_model and vllm_url in BATOS_INQUIRY_CONFIG)")
            return None
        from .inquiry_root import start_inquiry  # the training stack's runtime, only when used

        home = _inquiry_home(table, self.image)
        rest = {k: v for k, v in table.items() if k not in ("base_model", "vllm_url", "home")}
        log.info("inquiry loop: watching (base %s, server %s)", base, url)
        return start_inquiry(kernel, publish=self.publish, home=home, base_model=base,
                             vllm_url=url, table=rest, spawner=self.spawner)

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

    async def _send(self, frames: list[bytes]) -> None:
        async with self._send_lock:
            await self.sock.send_multipart(frames)

    async def _control(self, message: Any) -> None:
        await self._send([b"C", encode(message)])

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
        await self._send([b"C", frame])
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
            if len(frames) >= 2 and frames[0] == b"Q":
                task = asyncio.create_task(self._handle(frames[1]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif len(frames) >= 2 and frames[0] == b"C":
                quarantine = self._on_control(frames[1])
                if quarantine is not None:  # committed before the next frame is read
                    await quarantine
            else:
                log.warning("unexpected backend frames (%d)", len(frames))

    def _on_control(self, frame: bytes) -> Any:
        """Act on a control frame; a ``Quarantine`` answers the coroutine that applies it,
        which ``_serve`` awaits before it reads the next frame."""
        try:
            message = decode_control(frame)
        except ProtocolError as exc:
            log.warning("bad control frame: %s", exc)
            return None
        if isinstance(message, Stop):
            log.info("stop requested: %s", message.reason)
            self.stop()
        elif isinstance(message, Quarantine) and self.link is not None:
            return self.link.apply_quarantine(message)
        elif isinstance(message, Validate):
            task = asyncio.create_task(self._validate(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return None

    def _validate_image(self, message: Validate) -> dict[str, Any]:
        # The walk reads the image file read-only when we know it (no lock; about 3x
        # faster than through ZEO, and it spares the ZEO server the live incarnation
        # shares); the checks and the rest still run through ZEO.
        walk_db = None
        if self.image:
            try:
                walk_db = open_db(self.image, read_only=True)
            except UVMError as exc:
                log.warning("validating through ZEO: cannot open %s read-only: %s", self.image, exc)
        try:
            return validate_image(self.db, packages=message.packages,
                                  removed_modules=message.removed_modules, walk_db=walk_db,
                                  limits=self.budget)
        finally:
            if walk_db is not None:
                walk_db.close()

    async def _validate(self, message: Validate) -> None:
        """Prove this incarnation against the image (a handover's validate phase)."""
        try:
            record = await asyncio.to_thread(self._validate_image, message)
        except Exception as exc:
            log.exception("validation crashed")
            record = {"ok": False, "failures": [f"validation raised {type(exc).__name__}: {exc}"]}
        log.info("validation for %s: ok=%s", message.handover, record.get("ok"))
        await self._control(Validated(incarnation=self.ident, handover=message.handover,
                                      ok=bool(record.get("ok")), record=record))

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
        await self._send([b"R", request.id.encode(), payload])


def _done(value: bool) -> concurrent.futures.Future[bool]:
    future: concurrent.futures.Future[bool] = concurrent.futures.Future()
    future.set_result(value)
    return future


def _inquiry_home(table: dict[str, Any], image: str | None) -> str:
    """Where the inquiry loop keeps its folders (its training envs under ``train-envs``)."""
    return str(table.get("home") or (os.path.dirname(image) if image else "."))


_UNCONFINED_WARNING = (
    "RUNNING UNCONFINED (--unconfined): no process lock, no fork-server; image code runs with "
    "this process's full power over files, processes and the network")


def _needs_network(backend: str, zeo: str) -> bool:
    """Whether this process talks TCP: a TCP storage or backend, or a mind or inquiry
    server named by URL (the lock then allows AF_INET/AF_INET6 sockets)."""
    if not zeo.startswith("/") or not backend.startswith("ipc://"):
        return True
    mind = table_from_env("BATOS_MIND_CONFIG")
    inquiry = table_from_env("BATOS_INQUIRY_CONFIG")
    return bool(mind.get("base_url") or os.environ.get("BATOS_MIND_URL", "").strip()
                or inquiry.get("vllm_url"))


def _mind_configured() -> bool:
    return bool(table_from_env("BATOS_MIND_CONFIG")) or any(
        os.environ.get(f"BATOS_MIND_{name}", "").strip()
        for name in ("URL", "LOCAL", "REPLAY", "RECORD"))


#: address space the process may take between its lock and serving (threads, ZMQ, the
#: storage's cache) beyond the memory budget; then ``envs.confine.settle_memory``
STARTUP_MEMORY_MB = 512


def confine_process(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Start the fork-server, then lock this process (module docstring): (spawner, applied).

    Must run before any thread or image code. Raises ``ConfinementUnavailable`` or
    ``SpawnerUnavailable`` (``envs.errors``) with the reason; nothing is locked then.
    """
    from envs.confine import ARENA_MAX, MEMORY_VARIABLE, lock, memory_budget, unavailable
    from envs.errors import ConfinementUnavailable
    from envs.spawner import Spawner

    reason = unavailable()
    if reason is not None:
        raise ConfinementUnavailable(reason)
    try:
        memory_mb = memory_budget(args.memory_mb)
    except ValueError as exc:
        raise ConfinementUnavailable(str(exc)) from None
    # the trial workers this process starts read the same budget (crucible.trial_worker)
    os.environ[MEMORY_VARIABLE] = str(memory_mb or 0)
    os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENA_MAX))
    network = _needs_network(args.backend, args.zeo) if args.network == "auto" else (
        args.network == "on")
    table = []
    if _mind_configured():  # trial workers exist only with a mind (crucible: its import costs)
        from crucible.trial import worker_command

        table.append(worker_command(network=network))
    inquiry = table_from_env("BATOS_INQUIRY_CONFIG")
    if inquiry.get("base_model") and inquiry.get("vllm_url"):
        from weaver.train_env import default_root, spawner_command

        home = _inquiry_home(inquiry, args.image)
        table.append(spawner_command(default_root(home), base=inquiry["base_model"], work=home))
    if not table:  # nothing this incarnation will ever start: no fork-server at all
        return None, lock(memory_mb=memory_mb, memory_reserve_mb=STARTUP_MEMORY_MB,
                          cpu_seconds=args.cpu_seconds, network=network)
    spawner = Spawner.start(table)
    try:
        applied = lock(memory_mb=memory_mb, memory_reserve_mb=STARTUP_MEMORY_MB,
                       cpu_seconds=args.cpu_seconds, network=network)
    except BaseException:
        spawner.close()
        raise
    return spawner, applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uvm.incarnation")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--zeo", required=True)
    parser.add_argument("--id", required=True, dest="ident")
    parser.add_argument("--env-id", default="current")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--image", help="the image file, read directly (read-only) by validation")
    parser.add_argument("--packages", default="",
                        help="comma-separated distributions of the env spec (their modules may be imported by methods)")
    parser.add_argument("--unconfined", action="store_true",
                        help="no fork-server and no process lock (batos up --unconfined only)")
    parser.add_argument("--memory-mb", default=None,
                        help="MiB of address space the process may add after its lock "
                             "(RLIMIT_AS); 0 or off: none; default BATOS_MEMORY_MB, else "
                             "envs.confine.DEFAULT_MEMORY_MB")
    parser.add_argument("--cpu-seconds", type=int, default=None,
                        help="the process lock's CPU limit over the process's life (RLIMIT_CPU)")
    parser.add_argument("--network", choices=("auto", "on", "off"), default="auto",
                        help="TCP sockets after the lock (auto: when the storage, backend, "
                             "mind or inquiry server is reached over TCP)")
    add_budget_arguments(parser)
    args = parser.parse_args(argv)
    budget = limits_from_args(args, export=True)  # before the fork-server: trials inherit it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s incarnation %(levelname)s %(message)s")
    spawner, applied = None, None
    if args.unconfined:
        log.warning(_UNCONFINED_WARNING)
    else:
        from envs.errors import EnvError

        began = time.perf_counter()
        try:
            spawner, applied = confine_process(args)
            applied["setup_ms"] = round((time.perf_counter() - began) * 1000, 1)
        except EnvError as exc:
            log.error("cannot start confined: %s (the operator may run `batos up --unconfined`)",
                      exc)
            print(f"incarnation {args.ident}: cannot start confined: {exc}", file=sys.stderr)
            return 3
        log.info("confined in %.1f ms: seccomp lock (%d calls denied, network %s), "
                 "fork-server %s", applied["setup_ms"],
                 len(applied["denied"]), "on" if applied["network"] else "off",
                 f"pid {spawner.server_pid}" if spawner is not None else
                 "not needed (no mind, no inquiry: this process starts no child)")
    incarnation = Incarnation(backend=args.backend, zeo=args.zeo, ident=args.ident,
                              env_id=args.env_id, workers=args.workers, heartbeat=args.heartbeat,
                              packages=[p for p in args.packages.split(",") if p],
                              image=args.image, spawner=spawner, confinement=applied)
    incarnation.budget = budget

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, incarnation.stop)
        return await incarnation.run()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
