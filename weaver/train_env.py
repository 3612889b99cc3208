"""The training environment: a uv env with the ML stack, and runs of modules inside it.

The heavy stack (torch, transformers, peft, trl, bitsandbytes, datasets, accelerate)
never enters the supervisor's or the incarnation's environment: ``ensure_env(root)``
finds or builds the env for ``default_spec()`` under ``root`` (an ``envs`` env,
``<root>/<spec id>``; ``weaver.train_build`` says what it holds and how it is built),
and ``run_module`` starts ``python -m weaver.training`` (or ``weaver.evaluate``) in it
as a child process in its own session, reading its JSON-lines events as they come
(``weaver.train_run``).

Where: the CLI uses ``<batos home>/train-envs``; ``$BATOS_TRAIN_ENVS`` overrides it
(``default_root``; the tests use ``~/.cache/batos/train-envs`` so CI builds the env
once).

A process locked against exec (a confined incarnation: ``envs.confine``) can do
neither itself. ``route_through(spawner)`` then sends both through its fork-server
(``envs.spawner``), whose table holds one more entry, ``spawner_command(root)``: this
module run as ``python -m weaver.train_env build`` or ``run DIGEST LOG MODULE
ARGS...`` (``weaver.train_gate``: what a request may ask, checked in the fork-server's
child, which locks itself before it execs the env's python). A request can choose
neither the root, nor the interpreter, nor another module, nor (with the inquiry
table's ``base_model`` in the entry) another base model; its paths lie under the
entry's work folder (``spawner_command(..., work=<inquiry home>)``), and an entry
without one runs nothing. ``FacetTrainer``'s ``cpu_seconds`` do not see such children
(they are the fork-server's, not ours).

Boundary: imports ``envs`` and the training env's own modules; builds and runs
processes, never imports the ML stack itself. Runs in the caller's thread;
``ensure_env`` and ``run_module`` block until the build or the child is done.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envs import EnvError, EnvSpec

from .train_build import (
    CHILD_ENV,
    MARKER,
    PACKAGES,
    SOURCE_ROOT,
    TrainEnv,
    TrainEnvError,
    TrainingFailed,
    build,
    default_root,
    default_spec,
)
from .train_gate import BASE_VARIABLE, ROOT_VARIABLE, WORK_VARIABLE, main
from .train_run import follow, start_local

if TYPE_CHECKING:
    from envs.spawner import Command

__all__ = [
    "CHILD_ENV", "MARKER", "PACKAGES", "TrainEnv", "TrainEnvError", "TrainingFailed",
    "default_root", "default_spec", "ensure_env", "route_through", "run_module",
    "spawner_command",
]

_SELF = "weaver.train_env"
_spawner: Any = None  # set by route_through: this process cannot exec


def route_through(spawner: Any) -> None:
    """Start every later child of this process through ``spawner`` (an ``envs.spawner.Spawner``
    whose table holds ``spawner_command(root)``); None: start them here again."""
    global _spawner
    _spawner = spawner


def spawner_command(root: str | os.PathLike[str],
                    base: str | os.PathLike[str] | None = None,
                    work: str | os.PathLike[str] | None = None) -> Command:
    """The fork-server table entry for ``build``/``run`` under ``root`` (module docstring);
    with ``base``, a run's ``--base`` must be that model folder (no other model is loaded);
    ``work``: the inquiry home whose ``inquiry``/``adapters`` folders a run's paths and log
    must lie in (None: runs are refused, builds only)."""
    from envs.spawner import Command  # the fork-server's client: loaded only when asked

    env = {**os.environ, ROOT_VARIABLE: str(Path(root).resolve())}
    env.pop(WORK_VARIABLE, None)
    if base is not None:
        env[BASE_VARIABLE] = str(Path(base).resolve())
    if work is not None:
        env[WORK_VARIABLE] = os.path.realpath(work)
    return Command("train-env", sys.executable, (_SELF,), env=env, cwd=str(SOURCE_ROOT),
                   max_args=64)


def _through_spawner(argv: list[str]) -> Any:
    try:
        return _spawner.spawn([sys.executable, "-m", _SELF, *argv])
    except EnvError as exc:
        raise TrainEnvError(f"the fork-server cannot start {argv[0]!r}: {exc}") from exc


def _spawner_root() -> str:
    command = next((c for c in _spawner.table if _SELF in c.modules), None)
    if command is None or not (command.env or {}).get(ROOT_VARIABLE):
        raise TrainEnvError("the fork-server's table has no training-env entry "
                            "(weaver.train_env.spawner_command)")
    return command.env[ROOT_VARIABLE]


def _ensure_through_spawner(root: str | os.PathLike[str] | None, spec: EnvSpec | None,
                            log: Callable[[str], None] | None, timeout: float) -> TrainEnv:
    table_root = Path(_spawner_root())
    if spec is not None or (root is not None and Path(root).resolve() != table_root):
        raise TrainEnvError(f"this process builds only the default training env under "
                            f"{table_root} (its fork-server's table), not {root} / a given spec")

    def event(e: dict[str, Any]) -> None:
        if e.get("event") == "log" and log:
            log(str(e.get("message")))

    done = follow(lambda: _through_spawner(["build"]), "the training env build", event,
                  None, timeout)
    return TrainEnv(Path(done["path"]), Path(done["python"]), EnvSpec.from_dict(done["spec"]),
                    built=bool(done["built"]))


def ensure_env(root: str | os.PathLike[str] | None = None, spec: EnvSpec | None = None, *,
               log: Callable[[str], None] | None = None, timeout: float = 1800) -> TrainEnv:
    """The env for ``spec`` under ``root``: reused when complete, else built (minutes the first time)."""
    if _spawner is not None:
        return _ensure_through_spawner(root, spec, log, timeout)
    return build(root if root is not None else default_root(), spec, log=log, timeout=timeout)


def run_module(env: TrainEnv, module: str, args: list[str], *,
               on_event: Callable[[dict[str, Any]], None] | None = None,
               log_path: str | os.PathLike[str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m module args`` in ``env``; return the ``done`` event's data.

    Each JSON line the child prints goes to ``on_event``; its stderr goes to ``log_path``
    (or is discarded). An ``error`` event, a non-zero exit or the timeout raise
    ``TrainingFailed`` with the child's message and the log's tail. The child runs in its
    own session; on timeout or KeyboardInterrupt its process group is terminated, then killed.
    Through the fork-server when ``route_through`` named one.
    """
    if _spawner is not None:
        log_arg = str(Path(log_path).resolve()) if log_path else "-"
        return follow(lambda: _through_spawner(["run", env.path.name, log_arg, module, *args]),
                      module, on_event, log_path, timeout)
    return follow(lambda: start_local(env, module, args, log_path), module, on_event,
                  log_path, timeout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
