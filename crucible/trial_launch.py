"""What a trial worker is started as: its argv, its environment, its sandbox, its image.

``ImageRef`` says where the worker finds the image. ``worker_launch`` turns a
runner's settings into a ``WorkerLaunch``: the argv (``python -m
crucible.trial_worker CONFIG``, wrapped in the OS sandbox, ``envs.sandbox``,
when the worker starts here, one is available and ``confine`` is true), the
worker's whole environment (``worker_env``: batos importable, only what the
live path reads, never the caller's secrets) and which sandbox it runs in, or
why none. ``worker_command`` is the fork-server's table entry
(``envs.spawner.Command``) for workers a confined incarnation starts: the
fork-server's table, not the request, fixes their environment and lock
(``NETWORK_VARIABLE``, ``REQUIRED_VARIABLE``).

This module describes; it starts nothing (``trial_process`` does) and runs
no image code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.confine import ARENA_MAX
from envs.errors import EnvError

__all__ = [
    "NETWORK_VARIABLE", "REQUIRED_VARIABLE", "WORKER_MODULE", "ImageRef", "WorkerLaunch",
    "worker_command", "worker_env", "worker_launch",
]

#: the batos checkout (or install) root: the workers' working directory and import path
ROOT = Path(__file__).resolve().parents[1]
WORKER_MODULE = "crucible.trial_worker"
#: the live lock's network setting, for workers the fork-server starts ("1"/"0")
NETWORK_VARIABLE = "BATOS_CONFINE_NETWORK"
#: "1" in the fork-server's table: workers lock themselves whatever their argv says (a
#: request to the fork-server cannot ask for an unlocked worker)
REQUIRED_VARIABLE = "BATOS_CONFINE_REQUIRED"

_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "BATOS_SANDBOX",
             "BATOS_UNSAFE_TEST_EXPOSE_OS", "BATOS_MEMORY_MB")
_ENV_PREFIXES = ("BATOS_BUDGET_",)


def worker_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The trial worker's whole environment, from ``base`` (default ours): batos importable,
    and only what the live path reads (budgets, the sandbox marker, the test-only switch);
    never the caller's secrets (API keys, tokens)."""
    base = dict(os.environ if base is None else base)
    env = {k: v for k, v in base.items() if k in _ENV_KEPT or k.startswith(_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    # as in the live process (envs.confine): arenas must not eat the memory budget
    env["MALLOC_ARENA_MAX"] = str(ARENA_MAX)
    return env


def worker_command(*, network: bool = True) -> Any:
    """The fork-server table entry (``envs.spawner.Command``) that runs trial workers;
    ``network``: what the live process lock allows, which the workers' lock copies."""
    from envs.spawner import Command

    env = {**worker_env(), NETWORK_VARIABLE: "1" if network else "0", REQUIRED_VARIABLE: "1"}
    return Command("crucible-trial", sys.executable, (WORKER_MODULE,), env=env,
                   cwd=str(ROOT), max_args=1)


@dataclass(frozen=True)
class ImageRef:
    """Where the trial worker finds the image: a FileStorage ``path`` or a ``zeo`` address.

    ``allowed_packages`` are distribution names whose top-level modules methods
    may import: the worker applies the same allowlist as the incarnation.
    """

    path: str | None = None
    zeo: str | None = None
    allowed_packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.path is None) == (self.zeo is None):
            raise ValueError("an ImageRef names exactly one of path or zeo")
        object.__setattr__(self, "allowed_packages", tuple(self.allowed_packages))


@dataclass(frozen=True)
class WorkerLaunch:
    """How a runner starts its workers (``worker_launch``)."""

    argv: list[str]
    env: dict[str, str]
    #: the OS sandbox the workers run in, or why they run outside one
    sandbox: str
    #: the sandbox's exit status -> the worker's (bwrap says 128+N for a command killed by N)
    exit_status: Callable[[int | None], int | None] | None = None


def worker_launch(image: ImageRef, *, spawner: Any = None, confine: bool = True,
                  network: bool | None = None) -> WorkerLaunch:
    """The argv, environment and sandbox of the workers of a runner (see ``TrialRunner``)."""
    parent = spawner.server_pid if spawner is not None else os.getpid()
    if spawner is None and network is None:
        network = bool(image.zeo and "/" not in image.zeo)
    config = {"path": str(image.path) if image.path else None, "zeo": image.zeo,
              "allowed_packages": list(image.allowed_packages), "parent": parent,
              "confine": confine, "network": network}
    env = worker_env()
    argv = [sys.executable, "-m", WORKER_MODULE, json.dumps(config)]
    if spawner is not None:
        return WorkerLaunch(argv, env, "the incarnation's (workers start through its fork-server)")
    if not confine:
        return WorkerLaunch(argv, env, "none: unconfined")
    # inside bwrap the worker's parent is the sandbox's init, not us: bwrap's
    # --die-with-parent ties it to this process instead of its ppid check
    wrapped = [sys.executable, "-m", WORKER_MODULE, json.dumps({**config, "parent": None})]
    wrapped, reason = _sandboxed(wrapped, image, env, network=bool(network))
    if reason is not None:
        return WorkerLaunch(argv, env, f"none: {reason}")
    from envs.sandbox import exit_status

    return WorkerLaunch(wrapped, env, "bwrap", exit_status)


def _sandboxed(argv: list[str], image: ImageRef, env: dict[str, str], *,
               network: bool) -> tuple[list[str], str | None]:
    """``argv`` in the OS sandbox (``envs.sandbox``) and None, or ``argv`` and why not."""
    try:
        from envs import sandbox
    except ImportError:
        return argv, "no OS sandbox (envs.sandbox is not there)"
    reason = sandbox.available()
    if reason is not None:
        return argv, reason
    read_only = [str(ROOT)]
    read_write: list[str] = []
    if image.path:
        read_only += [p for p in (image.path, f"{image.path}.index") if os.path.exists(p)]
    elif image.zeo and "/" in image.zeo:
        # A Unix socket: connecting needs it visible, not writable (connect() works on a
        # read-only mount). Its folder, not the file: a bind pins the file's inode, so a
        # socket ZEO recreated (a restart) would be unreachable through a file grant.
        read_only.append(os.path.dirname(os.path.abspath(image.zeo)))
    try:
        return sandbox.wrap(argv, python=sys.executable, read_only=read_only,
                            read_write=read_write, network=network, env=env), None
    except EnvError as exc:
        return argv, f"the OS sandbox refused the worker's profile: {exc}"
