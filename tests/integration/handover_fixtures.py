"""Helpers for the handover (``batos evolve``) integration tests: uv-mode supervisors,
hand-made packages, the ``batos`` command, and waits on a handover's end.

Evolve needs the real uv env mode. Every supervisor of these tests builds its envs in
one folder shared by the session (``shared_dirs``: envs, uv cache and the find-links
folder of wheels), so the base env (ZODB, ZEO, ... and batos editable) is built once;
each later env is an offline build from the cache (a few seconds) or reused. The folder
is found by name under pytest's base temp folder rather than through a session fixture,
because both test modules import these helpers and each import would make its own
fixture (and its own build).

The packages evolve adds are wheels written by ``wheels.make_wheel`` into the shared
find-links folder, once (uv caches find-links wheels by name and version, so a wheel's
content must never change within a session): ``greetlib`` 1.0/1.1/1.2, ``boomlib``
(its import raises), ``checkgate`` 1.0 (``OK = True``) and 2.0 (``OK = False``),
``rolllib``. ``slowbuild`` is an sdist whose ``setup.py`` sleeps, so that an env build
that needs it stays in the build phase long enough to kill the supervisor there.

Nothing here sleeps to wait: ``wait_idle`` and the ``Supervisor`` waits poll conditions
with deadlines. ``run_batos`` starts the CLI in its own session and kills the group if
it outlives its timeout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.wheels import make_wheel
from bridge import Timeout
from supervisor import handover_log, handover_report
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import BATOS, Supervisor, alive

__all__ = [
    "BOOM", "CHECKGATE_BAD", "CHECKGATE_OK", "EVOLVE_TIMEOUT", "GREETLIB", "ROLLLIB",
    "SLOWBUILD", "SLOW_CHECK", "Batos",
    "active", "kill_process_groups",
    "SharedDirs", "handover_rows", "incarnation_processes", "make_sdist", "run_batos",
    "shared_dirs", "start_uv_supervisor", "uv_config", "wait_idle",
]

GREETLIB = {v: f"def hello(n):\n    return 'hello ' + n\n\nVERSION = {v!r}\n"
            for v in ("1.0", "1.1", "1.2")}
BOOM = "raise RuntimeError('boomlib refuses to be imported')\n"
CHECKGATE_OK = "OK = True\n"
CHECKGATE_BAD = "OK = False\n"
ROLLLIB = "VALUE = 7\n"
#: the longest one evolve may take in these tests (a uv build from the session's wheels)
EVOLVE_TIMEOUT = 180.0
#: a self-check that holds validation for ``k`` loop steps: ``SLOW_CHECK.format(k=...)``
SLOW_CHECK = ("def checkSlowly(self):\n    t = 0\n    for j in range({k}):\n        t = t + j\n"
              "    return True\n")
SLOWBUILD_SECONDS = 120  # far longer than the test needs the build phase to last
SLOWBUILD = ("import time\nfrom setuptools import setup\n"
             f"time.sleep({SLOWBUILD_SECONDS})  # a build that takes long: see handover_fixtures\n"
             "setup(name='slowbuild', version='1.0', packages=['slowbuild'])\n")
FIRST_START_TIMEOUT = 300.0  # the session's first start may build the base env online


@dataclass(frozen=True)
class SharedDirs:
    envs: Path
    uv_cache: Path
    wheels: Path


def make_sdist(folder: Path, name: str, version: str, setup_py: str) -> Path:
    """A source distribution built with setuptools (from the uv cache, offline)."""
    base = f"{name}-{version}"
    files = {
        f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{base}/pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
                                  'build-backend = "setuptools.build_meta"\n',
        f"{base}/setup.py": setup_py,
        f"{base}/{name}/__init__.py": "VALUE = 1\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{base}.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return target


def shared_dirs(factory: pytest.TempPathFactory) -> SharedDirs:
    """The session's envs, uv cache and find-links folders (created, wheels written once)."""
    root = factory.getbasetemp() / "handover-shared"
    dirs = SharedDirs(root / "envs", root / "uv-cache", root / "wheels")
    for folder in (dirs.envs, dirs.uv_cache, dirs.wheels):
        folder.mkdir(parents=True, exist_ok=True)
    wanted = {("greetlib", v): code for v, code in GREETLIB.items()}
    wanted |= {("boomlib", "1.0"): BOOM, ("checkgate", "1.0"): CHECKGATE_OK,
               ("checkgate", "2.0"): CHECKGATE_BAD, ("rolllib", "1.0"): ROLLLIB}
    for (name, version), code in wanted.items():
        if not (dirs.wheels / f"{name}-{version}-py3-none-any.whl").exists():
            make_wheel(dirs.wheels, name, version, code)
    if not (dirs.wheels / "slowbuild-1.0.tar.gz").exists():
        make_sdist(dirs.wheels, "slowbuild", "1.0", SLOWBUILD)
    return dirs


def uv_config(dirs: SharedDirs, **overrides: Any) -> dict[str, Any]:
    """A config.toml for uv mode on the shared folders. ``keep_generations`` is large:
    envs are shared by every supervisor of the session, so none may prune another's."""
    config: dict[str, Any] = {
        "envs_dir": str(dirs.envs), "uv_cache": str(dirs.uv_cache), "probation": 1.0,
        "keep_generations": 1000, "heartbeat_timeout": 5.0, "stop_grace": 10.0,
    }
    config.update(overrides)
    config["env"] = {"mode": "uv", **config.get("env", {})}
    return config


def start_uv_supervisor(root: Path, dirs: SharedDirs, **config: Any) -> Supervisor:
    """A ``batos up`` in uv mode; the caller closes it (``Supervisor.close``)."""
    sup = Supervisor(root, config=uv_config(dirs, **config), env_mode="uv")
    try:
        sup.start(timeout=FIRST_START_TIMEOUT)
    except BaseException:
        sup.close()
        raise
    return sup


@contextlib.contextmanager
def uv_supervisor(root: Path, dirs: SharedDirs, **config: Any) -> Iterator[Supervisor]:
    """``start_uv_supervisor`` whose teardown fails the test if it was unclean."""
    supervisor = start_uv_supervisor(root, dirs, **config)
    try:
        yield supervisor
    finally:
        problems = supervisor.close()
        if problems:
            pytest.fail("unclean supervisor teardown:\n" + "\n\n".join(problems), pytrace=False)


@dataclass
class Batos:
    """What one ``batos`` command did."""

    argv: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} -> {self.code}\nstdout: {self.out}\nstderr: {self.err}"


def run_batos(*args: str, timeout: float = 60.0) -> Batos:
    """``batos ARGS`` in its own session; its group is killed if it outlives ``timeout``."""
    argv = [BATOS, *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in ("BATOS_ENDPOINT", "BATOS_HOME")}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"{' '.join(argv)} did not finish in {timeout}s:\n{out}\n{err}") from None
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return Batos(argv, proc.returncode, out, err)


def wait_idle(sup: Supervisor, timeout: float = 60.0) -> dict[str, Any]:
    """Status once no handover runs (its probation over) and an incarnation serves."""
    def idle() -> dict[str, Any] | None:
        sup.check_running()
        try:
            state = sup.status()
        except Timeout:
            return None
        ok = state["handover"] is None and state["state"] == "serving" and state["active"]
        return state if ok else None
    return wait_until(idle, timeout, interval=0.05)


def handover_rows(home: Path) -> list[dict[str, Any]]:
    """``summarize`` of the home's handover log, oldest first."""
    return handover_report.summarize(home / "logs" / handover_log.LOG_FILE)


def active(state: dict[str, Any]) -> dict[str, Any]:
    """The active incarnation's entry in a status."""
    found = [i for i in state["incarnations"] if i["id"] == state["active"]]
    assert len(found) == 1, state
    return found[0]


def incarnation_processes(run_dir: str) -> list[psutil.Process]:
    """Live ``batos.root.incarnation`` processes connected to this run folder's backend (the
    processes running it, not the bubblewrap processes that confine them)."""
    backend = f"ipc://{run_dir}/inc/be.sock"
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") in ("bwrap", "env"):
            continue
        if "batos.root.incarnation" in cmdline and backend in cmdline and alive(proc):
            found.append(proc)
    return found


def kill_process_groups(procs: list[psutil.Process]) -> None:
    """SIGKILL each live process, and its whole group when it leads one (the supervisor's
    children, uv included, run in sessions of their own: a build backend that uv started
    after the test last looked is reached only through the group)."""
    own = os.getpgid(0)
    for proc in procs:
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if not alive(proc):
                continue
            if os.getpgid(proc.pid) == proc.pid != own:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
