"""Incarnations as the supervisor sees them: a record per process, and how to start one.

An incarnation is a ``python -m uvm.incarnation`` process in an environment
(``envs``) that the supervisor spawned. The supervisor never imports the
UVM: it knows an incarnation only by its process, its backend identity and
the control messages it sends (``Ready``, ``Heartbeat``, ``Bye``).

Life cycle: ``starting`` (spawned, no Ready yet) -> ``ready`` (may be
routed to) -> ``stopping`` (asked to stop) -> ``exited``. ``role`` is
``active`` for the one that serves; a handover (issue 4) adds ``candidate``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs import EnvSpec, build_env

from . import process
from .config import Config, Home
from .errors import ConfigError

__all__ = ["EnvInfo", "Incarnation", "prepare_env", "spawn_incarnation"]

log = logging.getLogger("batos.supervisor.incarnations")


@dataclass(frozen=True)
class EnvInfo:
    id: str
    python: str
    packages: dict[str, str] = field(default_factory=dict)
    path: str = ""


@dataclass
class Incarnation:
    id: str
    proc: subprocess.Popen[bytes]
    env: EnvInfo
    started_at: float
    role: str = "active"
    state: str = "starting"
    ready_at: float | None = None
    last_seen: float = 0.0
    served: int = 0
    busy: int = 0
    packages: dict[str, str] = field(default_factory=dict)
    python: str = ""
    exit_code: int | None = None
    expected_exit: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id, "role": self.role, "state": self.state, "pid": self.pid,
            "env_id": self.env.id, "python": self.python,
            "uptime": round(now - self.ready_at, 3) if self.ready_at else 0.0,
            "served": self.served, "busy": self.busy, "packages": dict(self.packages),
            "exit_code": self.exit_code,
        }


def source_tree() -> Path | None:
    """The batos source this supervisor runs from, if it is a source tree (editable install)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.exists() and 'name = "batos"' in pyproject.read_text():
        return root
    return None


def prepare_env(config: Config, home: Home) -> EnvInfo:
    """Build (or reuse) the incarnation's environment. Blocking: run it off the loop."""
    env = config.env
    if env.mode == "current":
        return EnvInfo(id="current", python=env.python or sys.executable)
    project = Path(env.project) if env.project else source_tree()
    if project is None:
        raise ConfigError(
            "cannot find the batos source tree to install in the incarnation's env: set "
            "env.project in config.toml, install batos editable (pip install -e), or set "
            "env.mode = 'current'"
        )
    spec = EnvSpec(
        python=env.python or sys.executable, requirements=tuple(env.requirements),
        project=str(project), find_links=tuple(env.find_links),
    )
    envs_dir = Path(config.envs_dir) if config.envs_dir else home.root / "envs"
    cache = Path(config.uv_cache) if config.uv_cache else home.root / "uv-cache"
    started = time.monotonic()
    built = build_env(spec, envs_dir, cache_dir=cache, offline=env.offline, timeout=env.build_timeout)
    log.info("environment ready", extra={"env_id": built.id, "reused": built.reused,
                                         "seconds": round(time.monotonic() - started, 2)})
    return EnvInfo(id=built.id, python=str(built.python), packages=dict(built.packages),
                   path=str(built.path))


def spawn_incarnation(ident: str, env: EnvInfo, *, home: Home, config: Config, zeo: str,
                      now: float, role: str = "active") -> Incarnation:
    argv = [
        env.python, "-m", "uvm.incarnation", "--backend", home.backend, "--zeo", zeo,
        "--id", ident, "--env-id", env.id, "--workers", str(config.workers),
        "--heartbeat", str(config.heartbeat_interval),
    ]
    proc = process.spawn(argv, log_file=home.logs / f"{ident}.log")
    log.info("spawned incarnation", extra={"incarnation": ident, "pid": proc.pid, "env_id": env.id,
                                           "role": role})
    return Incarnation(id=ident, proc=proc, env=env, started_at=now, last_seen=now, role=role)
