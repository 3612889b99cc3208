"""Building envs with uv: one folder per spec id, complete or absent.

``build_env`` turns an ``EnvSpec`` into ``envs_dir/<id>``: a relocatable venv
with the requirements (and the project, editable) installed from the spec's
sources, its ``paths`` named in a ``.pth`` file, and a ``batos-env.json`` record
of what was resolved. An env that is already there
and whose interpreter runs is reused. A build happens in
``envs_dir/.<id>.tmp-<pid>`` and is renamed into place only when complete, so
a crash never leaves a half env that looks complete; leftovers of crashed
builds are cleared by the next builder of that id. ``fcntl.flock`` on
``envs_dir/.<id>.lock`` keeps two builders (threads or processes) of one id
apart: the second waits, then reuses. POSIX only.

uv runs through ``envs.uv_run`` (a subprocess in its own session, killed with
its build backends on timeout or cancel, with ``UV_CACHE_DIR`` set by the caller
and no user configuration); its failures arrive as ``BuildFailed`` or
``OfflineMissing``.

Everything here blocks; call it from a worker thread, not an event loop. This
module decides nothing about which envs to keep: ``list_envs`` and
``remove_env`` are the tools, the supervisor holds the policy (and must not
remove the env its running incarnation uses).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from envs.errors import InvalidSpec
from envs.spec import EnvSpec
from envs.uv_run import BuildWatch, find_uv, run_uv, uv_environ, uv_version

__all__ = ["ENV_RECORD", "PATHS_FILE", "BuildWatch", "Env", "build_env", "find_uv", "list_envs",
           "remove_env"]

ENV_RECORD = "batos-env.json"
#: the ``.pth`` file in site-packages that names a spec's ``paths``
PATHS_FILE = "batos-paths.pth"
_ID_RE = re.compile(r"^[0-9a-f]{16}$")
_PROBE_TIMEOUT = 30.0


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


def build_env(
    spec: EnvSpec,
    envs_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str],
    offline: bool = False,
    timeout: float = 600,
    watch: BuildWatch | None = None,
    compile_bytecode: bool = True,
) -> Env:
    """The env for ``spec`` under ``envs_dir``, built unless a working one is there.

    ``watch`` (optional) is told the pid of each uv process it starts and ends,
    and its ``cancel`` event stops the build (uv's group killed, ``BuildFailed``)
    so an owner shutting down never waits for, or leaves behind, a build.

    ``compile_bytecode`` compiles every installed module at the build (an env an
    incarnation mounts read-only would otherwise compile what it imports at every
    start); without it modules compile on first import, into the env.

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
                                 timeout, watch or BuildWatch(), compile_bytecode)
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
                timeout: float, watch: BuildWatch, compile_bytecode: bool) -> dict[str, Any]:
    started, deadline = time.time(), time.monotonic() + timeout
    cache_dir.mkdir(parents=True, exist_ok=True)
    environ = uv_environ(cache_dir)

    def run(phase: str, *args: str) -> str:
        return run_uv([uv, *args], phase, environ, tmp.parent, deadline, timeout, offline, watch)

    run("venv", "venv", "--relocatable", "--no-project", "--python", spec.python, str(tmp))
    python = str(tmp / "bin" / "python")
    if spec.requirements or spec.project:
        # compiled now: incarnations mount the env read-only (envs.sandbox), where every
        # start would otherwise compile each module it imports, again (seconds)
        args = ["pip", "install", *(["--compile-bytecode"] if compile_bytecode else []),
                "--python", python]
        args += ["--offline"] if offline else []
        args += _source_args(spec)
        args += list(spec.requirements)
        args += ["-e", spec.project] if spec.project else []
        run("install", *args)
    if spec.paths:
        site = next((tmp / "lib").glob("python*/site-packages"))
        (site / PATHS_FILE).write_text("".join(f"{path}\n" for path in spec.paths))
    # `pip list` rather than `pip freeze`: freeze prints an editable project as a bare URL.
    listed = json.loads(run("freeze", "pip", "list", "--python", python, "--format", "json"))
    record = {
        "format": 1,
        "id": env_id,
        "spec": spec.to_dict(),
        "packages": {p["name"]: p["version"] for p in listed},
        "python_version": _pyvenv_version(tmp),
        "offline": offline,
        "uv_version": uv_version(uv),
        "built_at": datetime.now(UTC).isoformat(),
        "build_seconds": round(time.time() - started, 3),
    }
    with open(tmp / ENV_RECORD, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())  # the record is what says "complete": it must reach the disk
    return record


def _source_args(spec: EnvSpec) -> list[str]:
    """Where the install looks for packages: find-links, indexes, constraints, strategy."""
    args: list[str] = []
    for link in spec.find_links:
        args += ["--find-links", link]
    args += ["--index-url", spec.index_url] if spec.index_url else []
    for url in spec.extra_index_urls:
        args += ["--extra-index-url", url]
    for path in spec.constraints:
        args += ["--constraint", path]
    args += ["--index-strategy", spec.index_strategy] if spec.index_strategy else []
    args += ["--torch-backend", spec.torch_backend] if spec.torch_backend else []
    return args


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
