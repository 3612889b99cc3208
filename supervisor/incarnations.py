"""Incarnations as the supervisor sees them: a record per process, and how to start one.

An incarnation is a ``python -m batos.root.incarnation`` process (the composition
root that assembles the UVM, the mind and the crucible) in an environment
(``envs``) that the supervisor spawned. The supervisor never imports the
UVM nor ``batos``: it knows an incarnation only by its process, its backend
identity and the control messages it sends (``Ready``, ``Heartbeat``, ``Bye``, ...).

Life cycle: ``starting`` (spawned, no Ready yet) -> ``ready`` (may be
routed to) -> ``stopping`` (asked to stop) -> ``exited``. ``role`` is
``active`` for the one that serves; a handover (``supervisor.handover``) adds a
``candidate``, makes the one it replaces ``old`` and a candidate it gives up ``failed``.
The pool (``supervisor.pool``) keeps the records and drives the life cycle; this
module only describes and starts them.

Confinement (``[sandbox]``, docs/design.md): with ``mode = "required"`` (the default)
the incarnation runs inside bubblewrap (``envs.sandbox.wrap``) and sees only its
interpreter and env, the batos source, ``<run>/inc`` (its two sockets) and the image
file and index read-only (for validation); the inquiry loop's folders and the mind's
files when configured; the network only when a mind or inquiry server is configured.
It locks itself in-process (``envs.confine``) with the ``[sandbox]`` limits. With
``mode = "off"`` (``batos up --unconfined``) it runs as the supervisor's user with
``--unconfined``. Either way its environment is built here from what it reads
(``incarnation_environment``), never the supervisor's whole environment: a secret
the supervisor holds does not reach image code.

Its stdout and stderr are one pipe the supervisor drains into ``logs/<id>.log``
(``supervisor.logpump``: capped at ``[sandbox] log_max_bytes``, rotated once): it holds
no descriptor on a host file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs import BuildWatch, EnvError, EnvSpec, build_env, canonical_name, sandbox

from . import process
from .config import Config, Home
from .confinement import (
    absolute,
    confinement,
    confinement_problem,
    grants,
    incarnation_environment,
    needs_network,
    precompile,
    warn_if_unconfined,
)
from .errors import ConfigError
from .files import replace_durably

__all__ = [
    "EnvInfo",
    "Incarnation",
    "build",
    "confinement",
    "confinement_problem",
    "current_spec",
    "envs_dir",
    "incarnation_environment",
    "inquiry_config",
    "mind_config",
    "precompile",
    "prepare_env",
    "save_current_spec",
    "spawn_incarnation",
]

log = logging.getLogger("batos.supervisor.incarnations")


@dataclass(frozen=True)
class EnvInfo:
    id: str
    python: str
    packages: dict[str, str] = field(default_factory=dict)
    path: str = ""
    #: the EnvSpec as a dict (uv mode); None for the supervisor's own interpreter
    spec: dict[str, Any] | None = None

    @property
    def requirement_names(self) -> list[str]:
        if not self.spec:
            return []
        return sorted({canonical_name(_name_of(r)) for r in self.spec.get("requirements", [])})

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "python": self.python, "path": self.path, "spec": self.spec,
                "packages": dict(self.packages)}


def _name_of(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@(]", requirement.strip(), maxsplit=1)[0]


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
    stop_deadline: float | None = None
    #: inside bubblewrap (``proc`` is bwrap; the code runs in ``code_pid``)
    confined: bool = False
    #: the sandbox shares the host's network
    network: bool = False
    #: its lanes (``Ready.lanes``; 0: everything goes to its main socket) and those that
    #: sent ``Attach`` (identity ``f"{id}#{k}"``): requests may be routed to these
    lanes: int = 0
    attached: set[int] = field(default_factory=set)
    _code_pid: int | None = None

    @property
    def pid(self) -> int:
        """The process the supervisor started and signals (bwrap when confined)."""
        return self.proc.pid

    @property
    def code_pid(self) -> int:
        """The host pid of the process that runs the image's code (what operators signal);
        the sandbox's pid until the wrapped command is found."""
        if not self.confined:
            return self.proc.pid
        if self._code_pid is None and self.proc.poll() is None:
            self._code_pid = sandbox.command_pid(self.proc.pid)
        return self._code_pid or self.proc.pid

    def status(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id, "role": self.role, "state": self.state, "pid": self.code_pid,
            "env_id": self.env.id, "python": self.python,
            "uptime": round(now - self.ready_at, 3) if self.ready_at else 0.0,
            "served": self.served, "busy": self.busy, "packages": dict(self.packages),
            "exit_code": self.exit_code,
            "confined": self.confined, "network": self.network,
            "lanes": self.lanes, "attached": sorted(self.attached),
            **({"sandbox_pid": self.proc.pid} if self.confined else {}),
        }


def source_tree() -> Path | None:
    """The batos source this supervisor runs from, if it is a source tree (editable install)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.exists() and 'name = "batos"' in pyproject.read_text():
        return root
    return None


def envs_dir(config: Config, home: Home) -> Path:
    return Path(config.envs_dir) if config.envs_dir else home.root / "envs"


def _current_file(home: Home) -> Path:
    return home.root / "current-env.json"


def current_spec(config: Config, home: Home) -> EnvSpec | None:
    """The spec the active incarnation should run: the last switched-to (``current-env.json``),
    else the configured one; None when incarnations run on the supervisor's interpreter."""
    env = config.env
    if env.mode == "current":
        return None
    recorded = _current_file(home)
    if recorded.exists():
        try:
            return EnvSpec.from_dict(json.loads(recorded.read_text()))
        except (ValueError, EnvError) as exc:
            log.error("ignoring unreadable %s: %s", recorded, exc)
    project = Path(env.project) if env.project else source_tree()
    if project is None:
        raise ConfigError(
            "cannot find the batos source tree to install in the incarnation's env: set "
            "env.project in config.toml, install batos editable (pip install -e), or set "
            "env.mode = 'current'"
        )
    return EnvSpec(
        python=env.python or sys.executable, requirements=tuple(env.requirements),
        project=str(project), find_links=tuple(env.find_links),
    )


def save_current_spec(home: Home, spec: dict[str, Any] | None) -> None:
    """Record which spec is active, atomically and durably (the switch depends on it)."""
    target = _current_file(home)
    if spec is None:
        target.unlink(missing_ok=True)
        return
    replace_durably(target, json.dumps(spec, sort_keys=True))


def build(spec: EnvSpec, config: Config, home: Home, *, offline: bool | None = None,
          watch: BuildWatch | None = None) -> EnvInfo:
    """Build (or reuse) the env for ``spec``. Blocking: run it off the loop."""
    cache = Path(config.uv_cache) if config.uv_cache else home.root / "uv-cache"
    started = time.monotonic()
    built = build_env(spec, envs_dir(config, home), cache_dir=cache,
                      offline=config.env.offline if offline is None else offline,
                      timeout=config.env.build_timeout, watch=watch)
    info = EnvInfo(id=built.id, python=str(built.python), packages=dict(built.packages),
                   path=str(built.path), spec=spec.to_dict())
    if config.sandbox.mode != "off":
        precompile(info.python, [info.path, source_tree(), spec.project], watch)
    log.info("environment ready", extra={"env_id": built.id, "reused": built.reused,
                                         "seconds": round(time.monotonic() - started, 2)})
    return info


def prepare_env(config: Config, home: Home, watch: BuildWatch | None = None) -> EnvInfo:
    """The active incarnation's environment at start. Blocking: run it off the loop."""
    spec = current_spec(config, home)
    if spec is None:
        info = EnvInfo(id="current", python=config.env.python or sys.executable)
        if config.sandbox.mode != "off":
            precompile(info.python, [source_tree()], watch)
        return info
    return build(spec, config, home, watch=watch)


def mind_config(config: Config) -> dict[str, Any]:
    """What incarnations get as BATOS_MIND_CONFIG: ``[mind]``, else (when the supervisor
    runs vLLM) a mind pointed at that server; {}: none (BATOS_MIND_* decide)."""
    if config.mind:
        return dict(config.mind)
    return config.vllm.mind() if config.vllm.enabled else {}


def inquiry_config(config: Config, home: Home) -> dict[str, Any]:
    """What incarnations get as BATOS_INQUIRY_CONFIG: ``[inquiry]``, with the base model and
    server of ``[vllm]`` filled in when the supervisor runs it; {}: the loop stays off."""
    table = dict(config.inquiry)
    if not table and not config.vllm.enabled:
        return {}
    if config.vllm.enabled:
        table.setdefault("base_model", config.vllm.model)
        table.setdefault("vllm_url", config.vllm.base_url)
        table.setdefault("max_loras", config.vllm.max_loras)
        table.setdefault("max_lora_rank", config.vllm.max_lora_rank)
    table.setdefault("home", str(home.root))
    return table


def spawn_incarnation(ident: str, env: EnvInfo, *, home: Home, config: Config, zeo: str,
                      now: float, role: str = "active") -> Incarnation:
    argv = [
        env.python, "-m", "batos.root.incarnation", "--backend", home.backend, "--zeo", zeo,
        "--id", ident, "--env-id", env.id, "--workers", str(config.workers),
        "--heartbeat", str(config.heartbeat_interval),
        "--packages", ",".join(env.requirement_names), "--image", str(home.image),
    ]
    confined = config.sandbox.mode != "off"
    if not confined:
        argv.append("--unconfined")
    if confined:
        argv += ["--memory-mb", str(config.sandbox.memory_budget())]
    if confined and config.sandbox.cpu_seconds is not None:
        argv += ["--cpu-seconds", str(config.sandbox.cpu_seconds)]
    for name in ("cpu", "wall", "grace"):
        value = getattr(config.budget, name)
        if value is not None:
            argv += [f"--budget-{name}", repr(float(value))]
    mind, inquiry = mind_config(config), inquiry_config(config, home)
    env_vars = incarnation_environment(config, confined=confined, mind=mind)
    if mind:
        if mind.get("path"):
            mind = {**mind, "path": absolute(str(mind["path"]))}
        env_vars["BATOS_MIND_CONFIG"] = json.dumps(mind)
    if inquiry:
        env_vars["BATOS_INQUIRY_CONFIG"] = json.dumps(inquiry)
    network = False
    if confined:
        network = needs_network(zeo, home, mind, inquiry, env_vars)
        code = [env.path or None, str(source_tree() or ""), (env.spec or {}).get("project")]
        read_only, read_write = grants(home=home, config=config, code=code, mind=mind,
                                       inquiry=inquiry, env_vars=env_vars)
        try:
            argv = sandbox.wrap(argv, python=env.python, read_only=read_only,
                                read_write=read_write, network=network, env=env_vars)
        except EnvError as exc:
            # never unconfined instead: a start that fails with the reason, like any
            # incarnation that cannot start (restarts, then degraded, say it)
            log.error("cannot confine incarnation %s: %s", ident, exc)
            argv, confined = [sys.executable, "-c", "import sys; sys.exit(sys.argv[1])",
                              f"cannot confine incarnation {ident}: {exc}"], False
        env_vars = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # bwrap's own; cleared inside
    else:
        warn_if_unconfined(config)
    # output through a pipe and the supervisor's log pump: never a host file it holds
    proc = process.spawn(argv, log_file=home.logs / f"{ident}.log", env=env_vars,
                         sandboxed=confined, log_cap=config.sandbox.log_max_bytes)
    log.info("spawned incarnation", extra={"incarnation": ident, "pid": proc.pid, "env_id": env.id,
                                           "role": role, "confined": confined,
                                           "network": network})
    return Incarnation(id=ident, proc=proc, env=env, started_at=now, last_seen=now, role=role,
                       confined=confined, network=network)
