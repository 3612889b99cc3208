"""The supervisor's configuration and the layout of its home folder.

Configuration comes from a TOML file (``--config FILE``, else
``<home>/config.toml`` if present), then ``BATOS_ENDPOINT``, then the
command line. Every field has a default; unknown keys are errors, so a typo
in the file is reported instead of silently ignored.

Sockets live in ``<home>/run``; the two an incarnation uses (the backend and the ZEO
server) in ``<run>/inc``, the only part of the home its sandbox shows it (``[sandbox]``,
``envs.sandbox``). A Unix socket path must fit in ~107 bytes;
when the home path is too long for that, sockets go to a short private folder
``/tmp/batos-<uid>-<hash of home>`` instead (logged at start).
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.client import DEFAULT_ENDPOINT
from bridge.codec import MAX_FRAME
from envs.confine import DEFAULT_MEMORY_MB, MEMORY_MIN_MB

from .errors import ConfigError
from .vllm import VllmConfig

__all__ = ["BudgetConfig", "Config", "EnvConfig", "Home", "SandboxConfig", "load_config"]

_MAX_SOCKET_PATH = 100


class EnvConfig(BaseModel):
    """How the incarnation's environment is made."""

    model_config = ConfigDict(extra="forbid")
    #: "uv": a virtualenv built by uv from the spec; "current": the supervisor's own
    #: interpreter (no isolation; for development and fast tests).
    mode: Literal["uv", "current"] = "uv"
    python: str | None = None
    requirements: list[str] = Field(default_factory=list)
    #: source tree of batos to install editable in the env; None: the one this code runs from
    project: str | None = None
    offline: bool = False
    find_links: list[str] = Field(default_factory=list)
    build_timeout: float = 900.0


class SandboxConfig(BaseModel):
    """How incarnations are confined (``[sandbox]``; docs/operations.md).

    ``required``: every incarnation runs inside bubblewrap (``envs.sandbox``) and locks
    itself (``envs.confine``); ``batos up`` refuses to start where that cannot work.
    ``off`` (``batos up --unconfined``): no sandbox, no lock, a warning at every start and
    in ``status``. The limits go to the incarnation's process lock (None: its defaults).
    """

    model_config = ConfigDict(extra="forbid")
    mode: Literal["required", "off"] = "required"
    #: MiB of address space an incarnation may add after it locks itself (RLIMIT_AS),
    #: the same budget its crucible trials get; None: ``envs.confine.DEFAULT_MEMORY_MB``;
    #: 0 or "off": no limit (a message may then take the machine's memory)
    memory_mb: int | Literal["off"] | None = None
    #: CPU seconds an incarnation may use in its life (RLIMIT_CPU); it is then replaced
    cpu_seconds: int | None = Field(default=None, gt=0)

    @field_validator("memory_mb")
    @classmethod
    def _memory(cls, value: int | str | None) -> int | None:
        if value is None:
            return None
        if value == "off" or value == 0:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < MEMORY_MIN_MB:
            raise ValueError(f"memory_mb must be 0 or \"off\" (no limit) or at least "
                             f"{MEMORY_MIN_MB} MiB, not {value!r}")
        return value

    def memory_budget(self) -> int:
        """The headroom incarnations get, MiB (0: none)."""
        return DEFAULT_MEMORY_MB if self.memory_mb is None else int(self.memory_mb)
    #: more variables of the supervisor's environment to hand incarnations (by name)
    pass_env: list[str] = Field(default_factory=list)
    #: more paths incarnations may read (e.g. a model folder), or read and write
    read_only: list[str] = Field(default_factory=list)
    read_write: list[str] = Field(default_factory=list)
    #: bytes of an incarnation's output per log file before it rotates (supervisor.logpump)
    log_max_bytes: int = Field(default=64 << 20, ge=1024)


class BudgetConfig(BaseModel):
    """Every message's budget in the incarnations (``[budget]``; ``uvm.budget``), passed
    as ``--budget-cpu/--budget-wall/--budget-grace``. None: ``BATOS_BUDGET_*`` from the
    supervisor's environment, else the incarnation's defaults (5 s CPU, 30 s wall, 2 s)."""

    model_config = ConfigDict(extra="forbid")
    #: CPU seconds a message may use
    cpu: float | None = Field(default=None, gt=0)
    #: wall-clock seconds a message may run
    wall: float | None = Field(default=None, gt=0)
    #: seconds a stopped message may take to unwind before its incarnation ends
    grace: float | None = Field(default=None, gt=0)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str = DEFAULT_ENDPOINT
    #: also bind the frontend on ipc://<run>/fe.sock
    ipc_frontend: bool = True
    #: None: required exactly when the endpoint is not loopback
    curve: bool | None = None
    workers: int = Field(default=4, ge=1, le=64)
    heartbeat_interval: float = Field(default=1.0, gt=0)
    heartbeat_timeout: float = Field(default=5.0, gt=0)
    start_timeout: float = Field(default=120.0, gt=0)
    stop_grace: float = Field(default=10.0, ge=0)
    max_restarts: int = Field(default=5, ge=0)
    restart_period: float = Field(default=60.0, gt=0)
    backoff_initial: float = Field(default=0.25, ge=0)
    backoff_max: float = Field(default=10.0, ge=0)
    #: after this long degraded, try one more incarnation (0: stay degraded until restarted)
    degraded_retry: float = Field(default=300.0, ge=0)
    request_timeout: float = Field(default=60.0, gt=0)
    max_pending: int = Field(default=10_000, ge=1)
    max_frame: int = Field(default=MAX_FRAME, ge=1024)
    #: handover: longest a candidate may take to validate the image
    validate_timeout: float = Field(default=300.0, gt=0)
    #: handover: how long the old incarnation stays ready to take over again
    probation: float = Field(default=30.0, ge=0)
    #: envs kept for `batos rollback` (the current one and this many before it)
    keep_generations: int = Field(default=3, ge=1)
    log_level: str = "INFO"
    envs_dir: str | None = None
    uv_cache: str | None = None
    env: EnvConfig = Field(default_factory=EnvConfig)
    #: the mind for doesNotUnderstand: (``[mind]`` table): handed to incarnations as
    #: BATOS_MIND_CONFIG (JSON) and validated there; empty: BATOS_MIND_* from the environment
    mind: dict[str, Any] = Field(default_factory=dict)
    #: the Characterological Inquiry Loop (``[inquiry]`` table): handed to incarnations as
    #: BATOS_INQUIRY_CONFIG (JSON), with ``[vllm]``'s model and server filled in; it also
    #: needs the image's own ``inquiryConfig`` enabled (``weaver setInquiry:to:``)
    inquiry: dict[str, Any] = Field(default_factory=dict)
    #: the vLLM server the supervisor runs and restarts (``[vllm]``, off by default);
    #: when on and ``[mind]`` is empty, incarnations get a mind pointed at it
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    #: confinement of incarnations (``[sandbox]``): required (default) or off
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    #: each message's budget in the incarnations (``[budget]``)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)


def load_config(path: str | os.PathLike[str] | None, home: Path, **overrides: object) -> Config:
    file = Path(path) if path else home / "config.toml"
    data: dict[str, object] = {}
    if path and not file.exists():
        raise ConfigError(f"config file {file} does not exist")
    if file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {file}: {exc}") from exc
    if os.environ.get("BATOS_ENDPOINT"):
        data["endpoint"] = os.environ["BATOS_ENDPOINT"]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"config {file if file.exists() else '(defaults)'}: {loc}: {err['msg']}") from None


@dataclass(frozen=True)
class Home:
    root: Path
    run: Path

    @classmethod
    def at(cls, root: Path) -> Home:
        root = root.expanduser().resolve()
        run = root / "run"
        if len(str(run / "inc" / "zeo.sock")) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
            run = Path(f"/tmp/batos-{os.getuid()}-{digest}")
        return cls(root, run)

    def prepare(self) -> None:
        for folder in (self.root, self.run, self.sockets, self.logs, self.root / "envs",
                       self.root / "keys"):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run, 0o700)

    @property
    def image(self) -> Path:
        return self.root / "live_image.fs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def sockets(self) -> Path:
        """The incarnations' sockets (backend, ZEO): all of the run folder they may see."""
        return self.run / "inc"

    @property
    def zeo_socket(self) -> Path:
        return self.sockets / "zeo.sock"

    @property
    def frontend_ipc(self) -> str:
        return f"ipc://{self.run / 'fe.sock'}"

    @property
    def backend(self) -> str:
        return f"ipc://{self.sockets / 'be.sock'}"

    @property
    def events(self) -> str:
        return f"ipc://{self.run / 'ev.sock'}"

    @property
    def lock(self) -> Path:
        return self.run / "supervisor.lock"
