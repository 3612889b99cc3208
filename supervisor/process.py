"""Child processes: start in their own session, stop by escalation, never leave zombies.

``spawn`` starts a child with ``start_new_session=True`` so signals to its
process group reach grandchildren too. ``stop`` asks (SIGTERM to the group),
waits ``grace`` seconds, then kills (SIGKILL to the group) and reaps, logging
each step. ``kill`` is the immediate form for an unresponsive child.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .notify import NOTIFY_VARIABLES

__all__ = ["kill", "spawn", "stop"]

log = logging.getLogger("batos.supervisor.process")


def child_environment() -> dict[str, str]:
    """The supervisor's environment less what is the supervisor's alone (systemd's notify socket)."""
    return {k: v for k, v in os.environ.items() if k not in NOTIFY_VARIABLES}


def spawn(argv: Sequence[str], *, log_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if env is None:
        env = child_environment()
    with open(log_file, "ab") as out:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True, close_fds=True,
        )


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def kill(proc: subprocess.Popen[bytes], what: str) -> None:
    if proc.poll() is None:
        log.warning("killing %s (pid %d)", what, proc.pid)
        _signal_group(proc, signal.SIGKILL)


def stop(proc: subprocess.Popen[bytes], what: str, grace: float = 10.0) -> int | None:
    """SIGTERM, wait ``grace``, SIGKILL; returns the exit code."""
    if proc.poll() is not None:
        _signal_group(proc, signal.SIGKILL)  # leftovers in its group
        return proc.returncode
    log.info("stopping %s (pid %d): SIGTERM", what, proc.pid)
    _signal_group(proc, signal.SIGTERM)
    try:
        code = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM for %.1fs: SIGKILL", what, proc.pid, grace)
        _signal_group(proc, signal.SIGKILL)
        code = proc.wait(timeout=10)
    _signal_group(proc, signal.SIGKILL)
    log.info("%s (pid %d) exited with %s", what, proc.pid, code)
    return code
