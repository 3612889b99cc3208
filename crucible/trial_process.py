"""The parent's side of the trial worker processes: one handle each, one thread to start them.

``Worker`` holds one worker process: a ``subprocess.Popen`` started here, or
an ``envs.spawner.Process`` the fork-server started. It reads and writes the
worker's frames (``trial_frames``), kills it and reads what it left on
stderr. Killing is immediate (SIGKILL, no grace): a worker is single-use and
holds nothing worth closing; it runs in its own session, so the signal goes
to its process group. A worker started here is signalled with the shared
helpers of ``envs.children`` (``kill``, logged, for a worker that no longer
answers; ``signal_group`` for the routine end of a used one); a worker the
fork-server started is signalled by the fork-server, since the confined
process that asked for it may signal nothing but itself. A confined worker
can neither fork nor exec, so it leaves no descendants to chase.

``Starter`` is the one long-lived thread of a ``TrialRunner`` that starts
workers and reaps used ones: ``PR_SET_PDEATHSIG`` fires when the *thread*
that started a child ends, and the callers' threads may be short-lived.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from envs.children import kill, signal_group
from envs.errors import EnvError

from .errors import TrialUnavailable
from .trial_frames import FrameTooLarge, read_frame, write_frame
from .trial_launch import ROOT, WorkerLaunch

__all__ = ["Starter", "Worker"]


class Worker:
    """One worker process: a ``subprocess.Popen`` (started here) or an
    ``envs.spawner.Process`` (started by the fork-server, which also signals it)."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.out = proc.stdout.fileno()
        self.inp = proc.stdin.fileno()

    def read(self, deadline: float) -> Any:
        """The next frame, None on EOF; raises TimeoutError at the deadline."""
        try:
            return read_frame(self.out, deadline)
        except FrameTooLarge as exc:
            raise TrialUnavailable(f"the trial worker sent a frame of {exc.size} bytes") from exc

    def write(self, value: Any) -> None:
        write_frame(self.inp, value)

    def signal_kill(self, why: str | None = None) -> None:
        """SIGKILL the worker's process group now; no wait. ``why``: it no longer answers
        (logged); None: the routine end of a used or spare worker."""
        if self.proc.returncode is not None:
            return
        if isinstance(self.proc, subprocess.Popen):
            if why is None:
                signal_group(self.proc.pid, signal.SIGKILL)
            else:
                kill(self.proc, f"the trial worker ({why})", group=True)
            return
        # the fork-server signals the worker's group; a fork-server gone took its workers along
        with contextlib.suppress(Exception):
            self.proc.kill()

    def kill(self, why: str | None = None) -> None:
        """``signal_kill``, then reap it."""
        self.signal_kill(why)
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


class Starter(threading.Thread):
    """The one thread that starts workers (see the module docstring for why) and reaps
    used ones, so that neither costs the caller of ``run`` any time.

    ``server``: the fork-server to start them through (``envs.spawner.Spawner``), or None
    to start them here with ``launch``; ``reaped`` is called with each worker reaped.
    """

    def __init__(self, launch: WorkerLaunch, reaped: Callable[[Worker], None],
                 server: Any = None) -> None:
        super().__init__(name="crucible-trial-starter", daemon=True)
        self.argv, self.env, self.reaped, self.server = launch.argv, launch.env, reaped, server
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def spawn(self) -> Future[Any]:
        """A future of the next worker's process (``TrialUnavailable`` if it cannot start)."""
        future: Future[Any] = Future()
        self.requests.put(future)
        return future

    def reap(self, worker: Worker) -> None:
        self.requests.put(worker)

    def stop(self) -> None:
        self.requests.put(None)

    def run(self) -> None:
        while (item := self.requests.get()) is not None:
            if isinstance(item, Worker):
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
                        stderr=subprocess.PIPE, bufsize=0, env=self.env, cwd=str(ROOT),
                        start_new_session=True, close_fds=True,
                    )
            except (OSError, EnvError) as exc:
                item.set_exception(TrialUnavailable(f"cannot start a trial worker: {exc}"))
            else:
                item.set_result(proc)
