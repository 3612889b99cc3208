"""What the training env holds, and building it with ``envs``: the ML stack beside batos.

The heavy stack (torch, transformers, peft, trl, bitsandbytes, datasets, accelerate)
never enters the supervisor's or the incarnation's environment: ``build(root)``
makes an ``envs`` env for ``default_spec()`` under ``root`` (``envs.build_env``:
``<root>/<spec id>``, complete or absent, built under a lock, reused while the spec
is the same; its record ``batos-env.json`` says it is complete). The uv cache is
``<root>/uv-cache`` (same filesystem: hard links, so a rebuild takes seconds).
Modules compile on first import, as pip leaves them (not at the build).

The spec (``default_spec``): each package pinned to the version in the current
interpreter when it is installed here, so uv resolves the same wheels; torch pinned to
a CPU build (a ``torch-*+cpu`` wheel in a find-links folder, else the installed build if
it is a CPU one, else uv's ``--torch-backend cpu``): a plain torch requirement pulls
gigabytes of CUDA libraries. ``$BATOS_TRAIN_TORCH`` replaces the torch requirement (a
GPU machine sets e.g. ``torch==2.14.1``). pip's find-links, index URLs and constraint
files are the spec's sources (``envs.sources.pip_sources``, with pip's index
semantics). batos itself enters the env as a ``.pth`` file naming the source root
(the spec's ``paths``), so the child imports the same ``weaver`` code.

Where: the CLI uses ``<batos home>/train-envs``; ``$BATOS_TRAIN_ENVS`` overrides it
(the tests use ``~/.cache/batos/train-envs`` so CI builds the env once).

Boundary: imports ``envs`` only; builds, never imports the ML stack. Blocks in the
caller's thread (minutes the first time).
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envs import ENV_RECORD, BuildWatch, EnvError, EnvSpec, build_env
from envs.sources import local_wheel_version, pip_sources

from .narrative import GrandNarrativeError

__all__ = [
    "CHILD_ENV", "MARKER", "PACKAGES", "SOURCE_ROOT", "TrainEnv", "TrainEnvError",
    "TrainingFailed", "build", "default_root", "default_spec",
]

#: the ML stack, then what ``weaver`` itself imports (runs import it from the source tree)
PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate",
            "pydantic", "httpx")
#: the file whose presence says an env under the root is complete (``envs``' record)
MARKER = ENV_RECORD
SOURCE_ROOT = Path(__file__).resolve().parent.parent
#: the variables of every run in the env: offline, quiet, unbuffered
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "DISABLE_TQDM": "1"}
_TAIL_LINES = 15


class TrainEnvError(GrandNarrativeError):
    """The training environment could not be built (uv failed; the message has its output)."""


class TrainingFailed(GrandNarrativeError):
    """A run in the training environment failed; the message carries the child's error."""


@dataclass(frozen=True)
class TrainEnv:
    """A built training env: its folder (``<root>/<spec id>``), its python and its spec."""

    path: Path
    python: Path
    spec: EnvSpec
    built: bool  # False when an existing env was reused


def default_root(home: str | os.PathLike[str] | None = None) -> Path:
    """``$BATOS_TRAIN_ENVS``, else ``<home>/train-envs``, else ``~/.cache/batos/train-envs``."""
    env = os.environ.get("BATOS_TRAIN_ENVS")
    if env:
        return Path(env).expanduser()
    if home is not None:
        return Path(home) / "train-envs"
    return Path.home() / ".cache" / "batos" / "train-envs"


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch(find_links: list[str]) -> tuple[str, str | None]:
    """The torch requirement and uv's torch backend (module docstring)."""
    override = os.environ.get("BATOS_TRAIN_TORCH")
    if override:
        return override, None
    cpu = local_wheel_version(find_links, "torch", "cpu")
    if cpu:
        return f"torch=={cpu}", None
    version = _installed("torch")
    if version and ("+" not in version or version.endswith("+cpu")):
        return f"torch=={version}", None
    return (f"torch=={version.split('+')[0]}" if version else "torch"), "cpu"


def default_spec(python: str | None = None) -> EnvSpec:
    """The spec of the module docstring, from this interpreter and pip's settings."""
    sources = pip_sources()
    torch, backend = _torch(sources["find_links"])
    requirements = [torch]
    for name in PACKAGES[1:]:
        version = _installed(name)
        requirements.append(f"{name}=={version}" if version else name)
    try:
        return EnvSpec(python=python or sys.executable, requirements=requirements,
                       torch_backend=backend, paths=[str(SOURCE_ROOT)], **sources)
    except EnvError as exc:
        raise TrainEnvError(f"the training env's spec is not valid: {exc}") from exc


def build(root: str | os.PathLike[str], spec: EnvSpec | None = None, *,
          log: Callable[[str], None] | None = None, timeout: float = 1800) -> TrainEnv:
    """The env for ``spec`` (default: ``default_spec()``) under ``root``: reused when
    complete, else built; ``log`` hears once that a build began."""
    spec = spec or default_spec()
    root = Path(root)
    told: list[int] = []

    def started(pid: int) -> None:
        if log and not told:
            told.append(pid)
            log(f"building the training env {root / spec.id} (uv; first time only)")

    try:
        env = build_env(spec, root, cache_dir=root / "uv-cache", timeout=timeout,
                        watch=BuildWatch(started=started), compile_bytecode=False)
    except EnvError as exc:
        tail = "\n".join(getattr(exc, "stderr_tail", "").splitlines()[-_TAIL_LINES:])
        raise TrainEnvError(f"the training env could not be built: {exc}"
                            + (f"\n{tail}" if tail else "")) from exc
    return TrainEnv(env.path, env.python, spec, built=not env.reused)
