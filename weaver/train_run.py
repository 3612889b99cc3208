"""A run of a module in the training env: started, followed by its JSON-lines events, stopped.

``start_local`` starts ``python -m <module> ARGS`` with the env's python as a child in
its own session (stdout a pipe of events, stderr the run's log, ``CHILD_ENV``'s
variables, no ``PYTHONPATH``, the source root as working directory). ``follow``
reads the events of a started child (a ``subprocess.Popen``, or an
``envs.spawner.Process`` that a fork-server started: binary pipes) until it exits:
each JSON object goes to ``on_event``; the ``done`` event's data is the result; an
``error`` event, a non-zero exit or the timeout raise ``TrainingFailed`` with the
child's message and the log's tail. On timeout, KeyboardInterrupt or a
``TrainingFailed`` raised by ``on_event`` (a cancel) the child's process group is
stopped (``envs.children.stop``: SIGTERM, 10 s, SIGKILL).

Boundary: imports ``envs`` (the stop) and the training env's names; runs in the
caller's thread and blocks until the child exits.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envs import children

from .train_build import CHILD_ENV, SOURCE_ROOT, TrainEnv, TrainingFailed

__all__ = ["STOP_GRACE", "follow", "start_local"]

#: seconds a run has to leave after SIGTERM before it is killed
STOP_GRACE = 10.0
_TAIL_LINES = 15

Event = Callable[[dict[str, Any]], None]


def start_local(env: TrainEnv, module: str, args: list[str],
                log_path: str | os.PathLike[str] | None) -> subprocess.Popen[str]:
    """``python -m module args`` in ``env``, a child of this process (module docstring)."""
    environ = {**os.environ, **CHILD_ENV}
    environ.pop("PYTHONPATH", None)
    log = open(log_path, "w") if log_path else open(os.devnull, "w")  # noqa: SIM115
    with log:
        return subprocess.Popen([str(env.python), "-m", module, *args], stdout=subprocess.PIPE,
                                stderr=log, text=True, env=environ, start_new_session=True,
                                cwd=str(SOURCE_ROOT))


def follow(start: Callable[[], Any], module: str, on_event: Event | None,
           log_path: str | os.PathLike[str] | None, timeout: float) -> dict[str, Any]:
    """Start a child with ``start`` and follow its events; the ``done`` event (module docstring)."""
    deadline = time.monotonic() + timeout
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    proc = start()
    stdout = proc.stdout
    if not isinstance(proc, subprocess.Popen):  # a fork-server's child: binary pipes
        proc.stdin.close()
        proc.stderr.close()
        stdout = io.TextIOWrapper(io.BufferedReader(proc.stdout), encoding="utf-8",
                                  errors="replace")
    try:
        assert stdout is not None
        for line in stdout:
            if time.monotonic() > deadline:
                raise TrainingFailed(f"{module} ran past {timeout:.0f}s")
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "done":
                done = event
            elif event.get("event") == "error":
                error = event
            if on_event:
                on_event(event)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (KeyboardInterrupt, TrainingFailed, subprocess.TimeoutExpired) as exc:
        children.stop(proc, f"the {module} run", grace=STOP_GRACE)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TrainingFailed(f"{module} ran past {timeout:.0f}s") from exc
        raise
    finally:
        if stdout:
            stdout.close()
    tail = _tail(log_path)
    if error is not None:
        raise TrainingFailed(f"{module}: {error.get('type')}: {error.get('message')}{tail}")
    if rc != 0 or done is None:
        raise TrainingFailed(f"{module} exited with status {rc} without a summary{tail}")
    return done


def _tail(log_path: str | os.PathLike[str] | None) -> str:
    if not log_path:
        return ""
    try:
        text = Path(log_path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    if not text:
        return ""
    return f"\n--- {log_path} (last lines) ---\n" + "\n".join(text[-_TAIL_LINES:])
