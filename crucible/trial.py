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

How workers start (the same worker, the same lock, either way; the argv,
environment and sandbox are ``trial_launch``'s, the process handles and the
thread that starts them ``trial_process``'s):

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
its own worker). Workers are started by one long-lived thread owned by the
runner (``trial_process.Starter``), because ``PR_SET_PDEATHSIG`` fires when
the *thread* that started a child ends, and callers' threads may be
short-lived. ``close`` kills every worker and stops that thread; the runner is
also a context manager.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import Future
from typing import Any

from .errors import TrialUnavailable
from .policy import TrialLimits
from .proposal import Proposal
from .trial_launch import ImageRef, worker_command, worker_env, worker_launch
from .trial_process import Starter, Worker

__all__ = ["ImageRef", "TrialRunner", "worker_command", "worker_env"]

STARTUP_TIMEOUT = 60.0


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
        launch = worker_launch(image, spawner=spawner, confine=self.confine, network=network)
        #: the OS sandbox the workers run in, or why they run outside one
        self.sandbox = launch.sandbox
        self._exit_status = launch.exit_status
        self._lock = threading.Lock()
        self._live: set[Worker] = set()
        self._closed = False
        self._starter = Starter(launch, self._reaped, server=spawner)
        self._starter.start()
        self._spare: Future[Any] | None = self._starter.spawn()

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

    def _take(self) -> Worker:
        with self._lock:
            if self._closed:
                raise TrialUnavailable("the trial runner is closed")
            future = self._spare
            self._spare = self._starter.spawn()
        assert future is not None
        proc = future.result(timeout=STARTUP_TIMEOUT)
        worker = Worker(proc)
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
            worker.kill("it did not say ready")
            tail = worker.stderr_tail()
            self._discard(worker)
            raise TrialUnavailable(
                "a trial worker did not start: " + (tail or f"exit status {proc.returncode}")
            )
        return worker

    def _discard(self, worker: Worker) -> None:
        """Kill now, reap in the starter thread; the worker stays live until reaped."""
        worker.signal_kill()
        with self._lock:
            closed = self._closed
        if closed:
            worker.kill()
            worker.close()
            self._reaped(worker)
        else:
            self._starter.reap(worker)

    def _reaped(self, worker: Worker) -> None:
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

    def _exchange(self, worker: Worker, request: dict[str, Any],
                  limits: TrialLimits) -> tuple[str, list[str], dict[str, Any]]:
        try:
            worker.write(request)
        except (OSError, TypeError, ValueError) as exc:
            return "error", [f"cannot hand the proposal to the trial worker: {exc}"], {}
        try:
            answer = worker.read(time.monotonic() + limits.wall_seconds)
        except TimeoutError:
            worker.kill(f"past the wall-clock limit of {limits.wall_seconds:g}s")
            return "fail", [f"the trial ran past the wall-clock limit of {limits.wall_seconds:g}s "
                            "(an endless loop or a blocking call?) and was killed"], {"killed": True}
        if isinstance(answer, dict):
            answer.pop("ready", None)
            status = answer.pop("status", "error")
            reasons = list(answer.pop("reasons", []) or [])
            if status not in ("pass", "fail", "error"):
                status, reasons = "error", [f"the trial worker answered {status!r}"]
            return status, reasons, answer
        worker.kill("it ended without answering")
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
        """Kill every worker (the spare included) and stop the starter thread; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            spare, self._spare = self._spare, None
            live = list(self._live)
            self._live.clear()
        self._starter.stop()
        if spare is not None:
            try:
                live.append(Worker(spare.result(timeout=STARTUP_TIMEOUT)))
            except Exception:  # noqa: BLE001 - a spare that never started has nothing to kill
                pass
        self._starter.join(timeout=10)
        with self._lock:  # whatever the starter did not reap before it stopped
            live += list(self._live)
            self._live.clear()
        for worker in live:
            worker.kill()
            worker.close()
