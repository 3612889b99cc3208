"""Running uv: one watched subprocess at a time, its failures translated at the seam.

``find_uv`` locates the binary (the ``uv`` package's, else ``uv`` on PATH).
``run_uv`` runs one uv command for a build phase (``venv``, ``install``,
``freeze``) in its own session, with ``uv_environ``'s variables: ``UV_CACHE_DIR``
set by the caller, ``UV_LINK_MODE=hardlink`` (keep the cache on the envs'
filesystem so rebuilds hard-link instead of copying), ``UV_NO_CONFIG=1`` and every
other ``UV_*`` variable dropped, so no user config changes what gets built. A
``BuildWatch`` is told each uv pid as it starts and ends, and its ``cancel`` event
(or the build's deadline, or an interrupt) kills uv's whole process group, build
backends included (``envs.children.kill``). A non-zero exit becomes ``BuildFailed``,
or ``OfflineMissing`` when an offline build lacked a package; uv's own output is
kept as the error's ``stderr_tail``, never raised as is.

Blocking; used by ``envs.build``. Standard library only (and the ``uv`` package to
locate its binary).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envs.children import kill
from envs.errors import BuildFailed, OfflineMissing, UvNotFound

__all__ = ["BuildWatch", "find_uv", "run_uv", "uv_environ", "uv_version"]

_TAIL_LINES = 40
_PROBE_TIMEOUT = 30.0
# Names in uv's resolver output that say a package could not be had:
_MISSING_RE = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:[=<>!~]=?[^\s,]*)? "
    r"(?:was not found in the cache|needs to be downloaded from a registry"
    r"|was not found in the package registry)"
    r"|there is no version of (?P<nover>[A-Za-z0-9][A-Za-z0-9._-]*)"
)
_OFFLINE_HINTS = ("network was disabled", "Network connectivity is disabled")
_HINTS = {
    "venv": "check that the interpreter exists; uv downloads a managed python only when online",
    "install": "check the requirements' names and versions",
    "freeze": "the env's interpreter could not be queried; remove the env and build again",
}


def find_uv() -> str:
    """The uv binary: the ``uv`` package's, else ``uv`` on PATH; ``UvNotFound`` if neither."""
    try:
        import uv  # the package only locates the binary; uv always runs as a subprocess

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise UvNotFound("no uv binary: install the 'uv' package or put uv on PATH")


@dataclass
class BuildWatch:
    """Hooks an owner of builds uses: uv's pids as they come and go, and a cancel switch."""

    cancel: threading.Event = field(default_factory=threading.Event)
    started: Callable[[int], None] | None = None
    ended: Callable[[int], None] | None = None


def run_uv(cmd: Sequence[str], phase: str, environ: dict[str, str], cwd: Path, deadline: float,
           timeout: float, offline: bool, watch: BuildWatch) -> str:
    """uv's stdout for one phase of a build, bounded by ``deadline`` (module docstring)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BuildFailed(f"env build ran out of its {timeout:g}s before {phase}", phase=phase,
                          command=cmd)
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environ, cwd=cwd, text=True, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise UvNotFound(f"uv binary vanished: {cmd[0]}") from exc
    if watch.started:
        watch.started(proc.pid)
    try:
        while True:
            if watch.cancel.is_set():
                err = _kill_group(proc)
                raise BuildFailed(f"uv {phase} was cancelled (its owner is stopping)", phase=phase,
                                  command=cmd, stderr_tail=_tail(err))
            try:
                out, err = proc.communicate(timeout=max(0.0, min(0.25, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired as exc:
                if time.monotonic() < deadline:
                    continue
                err = _kill_group(proc)
                raise BuildFailed(f"uv {phase} did not finish within the build's {timeout:g}s; "
                                  "raise the timeout or check the network", phase=phase, command=cmd,
                                  stderr_tail=_tail(err)) from exc
    except BaseException:  # e.g. KeyboardInterrupt: never leave uv running; re-raised
        if proc.poll() is None:
            _kill_group(proc)
        raise
    finally:
        if watch.ended:
            watch.ended(proc.pid)
    if proc.returncode != 0:
        raise _translate(phase, cmd, proc.returncode, err, offline)
    return out


def _translate(phase: str, cmd: Sequence[str], rc: int, stderr: str, offline: bool) -> BuildFailed:
    tail = _tail(stderr)
    missing = list(dict.fromkeys(m["name"] or m["nover"] for m in _MISSING_RE.finditer(stderr)))
    if offline and (missing or any(hint in stderr for hint in _OFFLINE_HINTS)):
        what = ", ".join(missing) or "a package"
        return OfflineMissing(
            f"offline build could not find {what} in the uv cache or the find-links folders; "
            "build once with the network, or add a find-links folder holding the wheel",
            packages=missing, phase=phase, command=cmd, stderr_tail=tail)
    start = stderr.find("error:")
    summary = " ".join(stderr[start + 6 if start >= 0 else 0:].split())[:600]
    return BuildFailed(f"uv {phase} failed: {summary or f'exit status {rc}'} -- {_HINTS[phase]}",
                       phase=phase, command=cmd, stderr_tail=tail)


def _tail(text: str | None) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-_TAIL_LINES:])


def _kill_group(proc: subprocess.Popen[str]) -> str:
    """Kill uv and everything it started; what it had written to stderr."""
    kill(proc, "uv")
    return proc.communicate()[1] or ""


def uv_environ(cache_dir: Path) -> dict[str, str]:
    """The environment of every uv run: this one's, less what would change the build."""
    drop = {"VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME"}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k not in drop}
    environ.update(UV_CACHE_DIR=str(cache_dir), UV_LINK_MODE="hardlink", UV_NO_CONFIG="1")
    return environ


@functools.cache
def uv_version(uv: str) -> str:
    """``uv --version``'s answer (\"unknown\" when it gives none)."""
    try:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True,
                              timeout=_PROBE_TIMEOUT, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()
