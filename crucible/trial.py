"""The trial stage: run the proposal on the receiver's real state, in a throwaway process.

``TrialRunner`` owns the worker processes (``crucible.trial_worker``). It
keeps ONE warm spare that has already imported the image machinery (and, for
ZEO, connected) and waits on its pipe; each trial uses one worker exactly
once, after which it is killed, and a new spare is started at once. What the
worker does is described in ``crucible.trial_worker``; here the parent

* enforces the wall-clock limit, killing the worker's process group
  (workers run in their own session) when it passes;
* turns the worker's answer, or how it died (SIGPROF/SIGXCPU: the CPU
  limit; our SIGKILL: the wall clock; any other signal or a silent exit),
  into a ``StageVerdict`` with specific reasons.

How workers start (the same worker, the same lock, either way):

* inside a confined incarnation, which can neither fork nor exec, through the
  fork-server it started before locking itself (``spawner``, an
  ``envs.spawner.Spawner`` whose table has ``worker_command()``);
* elsewhere (``batos crucible check``, tests, an ``--unconfined`` incarnation)
  directly, wrapped in the OS sandbox (``envs.sandbox.wrap``) when one is
  available and ``confine`` is true.

With ``confine`` true (the default) every worker locks itself with
``envs.confine.lock`` before it touches the proposal, exactly as the live
incarnation does; a worker that cannot lock itself does not start, and the
trial is an error, never an unconfined pass.

Threads: ``run`` may be called from any thread, several at once (each takes
its own worker). Workers are started by one long-lived spawner thread owned by
the runner, because ``PR_SET_PDEATHSIG`` fires when the *thread* that started
a child ends, and callers' threads may be short-lived. ``close`` kills every
worker and stops the spawner; the runner is also a context manager.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.confine import ARENA_MAX
from envs.errors import EnvError

from .errors import TrialUnavailable
from .policy import TrialLimits
from .proposal import Proposal
from .trial_worker import MAX_FRAME

__all__ = ["ImageRef", "TrialRunner", "worker_command", "worker_env"]

_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 60.0
_HEADER = 4
WORKER_MODULE = "crucible.trial_worker"
#: the live lock's network setting, for workers the fork-server starts ("1"/"0")
NETWORK_VARIABLE = "BATOS_CONFINE_NETWORK"
#: "1" in the fork-server's table: workers lock themselves whatever their argv says (a
#: request to the fork-server cannot ask for an unlocked worker)
REQUIRED_VARIABLE = "BATOS_CONFINE_REQUIRED"


_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "BATOS_SANDBOX",
             "BATOS_UNSAFE_TEST_EXPOSE_OS", "BATOS_MEMORY_MB")
_ENV_PREFIXES = ("BATOS_BUDGET_",)


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The trial worker's whole environment, from ``base`` (default ours): batos importable,
    and only what the live path reads (budgets, the sandbox marker, the test-only switch);
    never the caller's secrets (API keys, tokens)."""
    base = dict(os.environ if base is None else base)
    env = {k: v for k, v in base.items() if k in _ENV_KEPT or k.startswith(_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_ROOT), base.get("PYTHONPATH", "")) if p)
    # as in the live process (envs.confine): arenas must not eat the memory budget
    env["MALLOC_ARENA_MAX"] = str(ARENA_MAX)
    return env


def worker_command(*, network: bool = True) -> Any:
    """The fork-server table entry (``envs.spawner.Command``) that runs trial workers;
    ``network``: what the live process lock allows, which the workers' lock copies."""
    from envs.spawner import Command

    env = {**worker_env(), NETWORK_VARIABLE: "1" if network else "0", REQUIRED_VARIABLE: "1"}
    return Command("crucible-trial", sys.executable, (WORKER_MODULE,), env=env,
                   cwd=str(_ROOT), max_args=1)


@dataclass(frozen=True)
class ImageRef:
    """Where the trial worker finds the image: a FileStorage ``path`` or a ``zeo`` address.

    ``allowed_packages`` are distribution names whose top-level modules methods
    may import: the worker applies the same allowlist as the incarnation.
    """

    path: str | None = None
    zeo: str | None = None
    allowed_packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.path is None) == (self.zeo is None):
            raise ValueError("an ImageRef names exactly one of path or zeo")
        object.__setattr__(self, "allowed_packages", tuple(self.allowed_packages))


def _sandboxed(argv: list[str], image: ImageRef, env: dict[str, str], *,
               network: bool) -> tuple[list[str], str | None]:
    """``argv`` in the OS sandbox (``envs.sandbox``) and None, or ``argv`` and why not."""
    try:
        from envs import sandbox
    except ImportError:
        return argv, "no OS sandbox (envs.sandbox is not there)"
    reason = sandbox.available()
    if reason is not None:
        return argv, reason
    read_only = [str(_ROOT)]
    read_write: list[str] = []
    if image.path:
        read_only += [p for p in (image.path, f"{image.path}.index") if os.path.exists(p)]
    elif image.zeo and "/" in image.zeo:
        # A Unix socket: connecting needs it visible, not writable (connect() works on a
        # read-only mount). Its folder, not the file: a bind pins the file's inode, so a
        # socket ZEO recreated (a restart) would be unreachable through a file grant.
        read_only.append(os.path.dirname(os.path.abspath(image.zeo)))
    try:
        return sandbox.wrap(argv, python=sys.executable, read_only=read_only,
                            read_write=read_write, network=network, env=env), None
    except EnvError as exc:
        return argv, f"the OS sandbox refused the worker's profile: {exc}"


class _Worker:
    """One worker process: a ``subprocess.Popen`` (started here) or an
    ``envs.spawner.Process`` (started by the fork-server, which also signals it)."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.out = proc.stdout.fileno()
        self.inp = proc.stdin.fileno()
        self.ready = False

    def read(self, deadline: float) -> Any:
        """The next frame, None on EOF; raises TimeoutError at the deadline."""
        import ormsgpack

        header = self._exact(_HEADER, deadline)
        if header is None:
            return None
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME:
            raise TrialUnavailable(f"the trial worker sent a frame of {size} bytes")
        body = self._exact(size, deadline)
        return None if body is None else ormsgpack.unpackb(body)

    def _exact(self, n: int, deadline: float) -> bytes | None:
        chunks: list[bytes] = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.out], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.out, min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def write(self, value: Any) -> None:
        import ormsgpack

        body = ormsgpack.packb(value)
        data = memoryview(len(body).to_bytes(_HEADER, "big") + body)
        while data:
            data = data[os.write(self.inp, data):]

    def signal_kill(self) -> None:
        """SIGKILL the worker's process group (it runs in its own session); no wait."""
        if self.proc.returncode is None:
            if not isinstance(self.proc, subprocess.Popen):
                try:
                    self.proc.kill()  # the fork-server signals the worker's group
                except Exception:  # noqa: BLE001 - a fork-server gone took its workers along
                    pass
                return
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def kill(self) -> None:
        self.signal_kill()
        self.proc.wait()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def stderr_tail(self) -> str:
        if self.proc.stderr is None or self.proc.poll() is None:
            return ""
        try:
            data = self.proc.stderr.read(1 << 16) or b""
        except (OSError, ValueError):
            data = b""
        finally:
            self.proc.stderr.close()
        return data.decode("utf-8", "replace").strip()[-1500:]


class _Spawner(threading.Thread):
    """The one thread that starts workers (see the module docstring for why) and reaps
    used ones, so that neither costs the caller of ``run`` any time."""

    def __init__(self, argv: list[str], env: dict[str, str], reaped: Any,
                 server: Any = None) -> None:
        super().__init__(name="crucible-trial-spawner", daemon=True)
        self.argv, self.env, self.reaped, self.server = argv, env, reaped, server
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def spawn(self) -> Future[Any]:
        future: Future[Any] = Future()
        self.requests.put(future)
        return future

    def reap(self, worker: _Worker) -> None:
        self.requests.put(worker)

    def stop(self) -> None:
        self.requests.put(None)

    def run(self) -> None:
        while (item := self.requests.get()) is not None:
            if isinstance(item, _Worker):
                item.kill()
                item.close()
                self.reaped(item)
                continue
            if not item.set_running_or_notify_cancel():
                continue
            try:
                if self.server is not None:
                    proc = self.server.spawn(self.argv)
                else:
                    proc = subprocess.Popen(
                        self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, bufsize=0, env=self.env, cwd=str(_ROOT),
                        start_new_session=True, close_fds=True,
                    )
            except (OSError, EnvError) as exc:
                item.set_exception(TrialUnavailable(f"cannot start a trial worker: {exc}"))
            else:
                item.set_result(proc)


class TrialRunner:
    """Runs proposals in single-use worker processes against one image.

    ``spawner``: the fork-server to start workers through (a confined incarnation's);
    None starts them here, in the OS sandbox when one is available and ``confine``.
    ``confine``: workers lock themselves (``envs.confine``) as the live process does;
    False only where the live process is unconfined too (``--unconfined``).
    ``network``: what the live lock allows (``envs.confine.lock(network=...)``); None:
    the fork-server's table says it (``worker_command``); started here, only what the
    image needs (a ZEO server over TCP).
    """

    def __init__(self, image: ImageRef, limits: TrialLimits | None = None, *,
                 spawner: Any = None, confine: bool = True, network: bool | None = None) -> None:
        self.image = image
        self.limits = limits or TrialLimits()
        self.confine = bool(confine)
        parent = spawner.server_pid if spawner is not None else os.getpid()
        if spawner is None and network is None:
            network = bool(image.zeo and "/" not in image.zeo)
        config = {"path": str(image.path) if image.path else None, "zeo": image.zeo,
                  "allowed_packages": list(image.allowed_packages), "parent": parent,
                  "confine": self.confine, "network": network}
        env = worker_env()
        argv = [sys.executable, "-m", WORKER_MODULE, json.dumps(config)]
        self._exit_status = None
        # the OS sandbox the workers run in, or why they run outside one
        if spawner is not None:
            self.sandbox = "the incarnation's (workers start through its fork-server)"
        elif self.confine:
            # inside bwrap the worker's parent is the sandbox's init, not us: bwrap's
            # --die-with-parent ties it to this process instead of its ppid check
            wrapped_config = {**config, "parent": None}
            wrapped = [sys.executable, "-m", WORKER_MODULE, json.dumps(wrapped_config)]
            wrapped, reason = _sandboxed(wrapped, image, env, network=bool(network))
            self.sandbox = "bwrap" if reason is None else f"none: {reason}"
            if reason is None:
                from envs.sandbox import exit_status

                argv, self._exit_status = wrapped, exit_status
        else:
            self.sandbox = "none: unconfined"
        self._lock = threading.Lock()
        self._live: set[_Worker] = set()
        self._closed = False
        self._spawner = _Spawner(argv, env, self._reaped, server=spawner)
        self._spawner.start()
        self._spare: Future[Any] | None = self._spawner.spawn()

    def __enter__(self) -> TrialRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def live_pids(self) -> list[int]:
        """Pids of the workers this runner holds now (the spare included, once started)."""
        with self._lock:
            pids = [w.proc.pid for w in self._live]
            spare = self._spare
        if spare is not None and spare.done() and spare.exception() is None:
            pids.append(spare.result().pid)
        return pids

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise TrialUnavailable("the trial runner is closed")
            future = self._spare
            self._spare = self._spawner.spawn()
        assert future is not None
        proc = future.result(timeout=STARTUP_TIMEOUT)
        worker = _Worker(proc)
        with self._lock:
            self._live.add(worker)
            if self._closed:
                self._live.discard(worker)
                worker.kill()
                raise TrialUnavailable("the trial runner is closed")
        try:
            hello = worker.read(time.monotonic() + STARTUP_TIMEOUT)
        except TimeoutError:
            hello = None
        if not (isinstance(hello, dict) and hello.get("ready")):
            worker.kill()
            tail = worker.stderr_tail()
            self._discard(worker)
            raise TrialUnavailable(
                "a trial worker did not start: " + (tail or f"exit status {proc.returncode}")
            )
        return worker

    def _discard(self, worker: _Worker) -> None:
        """Kill now, reap in the spawner thread; the worker stays live until reaped."""
        worker.signal_kill()
        with self._lock:
            closed = self._closed
        if closed:
            worker.kill()
            worker.close()
            self._reaped(worker)
        else:
            self._spawner.reap(worker)

    def _reaped(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)

    def run(self, proposal: Proposal, *, receiver: str, selector: str, args: list[Any],
            required: bool = True) -> Any:
        """The trial's ``StageVerdict``: run ``selector`` with ``args`` on ``receiver``."""
        from .verdict import StageVerdict

        started = time.perf_counter()
        limits = self.limits
        request = {"receiver": receiver, "selector": selector, "args": list(args or []),
                   "source": proposal.source, "acts": proposal.acts,
                   "limits": limits.model_dump()}
        status, reasons, detail = "error", [], {}
        try:
            worker = self._take()
        except TrialUnavailable as exc:
            reasons = [str(exc)]
        else:
            try:
                status, reasons, detail = self._exchange(worker, request, limits)
            finally:
                self._discard(worker)
        detail["wall_ms"] = round((time.perf_counter() - started) * 1000, 3)
        detail.setdefault("sandbox", self.sandbox)
        return StageVerdict(stage="trial", status=status, required=required, reasons=reasons,
                            detail=detail, elapsed_ms=detail["wall_ms"])

    def _exchange(self, worker: _Worker, request: dict[str, Any],
                  limits: TrialLimits) -> tuple[str, list[str], dict[str, Any]]:
        try:
            worker.write(request)
        except (OSError, TypeError, ValueError) as exc:
            return "error", [f"cannot hand the proposal to the trial worker: {exc}"], {}
        try:
            answer = worker.read(time.monotonic() + limits.wall_seconds)
        except TimeoutError:
            worker.kill()
            return "fail", [f"the trial ran past the wall-clock limit of {limits.wall_seconds:g}s "
                            "(an endless loop or a blocking call?) and was killed"], {"killed": True}
        if isinstance(answer, dict):
            answer.pop("ready", None)
            status = answer.pop("status", "error")
            reasons = list(answer.pop("reasons", []) or [])
            if status not in ("pass", "fail", "error"):
                status, reasons = "error", [f"the trial worker answered {status!r}"]
            return status, reasons, answer
        worker.kill()
        code = worker.proc.returncode
        if self._exit_status is not None:  # bwrap says 128+N for a command killed by N
            code = self._exit_status(code)
        return "fail", [self._death(code, limits, worker.stderr_tail())], {"exit": code}

    @staticmethod
    def _death(code: int | None, limits: TrialLimits, tail: str) -> str:
        if code in (-signal.SIGPROF, -signal.SIGXCPU):
            return (f"the trial used more than its CPU limit of {limits.cpu_seconds:g}s "
                    "and was killed")
        if code == -signal.SIGXFSZ:
            return "the trial tried to write a file and was killed"
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
            if name == "SIGKILL":
                return ("the trial worker was killed (SIGKILL), likely by its memory budget "
                        "or the system's OOM killer")
            return f"the trial worker died of {name} without answering"
        return f"the trial worker exited with status {code} without answering: {tail[-500:]}"

    def close(self) -> None:
        """Kill every worker (the spare included) and stop the spawner; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            spare, self._spare = self._spare, None
            live = list(self._live)
            self._live.clear()
        self._spawner.stop()
        if spare is not None:
            try:
                live.append(_Worker(spare.result(timeout=STARTUP_TIMEOUT)))
            except Exception:  # noqa: BLE001 - a spare that never started has nothing to kill
                pass
        self._spawner.join(timeout=10)
        with self._lock:  # whatever the spawner did not reap before it stopped
            live += list(self._live)
            self._live.clear()
        for worker in live:
            worker.kill()
            worker.close()
