"""Stopping a child with escalation: the one helper every layer uses.

A child of batos (ZEO, an incarnation, a vLLM server, a trial worker, a
training run, a uv build) runs in its own session, so its process group holds
whatever it started. ``stop`` asks the group to leave (SIGTERM), waits up to
``grace`` seconds for the child and any processes named in ``also`` (its
descendants seen earlier: those that left the group are asked too), then
SIGKILLs what is left and reaps it, logging each step under the caller's
``what``. ``kill`` is the immediate form for a child that no longer answers.

Three kinds of child, told apart by type:

* a ``subprocess.Popen`` is waited on through itself, so its ``returncode``
  stays right (psutil would reap it behind ``Popen``'s back);
* a ``psutil.Process`` (a recorded child of an earlier supervisor, a
  descendant) is waited on with ``psutil.wait_procs``; its exit status is
  known only when it is this process's own child, else ``None``; a zombie
  whose parent is someone else counts as gone;
* anything else ``Popen``-like (``poll``, ``wait(timeout)`` raising
  ``subprocess.TimeoutExpired``, ``send_signal``), such as
  ``envs.spawner.Process``, signals its own group through ``send_signal``: a
  locked caller may signal nothing but itself, so ``group`` is its to honour.

Blocking: ``stop`` sleeps in waits up to ``grace`` plus ``REAP_TIMEOUT``; call
it from a thread that may block, not an event loop. Imports only the standard
library and psutil.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from typing import Any

import psutil

__all__ = ["REAP_TIMEOUT", "descendants", "kill", "signal_group", "stop"]

log = logging.getLogger("batos.envs.children")

#: a ``subprocess.Popen``, a ``psutil.Process``, or a Popen-like handle (module docstring)
Child = Any

#: longest a SIGKILLed process may take to be reaped before it is reported as surviving
REAP_TIMEOUT = 10.0
_POLL = 0.05


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
    if not isinstance(child, psutil.Process):
        return child.poll() is None
    try:
        return child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(child: Child, sig: int, group: bool) -> None:
    if not isinstance(child, (subprocess.Popen, psutil.Process)):
        with contextlib.suppress(Exception):  # its transport may be gone: then so is it
            child.send_signal(sig)
    elif group:
        signal_group(child.pid, sig)
    else:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            child.send_signal(sig)


def _signal_each(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def kill(child: Child, what: str, *, group: bool = True, also: Iterable[psutil.Process] = (),
         wait: float = 0.0) -> bool:
    """SIGKILL ``child`` (its group with ``group``) and ``also`` now.

    With ``wait`` > 0, wait up to that many seconds for them to be gone (reaped,
    when they are this process's children). True when none is left running.
    """
    also = [p for p in also if p.pid != child.pid]
    if _alive(child):
        log.warning("killing %s (pid %d)", what, child.pid)
    _signal(child, signal.SIGKILL, group)
    _signal_each(also, signal.SIGKILL)
    if wait <= 0:
        return not _alive(child) and not any(_alive(p) for p in also)
    deadline = time.monotonic() + wait
    _wait(child, wait)
    left = _wait_procs(also, max(0.0, deadline - time.monotonic()))
    return not left and not _alive(child)


def stop(child: Child, what: str, *, grace: float = 10.0, group: bool = True,
         also: Iterable[psutil.Process] = ()) -> int | None:
    """SIGTERM, up to ``grace`` seconds, SIGKILL, reap; returns the child's exit status.

    ``group``: signal the child's process group (it runs in its own session), and
    SIGKILL the group at the end for anything it left behind. ``also``: more
    processes to wait for and kill with it (its descendants, from ``descendants``,
    taken before the stop); those outside the child's group get the SIGTERM too.
    The status is ``None`` when it cannot be known (a ``psutil.Process`` that is
    not this process's child).
    """
    others = [p for p in also if p.pid != child.pid]
    deadline = time.monotonic() + grace
    if _alive(child):
        log.info("stopping %s (pid %d): SIGTERM", what, child.pid)
        _signal(child, signal.SIGTERM, group)
    _signal_each([p for p in others if not (group and _in_group(p, child.pid))], signal.SIGTERM)
    code = _wait(child, max(0.0, deadline - time.monotonic()))
    left = _wait_procs(others, max(0.0, deadline - time.monotonic()))
    if _alive(child) or left:
        log.warning("%s (pid %d) or its processes %s still running after %.1fs: SIGKILL",
                    what, child.pid, [p.pid for p in left], grace)
        kill(child, what, group=group, also=left)
        code = _wait(child, REAP_TIMEOUT)
        left = _wait_procs(left, REAP_TIMEOUT)
        if left or _alive(child):
            log.error("%s: processes %s survived SIGKILL", what,
                      [p.pid for p in left] + ([child.pid] if _alive(child) else []))
    if group and isinstance(child, (subprocess.Popen, psutil.Process)):
        signal_group(child.pid, signal.SIGKILL)  # leftovers in its group
    log.info("%s (pid %d) exited with %s", what, child.pid, code)
    return code


def _in_group(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid
    except OSError:
        return False


def _wait(child: Child, timeout: float) -> int | None:
    """The child's exit status once it is gone, within ``timeout``; None if unknown or running."""
    if not isinstance(child, psutil.Process):
        with contextlib.suppress(subprocess.TimeoutExpired):
            return child.wait(timeout=timeout)
        return child.poll()
    deadline = time.monotonic() + timeout
    while True:
        try:
            return child.wait(timeout=min(_POLL, max(0.0, deadline - time.monotonic())))
        except psutil.TimeoutExpired:
            if not _alive(child) or time.monotonic() >= deadline:
                return None  # a zombie someone else reaps, or still running
        except psutil.Error:
            return None


def _wait_procs(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """``psutil.wait_procs`` that counts a zombie (someone else's to reap) as gone; those left."""
    deadline = time.monotonic() + timeout
    left = procs
    while left:
        _, left = psutil.wait_procs(left, timeout=min(_POLL, max(0.0, deadline - time.monotonic())))
        left = [p for p in left if _alive(p)]
        if time.monotonic() >= deadline:
            break
    return left
