"""Incarnations as the supervisor sees them: a record per process, and how to start one.

An incarnation is a ``python -m uvm.incarnation`` process in an environment
(``envs``) that the supervisor spawned. The supervisor never imports the
UVM: it knows an incarnation only by its process, its backend identity and
the control messages it sends (``Ready``, ``Heartbeat``, ``Bye``).

Life cycle: ``starting`` (spawned, no Ready yet) -> ``ready`` (may be
routed to) -> ``stopping`` (asked to stop) -> ``exited``. ``role`` is
``active`` for the one that serves; a handover (issue 4) adds ``candidate``.

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
    log.info("environment ready", extra={"env_id": built.id, "reused": built.reused,
                                         "seconds": round(time.monotonic() - started, 2)})
    return EnvInfo(id=built.id, python=str(built.python), packages=dict(built.packages),
                   path=str(built.path), spec=spec.to_dict())


def prepare_env(config: Config, home: Home, watch: BuildWatch | None = None) -> EnvInfo:
    """The active incarnation's environment at start. Blocking: run it off the loop."""
    spec = current_spec(config, home)
    if spec is None:
        return EnvInfo(id="current", python=config.env.python or sys.executable)
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


#: variables an incarnation reads (and the mind's API key variable, ``api_key_env``)
_PASSED = ("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONPATH",
           "BATOS_UNSAFE_TEST_EXPOSE_OS")
_PASSED_PREFIXES = ("BATOS_MIND_", "BATOS_TRAIN_")
#: what an unconfined child also keeps (a sandbox sets its own)
_UNCONFINED_BASICS = ("PATH", "HOME", "TMPDIR", "USER", "LOGNAME")
#: variables that name files the mind reads, or (record) appends to
_MIND_FILES = {"BATOS_MIND_REPLAY": "ro", "BATOS_MIND_LOCAL": "ro", "BATOS_MIND_RECORD": "rw"}
_MIND_TABLE_FILES = {"replay": "ro", "transformers": "ro", "record": "rw"}
_UNCONFINED_WARNING = ("incarnations run UNCONFINED (batos up --unconfined / [sandbox] mode = "
                       "'off'): image code runs with this user's access to files, processes "
                       "and the network")


def confinement_problem(config: Config) -> str | None:
    """Why incarnations cannot be confined as ``[sandbox]`` requires (None: they can, or
    the operator turned confinement off). ``batos up`` refuses to start on it."""
    if config.sandbox.mode == "off":
        return None
    problems = [p for p in (sandbox.available(), _lock_problem()) if p]
    if not problems:
        return None
    return ("cannot confine incarnations: " + "; ".join(problems) + ". Install what is "
            "missing (scripts/setup-dev installs bubblewrap) or run `batos up --unconfined` "
            "to serve without confinement")


def _lock_problem() -> str | None:
    from envs.confine import unavailable  # libseccomp through ctypes: loaded only when asked

    return unavailable()


def confinement(config: Config) -> dict[str, Any]:
    """What ``status`` shows under ``confinement``: the mode and what is enforced."""
    table = config.sandbox
    if table.mode == "off":
        return {"mode": "off", "warning": _UNCONFINED_WARNING}
    return {
        "mode": table.mode, "sandbox": "bwrap", "lock": "seccomp+rlimits",
        "filesystem": "read-only allowlist (interpreter, env, source, image read-only); "
                      "sockets folder; no home, no keys",
        "network": "only when a mind or inquiry server is configured",
        "memory_mb": table.memory_mb, "cpu_seconds": table.cpu_seconds,
    }


def warn_if_unconfined(config: Config) -> None:
    if config.sandbox.mode == "off":
        log.warning(_UNCONFINED_WARNING)


def _absolute(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def incarnation_environment(config: Config, *, confined: bool,
                            environ: dict[str, str] | None = None) -> dict[str, str]:
    """The incarnation's whole environment: what it reads, from the supervisor's, plus
    its configuration tables; the supervisor's other variables (secrets) stay out.
    File-valued mind variables are made absolute (a sandbox runs in ``/``)."""
    source = dict(os.environ if environ is None else environ)
    names = set(_PASSED) | set(config.sandbox.pass_env)
    key_env = str(mind_config(config).get("api_key_env") or "")
    if key_env:
        names.add(key_env)
    if not confined:
        names |= set(_UNCONFINED_BASICS)
    env = {k: v for k, v in source.items()
           if k in names or k.startswith(_PASSED_PREFIXES)}
    for name in _MIND_FILES:
        if env.get(name, "").strip():
            env[name] = _absolute(env[name].strip())
    return env


def _needs_network(zeo: str, home: Home, mind: dict[str, Any], inquiry: dict[str, Any],
                   env: dict[str, str]) -> bool:
    if not zeo.startswith("/") or not home.backend.startswith("ipc://"):
        return True  # a TCP storage or backend
    return bool(mind.get("base_url") or inquiry.get("vllm_url") or env.get("BATOS_MIND_URL"))


def _file_grant(path: str, mode: str, ro: list[str], rw: list[str]) -> None:
    target = Path(path)
    if mode == "rw" and not target.exists() and target.parent.is_dir():
        target.touch()  # appended to (O_APPEND|O_CREAT): the file itself is the grant
    if target.exists():
        (rw if mode == "rw" else ro).append(str(target))


def _grants(env: EnvInfo, home: Home, config: Config, mind: dict[str, Any],
            inquiry: dict[str, Any], env_vars: dict[str, str]) -> tuple[list[str], list[str]]:
    """(read-only, read-write) paths an incarnation of ``env`` needs inside its sandbox."""
    ro = [str(home.sockets), *[str(p) for p in (home.image, Path(f"{home.image}.index"))
                               if p.exists()]]
    rw: list[str] = []
    tree = source_tree()
    project = (env.spec or {}).get("project")
    ro += [str(p) for p in (tree, project, env.path or None) if p and Path(p).exists()]
    ro += [p for p in env_vars.get("PYTHONPATH", "").split(os.pathsep)
           if p.startswith("/") and Path(p).exists()]
    for name, mode in _MIND_FILES.items():
        if env_vars.get(name):
            _file_grant(env_vars[name], mode, ro, rw)
    if mind.get("path") and mind.get("backend") in _MIND_TABLE_FILES:
        _file_grant(str(mind["path"]), _MIND_TABLE_FILES[mind["backend"]], ro, rw)
    if inquiry.get("base_model") and inquiry.get("vllm_url"):
        root = Path(inquiry.get("home") or home.root)
        train = Path(env_vars.get("BATOS_TRAIN_ENVS") or root / "train-envs")
        for folder in (root / "inquiry", root / "adapters", train):
            folder.mkdir(parents=True, exist_ok=True)
            rw.append(str(folder))
        if Path(str(inquiry["base_model"])).exists():
            ro.append(str(inquiry["base_model"]))
    for extra in config.sandbox.read_only:
        ro.append(_absolute(extra))
    for extra in config.sandbox.read_write:
        rw.append(_absolute(extra))
    return ro, rw


def spawn_incarnation(ident: str, env: EnvInfo, *, home: Home, config: Config, zeo: str,
                      now: float, role: str = "active") -> Incarnation:
    argv = [
        env.python, "-m", "uvm.incarnation", "--backend", home.backend, "--zeo", zeo,
        "--id", ident, "--env-id", env.id, "--workers", str(config.workers),
        "--heartbeat", str(config.heartbeat_interval),
        "--packages", ",".join(env.requirement_names), "--image", str(home.image),
    ]
    confined = config.sandbox.mode != "off"
    if not confined:
        argv.append("--unconfined")
    if config.sandbox.memory_mb is not None:
        argv += ["--memory-mb", str(config.sandbox.memory_mb)]
    if config.sandbox.cpu_seconds is not None:
        argv += ["--cpu-seconds", str(config.sandbox.cpu_seconds)]
    env_vars = incarnation_environment(config, confined=confined)
    mind, inquiry = mind_config(config), inquiry_config(config, home)
    if mind:
        if mind.get("path"):
            mind = {**mind, "path": _absolute(str(mind["path"]))}
        env_vars["BATOS_MIND_CONFIG"] = json.dumps(mind)
    if inquiry:
        env_vars["BATOS_INQUIRY_CONFIG"] = json.dumps(inquiry)
    network = False
    if confined:
        network = _needs_network(zeo, home, mind, inquiry, env_vars)
        read_only, read_write = _grants(env, home, config, mind, inquiry, env_vars)
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
    proc = process.spawn(argv, log_file=home.logs / f"{ident}.log", env=env_vars,
                         sandboxed=confined)
    log.info("spawned incarnation", extra={"incarnation": ident, "pid": proc.pid, "env_id": env.id,
                                           "role": role, "confined": confined,
                                           "network": network})
    return Incarnation(id=ident, proc=proc, env=env, started_at=now, last_seen=now, role=role,
                       confined=confined, network=network)
