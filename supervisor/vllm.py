"""The vLLM server as a supervised child (the ``[vllm]`` table): start, watch, restart, stop.

When ``[vllm] enabled = true`` the supervisor runs ``<venv>/bin/python -m
vllm.entrypoints.openai.api_server`` on ``127.0.0.1:<port>`` with runtime LoRA updating
allowed (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), so the weaver can load and unload
facets, and hands incarnations a mind pointed at it (``supervisor.incarnations``).

``VllmChild`` is a small state machine the loop advances with ``step(now)``::

    stopped -> starting -> ready
                  |          |  (the process exits or never answers)
                  v          v
               restarting (RestartPolicy backoff) -> starting ...
                  |  too many crashes, or nothing to start (no venv, no model)
                  v
               failed (retried after ``degraded_retry``)       stop() -> stopped

Threads: ``start``/``step``/``stop`` run in the supervisor's loop thread only. Readiness
(``GET /v1/models`` answers) is probed by one daemon thread per start that only does HTTP
and sets an ``Event``; the loop reads the event, so a slow server never blocks routing.

The command line, the environment and the readiness check are ``envs.vllm``'s (the one
launch description ``weaver.vllm_server`` uses too); stopping is ``envs.children``'s.
Boundary: the supervisor imports nothing of the weaver (tests/unit/test_layering.py).
Seam for tests: ``launch`` (argv, env, log file -> a ``Handle``) and ``probe``
(base_url -> bool).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psutil
from pydantic import BaseModel, ConfigDict, Field, model_validator

from envs import children
from envs.vllm import HOST, VllmLaunch, default_venv, free_port, ready

from . import process
from .errors import SupervisorError
from .restart import RestartPolicy

__all__ = ["Handle", "VllmChild", "VllmConfig", "VllmError", "default_python", "free_port"]

log = logging.getLogger("batos.supervisor.vllm")

INSTALL_HINT = "run scripts/install-vllm, or set [vllm] python / BATOS_VLLM_VENV"
Event = tuple[str, dict[str, Any]]


class VllmError(SupervisorError):
    """The vLLM server cannot be started (no venv, no model folder)."""


def default_python() -> Path:
    """``$BATOS_VLLM_VENV/bin/python``, else ``~/.cache/batos/vllm-venv/bin/python``."""
    return default_venv() / "bin" / "python"


class VllmConfig(BaseModel):
    """``[vllm]``: the model server the supervisor runs (off by default)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    #: the vLLM venv's python; None: ``default_python()``
    python: str | None = None
    #: a model folder (config.json, weights, tokenizer); required when enabled
    model: str | None = None
    #: the name clients ask for; None: the model folder's name
    served_model_name: str | None = None
    #: 0: a free port chosen when the supervisor starts (kept across restarts)
    port: int = Field(default=0, ge=0, le=65535)
    max_model_len: int = Field(default=2048, ge=16)
    dtype: str = "auto"
    max_num_seqs: int = Field(default=4, ge=1)
    #: VLLM_CPU_KVCACHE_SPACE
    kv_cache_gib: int = Field(default=1, ge=1)
    enable_lora: bool = True
    max_lora_rank: int = Field(default=16, ge=1)
    max_loras: int = Field(default=2, ge=1)
    extra_args: list[str] = Field(default_factory=list)
    #: longest a start may take before ``/v1/models`` answers (then killed, counted a crash)
    startup_timeout: float = Field(default=600.0, gt=0)
    stop_grace: float = Field(default=20.0, ge=0)
    #: more than this many exits within ``restart_period`` s: failed (retried later)
    max_restarts: int = Field(default=5, ge=0)
    restart_period: float = Field(default=900.0, gt=0)

    @model_validator(mode="after")
    def _model_when_enabled(self) -> VllmConfig:
        if self.enabled and not self.model:
            raise ValueError("[vllm] enabled needs model = '<model folder>'")
        return self

    @property
    def served_name(self) -> str:
        return self.served_model_name or Path(self.model or "model").name

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def mind(self) -> dict[str, Any]:
        """The incarnation's mind config for this server (``BATOS_MIND_CONFIG``)."""
        mind: dict[str, Any] = {"backend": "openai", "base_url": self.base_url,
                                "model": self.served_name}
        if self.enable_lora:  # the adapter budget the mind's LoRA runtime may use
            mind.update(max_loras=self.max_loras, max_lora_rank=self.max_lora_rank)
        return mind

    def describe(self) -> VllmLaunch:
        """The server this table describes, as ``envs.vllm`` launches it."""
        return VllmLaunch(
            python=Path(self.python).expanduser() if self.python else default_python(),
            model=Path(self.model or "").expanduser(), served_name=self.served_name,
            host=HOST, port=self.port, max_model_len=self.max_model_len, dtype=self.dtype,
            max_num_seqs=self.max_num_seqs, kv_cache_gib=self.kv_cache_gib,
            enable_lora=self.enable_lora, max_lora_rank=self.max_lora_rank,
            max_loras=self.max_loras, extra_args=tuple(self.extra_args))

    def argv(self) -> list[str]:
        return self.describe().argv()

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        return self.describe().environment(base)

    def check(self) -> None:
        """``VllmError`` when there is nothing to start; the message says what to do."""
        python = Path(self.argv()[0])
        if not python.exists():
            raise VllmError(f"no vLLM python at {python}: {INSTALL_HINT}")
        if not (Path(self.model or "").expanduser() / "config.json").is_file():
            raise VllmError(f"[vllm] model {self.model!r} is not a model folder (no config.json)")


class Handle(Protocol):
    """A started server process, as the state machine sees it."""

    pid: int

    def poll(self) -> int | None: ...
    def kill(self) -> None: ...
    def reap(self) -> None: ...
    def stop(self, grace: float) -> int | None: ...


class ProcessHandle:
    """The real process: its own session; stopping reaches every process it started."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._seen: dict[int, psutil.Process] = {}
        self._tracked = 0.0

    def poll(self) -> int | None:
        if time.monotonic() - self._tracked > 1.0:  # a /proc scan: not on every loop turn
            self._tracked = time.monotonic()
            self.track()
        return self.proc.poll()

    def track(self) -> None:
        """Remember descendants (vLLM's engine processes) while the parent can name them."""
        if self.proc.returncode is None:
            for child in children.descendants(self.pid):
                self._seen.setdefault(child.pid, child)

    def kill(self) -> None:
        process.kill(self.proc, "vLLM server")

    def reap(self) -> None:
        """After the server exited: SIGKILL what it left (its engine processes), no waiting."""
        children.kill(self.proc, "vLLM server", also=self._seen.values())

    def stop(self, grace: float) -> int | None:
        self.track()
        return children.stop(self.proc, "vLLM server", grace=grace, also=self._seen.values())


def launch(argv: list[str], env: dict[str, str], log_file: Path) -> Handle:
    return ProcessHandle(process.spawn(argv, log_file=log_file, env=env))


def probe(base_url: str) -> bool:
    """True when ``GET <base_url>/models`` answers (``envs.vllm.ready``)."""
    return ready(base_url)


class _Prober(threading.Thread):
    """Polls readiness off the loop; ``ready`` is set once the server answers."""

    def __init__(self, base_url: str, check: Callable[[str], bool]) -> None:
        super().__init__(name="batos-vllm-probe", daemon=True)
        self.base_url, self.check = base_url, check
        self.ready, self.cancel = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.cancel.is_set():
            if self.check(self.base_url):
                self.ready.set()
                return
            self.cancel.wait(0.5)


class VllmChild:
    """One supervised vLLM server; every method runs in the loop thread."""

    def __init__(self, config: VllmConfig, log_file: Path, *, degraded_retry: float = 300.0,
                 launch: Callable[[list[str], dict[str, str], Path], Handle] = launch,
                 probe: Callable[[str], bool] = probe) -> None:
        if config.enabled and config.port == 0:
            config = config.model_copy(update={"port": free_port()})
        self.config = config
        self.log_file = log_file
        self.policy = RestartPolicy(max_restarts=config.max_restarts, period=config.restart_period,
                                    initial=1.0, maximum=60.0, degraded_retry=degraded_retry)
        self._launch, self._probe = launch, probe
        self.handle: Handle | None = None
        self.state = "stopped"
        self.reason = ""
        self.restarts = 0
        self.started_at = 0.0
        self._next_start: float | None = None
        self._prober: _Prober | None = None

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "port": self.config.port,
                "base_url": self.config.base_url, "model": self.config.served_name,
                "restarts": self.restarts, "reason": self.reason, "log": str(self.log_file)}

    def start(self, now: float) -> list[Event]:
        try:
            self.config.check()
        except VllmError as exc:
            return self._fail(str(exc), now)
        env = self.config.environment(process.child_environment())
        self.handle = self._launch(self.config.argv(), env, self.log_file)
        self.state, self.reason, self.started_at = "starting", "", now
        self._prober = _Prober(self.config.base_url, self._probe)
        self._prober.start()
        log.info("vLLM server starting", extra={"pid": self.handle.pid, "port": self.config.port,
                                                "log": str(self.log_file)})
        return [("vllm.starting", {"pid": self.handle.pid, "port": self.config.port,
                                   "base_url": self.config.base_url})]

    def step(self, now: float) -> list[Event]:
        """Advance: notice readiness, exits and start timeouts; restart when due."""
        if self.state in ("starting", "ready") and self.handle is not None:
            code = self.handle.poll()
            if code is not None:
                return self._exited(code, now)
            if self.state == "starting" and self._prober is not None and self._prober.ready.is_set():
                self.state = "ready"
                seconds = round(now - self.started_at, 1)
                log.info("vLLM server ready", extra={"pid": self.handle.pid, "seconds": seconds,
                                                     "base_url": self.config.base_url})
                return [("vllm.ready", {"pid": self.handle.pid, "base_url": self.config.base_url,
                                        "seconds": seconds})]
            if self.state == "starting" and now - self.started_at > self.config.startup_timeout:
                log.error("vLLM server did not answer within %.0fs; killing it (log %s)",
                          self.config.startup_timeout, self.log_file)
                self.reason = f"no answer within {self.config.startup_timeout:g}s"
                self.handle.kill()  # its exit, seen next step, counts as a crash
            return []
        if self.state == "restarting" and self._next_start is not None and now >= self._next_start:
            self.restarts += 1
            return self.start(now)
        if self.state == "failed" and self.policy.retry_due(now):
            self.policy.clear()
            self.restarts += 1
            return self.start(now)
        return []

    def _exited(self, code: int, now: float) -> list[Event]:
        assert self.handle is not None
        pid = self.handle.pid
        self._cancel_probe()
        # its engine processes go too; the restart delay (>= 1 s) lets them free the port
        self.handle.reap()
        self.handle = None
        decision = self.policy.record_crash(now)
        event = {"pid": pid, "exit_code": code, "restarts": self.restarts}
        if decision.degraded:
            self._fail(f"{decision.recent} exits within {self.config.restart_period:g}s "
                       f"(last exit code {code}); see {self.log_file}", now)
        else:
            self.state, self._next_start = "restarting", now + decision.delay
            log.error("vLLM server exited with %s; restarting in %.1fs (log %s)", code,
                      decision.delay, self.log_file)
            event["delay"] = decision.delay
        return [("vllm.exited", event)]

    def _fail(self, reason: str, now: float) -> list[Event]:
        self.state, self.reason, self._next_start = "failed", reason, None
        if self.policy.degraded_since is None:
            self.policy.degraded_since = now
        log.error("vLLM server failed: %s", reason)
        return [("vllm.failed", {"reason": reason})]

    def _cancel_probe(self) -> None:
        if self._prober is not None:
            self._prober.cancel.set()
            self._prober = None

    def stop(self) -> int | None:
        """SIGTERM the server's process group, SIGKILL after ``stop_grace``; idempotent."""
        self._cancel_probe()
        code = None
        if self.handle is not None:
            code = self.handle.stop(self.config.stop_grace)
            self.handle = None
        self.state, self._next_start = "stopped", None
        return code
