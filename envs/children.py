"""Stopping a child with escalation: the one helper every layer uses.

A child of batos (ZEO, an incarnation, a vLLM server, a trial worker, a
training run) runs in its own session, so its process group holds whatever
it started. ``stop`` asks the group to leave (SIGTERM), waits up to
``grace`` seconds for the child and any processes named in ``also`` (its
descendants seen earlier, which may have left the group), then SIGKILLs
what is left and reaps it, logging each step under the caller's ``what``.
``kill`` is the immediate form for a child that no longer answers.

A ``subprocess.Popen`` is waited on through itself, so its ``returncode``
stays right (psutil would reap it behind ``Popen``'s back); anything else is
waited on with ``psutil.wait_procs``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable

import psutil

__all__ = ["descendants", "kill", "signal_group", "stop"]

log = logging.getLogger("batos.envs.children")

Child = subprocess.Popen[bytes] | psutil.Process

#: longest a SIGKILLed process may take to be reaped before it is reported as surviving
REAP_TIMEOUT = 10.0


def signal_group(pid: int, sig: int) -> None:
    """``sig`` to the process group led by ``pid``, else to ``pid`` alone; gone is fine."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def descendants(pid: int) -> list[psutil.Process]:
    """The processes below ``pid`` now (empty when it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(child: Child) -> bool:
    if isinstance(child, subprocess.Popen):
        return child.poll() is None
    try:
        return child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill(child: Child, what: str, *, group: bool = True, also: Iterable[psutil.Process] = ()) -> None:
    """SIGKILL ``child`` (its group with ``group``) and ``also`` now, without waiting."""
    if _alive(child):
        log.warning("killing %s (pid %d)", what, child.pid)
    if group:
        signal_group(child.pid, signal.SIGKILL)
    else:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            child.kill()
    for proc in also:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def stop(child: Child, what: str, *, grace: float = 10.0, group: bool = True,
         also: Iterable[psutil.Process] = ()) -> int | None:
    """SIGTERM, up to ``grace`` seconds, SIGKILL, reap; returns the child's exit status.

    ``group``: signal the child's process group (it runs in its own session), and
    SIGKILL the group at the end for anything it left behind. ``also``: more
    processes to wait for and kill with it (its descendants, from ``descendants``,
    taken before the stop). The status is ``None`` when it cannot be known (a
    ``psutil.Process`` that is not this process's child).
    """
    others = [p for p in also if p.pid != child.pid]
    deadline = time.monotonic() + grace
    if _alive(child):
        log.info("stopping %s (pid %d): SIGTERM", what, child.pid)
        if group:
            signal_group(child.pid, signal.SIGTERM)
        else:
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                child.terminate()
    code = _wait(child, max(0.0, deadline - time.monotonic()))
    _, left = psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
    if _alive(child) or left:
        log.warning("%s (pid %d) or its processes %s still running after %.1fs: SIGKILL",
                    what, child.pid, [p.pid for p in left], grace)
        kill(child, what, group=group, also=left)
        code = _wait(child, REAP_TIMEOUT)
        _, left = psutil.wait_procs(left, timeout=REAP_TIMEOUT)
        if left or _alive(child):
            log.error("%s: processes %s survived SIGKILL", what,
                      [p.pid for p in left] + ([child.pid] if _alive(child) else []))
    if group:
        signal_group(child.pid, signal.SIGKILL)  # leftovers in its group
    log.info("%s (pid %d) exited with %s", what, child.pid, code)
    return code


def _wait(child: Child, timeout: float) -> int | None:
    if isinstance(child, subprocess.Popen):
        with contextlib.suppress(subprocess.TimeoutExpired):
            return child.wait(timeout=timeout)
        return child.returncode
    try:
        return child.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        return None
    except psutil.Error:
        return None
