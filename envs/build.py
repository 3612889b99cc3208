"""Building envs with uv: one folder per spec id, complete or absent.

``build_env`` turns an ``EnvSpec`` into ``envs_dir/<id>``: a relocatable venv
with the requirements (and the project, editable) installed and a
``batos-env.json`` record of what was resolved. An env that is already there
and whose interpreter runs is reused. A build happens in
``envs_dir/.<id>.tmp-<pid>`` and is renamed into place only when complete, so
a crash never leaves a half env that looks complete; leftovers of crashed
builds are cleared by the next builder of that id. ``fcntl.flock`` on
``envs_dir/.<id>.lock`` keeps two builders (threads or processes) of one id
apart: the second waits, then reuses. POSIX only.

uv runs as a subprocess in its own session (a timeout kills its whole process
group, build backends included), with ``UV_CACHE_DIR`` set by the caller,
``UV_LINK_MODE=hardlink`` (keep the cache on the envs' filesystem so rebuilds
hard-link instead of copying), ``UV_NO_CONFIG=1`` and every other ``UV_*``
variable dropped, so no user config changes what gets built. Its failures are
translated here into ``BuildFailed``/``OfflineMissing``.

Everything here blocks; call it from a worker thread, not an event loop. This
module decides nothing about which envs to keep: ``list_envs`` and
``remove_env`` are the tools, the supervisor holds the policy (and must not
remove the env its running incarnation uses).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envs.errors import BuildFailed, InvalidSpec, OfflineMissing, UvNotFound
from envs.spec import EnvSpec

__all__ = ["ENV_RECORD", "Env", "build_env", "find_uv", "list_envs", "remove_env"]

ENV_RECORD = "batos-env.json"
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
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


@dataclass(frozen=True)
class Env:
    """A built env: its folder, its interpreter and the versions uv resolved.

    ``reused`` is True when this call found the env already built.
    """

    id: str
    path: Path
    python: Path
    packages: dict[str, str]
    built_at: datetime
    reused: bool


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


def build_env(
    spec: EnvSpec,
    envs_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str],
    offline: bool = False,
    timeout: float = 600,
    watch: BuildWatch | None = None,
) -> Env:
    """The env for ``spec`` under ``envs_dir``, built unless a working one is there.

    ``watch`` (optional) is told the pid of each uv process it starts and ends,
    and its ``cancel`` event stops the build (uv's group killed, ``BuildFailed``)
    so an owner shutting down never waits for, or leaves behind, a build.

    ``timeout`` bounds the uv runs of one build in seconds (waiting for another
    builder of the same id is not counted). Raises ``BuildFailed`` (or
    ``OfflineMissing`` when ``offline`` and a package is not in the cache or
    find-links) with nothing left behind, ``UvNotFound`` without uv.
    """
    envs_dir = Path(envs_dir).absolute()
    envs_dir.mkdir(parents=True, exist_ok=True)
    env_id = spec.id
    final = envs_dir / env_id
    with _locked(envs_dir, env_id):
        found = _load(final, reused=True)
        if found is not None and _runs(found.python):
            return found
        uv = find_uv()
        _clear(envs_dir, env_id)
        if final.exists():  # recorded but its interpreter is gone: build it again
            _discard(final, envs_dir / f".{env_id}.trash-{os.getpid()}")
        tmp = envs_dir / f".{env_id}.tmp-{os.getpid()}"
        try:
            record = _build_into(tmp, spec, env_id, uv, Path(cache_dir).absolute(), offline,
                                 timeout, watch or BuildWatch())
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(envs_dir)
    return _from_record(final, record, reused=False)


def list_envs(envs_dir: str | os.PathLike[str]) -> list[Env]:
    """Every complete env under ``envs_dir``, oldest first (``reused`` is True: none is built)."""
    envs_dir = Path(envs_dir).absolute()
    if not envs_dir.is_dir():
        return []
    found = [_load(p, reused=True) for p in envs_dir.iterdir() if not p.name.startswith(".")]
    return sorted((e for e in found if e is not None), key=lambda e: e.built_at)


def remove_env(envs_dir: str | os.PathLike[str], env_id: str) -> bool:
    """Remove env ``env_id``; False when there was none. Waits for a builder of that id."""
    if not isinstance(env_id, str) or not _ID_RE.match(env_id):
        raise InvalidSpec(f"{env_id!r} is not an env id (16 hex digits)")
    envs_dir = Path(envs_dir).absolute()
    if not envs_dir.is_dir():
        return False
    with _locked(envs_dir, env_id):
        _clear(envs_dir, env_id)
        final = envs_dir / env_id
        if not final.exists():
            return False
        _discard(final, envs_dir / f".{env_id}.trash-{os.getpid()}")
    return True


def _build_into(tmp: Path, spec: EnvSpec, env_id: str, uv: str, cache_dir: Path, offline: bool,
                timeout: float, watch: BuildWatch) -> dict[str, Any]:
    started, deadline = time.time(), time.monotonic() + timeout
    cache_dir.mkdir(parents=True, exist_ok=True)
    environ = _uv_environ(cache_dir)

    def run(phase: str, *args: str) -> str:
        return _run([uv, *args], phase, environ, tmp.parent, deadline, timeout, offline, watch)

    run("venv", "venv", "--relocatable", "--no-project", "--python", spec.python, str(tmp))
    python = str(tmp / "bin" / "python")
    if spec.requirements or spec.project:
        # compiled now: incarnations mount the env read-only (envs.sandbox), where every
        # start would otherwise compile each module it imports, again (seconds)
        args = ["pip", "install", "--compile-bytecode", "--python", python]
        args += ["--offline"] if offline else []
        for link in spec.find_links:
            args += ["--find-links", link]
        args += list(spec.requirements)
        args += ["-e", spec.project] if spec.project else []
        run("install", *args)
    # `pip list` rather than `pip freeze`: freeze prints an editable project as a bare URL.
    listed = json.loads(run("freeze", "pip", "list", "--python", python, "--format", "json"))
    record = {
        "format": 1,
        "id": env_id,
        "spec": spec.to_dict(),
        "packages": {p["name"]: p["version"] for p in listed},
        "python_version": _pyvenv_version(tmp),
        "offline": offline,
        "uv_version": _uv_version(uv),
        "built_at": datetime.now(UTC).isoformat(),
        "build_seconds": round(time.time() - started, 3),
    }
    with open(tmp / ENV_RECORD, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())  # the record is what says "complete": it must reach the disk
    return record


@dataclass
class BuildWatch:
    """Hooks an owner of builds uses: uv's pids as they come and go, and a cancel switch."""

    cancel: threading.Event = field(default_factory=threading.Event)
    started: Callable[[int], None] | None = None
    ended: Callable[[int], None] | None = None


def _run(cmd: Sequence[str], phase: str, environ: dict[str, str], cwd: Path, deadline: float,
         timeout: float, offline: bool, watch: BuildWatch) -> str:
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
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.communicate()[1] or ""


def _uv_environ(cache_dir: Path) -> dict[str, str]:
    drop = {"VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME"}
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k not in drop}
    environ.update(UV_CACHE_DIR=str(cache_dir), UV_LINK_MODE="hardlink", UV_NO_CONFIG="1")
    return environ


@functools.cache
def _uv_version(uv: str) -> str:
    try:
        done = subprocess.run([uv, "--version"], capture_output=True, text=True,
                              timeout=_PROBE_TIMEOUT, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _pyvenv_version(venv: Path) -> str | None:
    try:
        found = re.search(r"^version(?:_info)?\s*=\s*(\S+)", (venv / "pyvenv.cfg").read_text(), re.M)
    except OSError:
        return None
    return found[1] if found else None


def _runs(python: Path) -> bool:
    try:
        return subprocess.run([str(python), "-c", ""], capture_output=True,
                              timeout=_PROBE_TIMEOUT).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _load(path: Path, *, reused: bool) -> Env | None:
    try:
        record = json.loads((path / ENV_RECORD).read_text())
        return _from_record(path, record, reused=reused)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _from_record(path: Path, record: dict[str, Any], *, reused: bool) -> Env:
    return Env(id=record["id"], path=path, python=path / "bin" / "python",
               packages=dict(record["packages"]),
               built_at=datetime.fromisoformat(record["built_at"]), reused=reused)


@contextmanager
def _locked(envs_dir: Path, env_id: str) -> Iterator[None]:
    fd = os.open(envs_dir / f".{env_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another builder of this id works
        yield
    finally:
        os.close(fd)  # releases the lock; the lock file stays (unlinking it would race)


def _clear(envs_dir: Path, env_id: str) -> None:
    """Remove temp and trash folders of crashed builders (safe: we hold the id's lock)."""
    for leftover in envs_dir.glob(f".{env_id}.t*-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _discard(path: Path, trash: Path) -> None:
    # Rename first so a crash mid-delete leaves a dot-folder, never a half env under its id.
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
