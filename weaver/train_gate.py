"""The training env's entry in a fork-server's table: what ``python -m weaver.train_env`` does.

A process locked against exec (a confined incarnation: ``envs.confine``) builds and
runs in the training env through its fork-server (``envs.spawner``), whose table holds
``weaver.train_env.spawner_command(root)``: ``python -m weaver.train_env build`` or
``run DIGEST LOG MODULE ARGS...``, which ``main`` here serves, the table's variables
telling it the root (``BATOS_TRAIN_ENVS``), the base model (``BATOS_TRAIN_BASE``) and
the work folder (``BATOS_TRAIN_WORK``):

* ``build``: the env for the default spec under the table's root; its progress (``log``
  events) and result (``done``: path, python, spec, built) as JSON lines on stdout;
* ``run``: checks DIGEST names a complete env under that root and MODULE is
  ``weaver.training`` or ``weaver.evaluate``, with (when the table names one) ``--base``
  exactly the table's base model; ARGS are the module's own options only
  (``RUN_OPTIONS``: exact names, no abbreviation, no ``--opt=value``); every path among
  them (``--data``, ``--out``, ``--adapter``, ``--against``) and LOG
  (``train.log``/``evaluate.log``, or ``-``) must lie under the work folder's
  ``inquiry`` folder (``adapters`` too for ``--against``); a table without a work folder
  runs nothing. Then it points stderr at LOG, locks itself with
  ``envs.confine.lock(children=True)`` and execs the env's python, which the lock holds
  too. A run that cannot lock itself (pyseccomp missing where the fork-server's
  interpreter runs: it is the confined incarnation's own, so this means a broken env)
  fails closed rather than run unlocked.

A request can choose neither the root, nor the interpreter, nor another module, nor
another base model. A refusal is an ``error`` event and exit status 2.

Boundary: runs only in the fork-server's child; imports ``envs`` and the training env's
build, never the ML stack (the exec'd child does).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .narrative import GrandNarrativeError
from .train_build import CHILD_ENV, MARKER, SOURCE_ROOT, build

__all__ = ["RUN_FILE_SIZE", "RUN_LOGS", "RUN_OPTIONS", "TRAINING_MODULES", "main"]

TRAINING_MODULES = ("weaver.training", "weaver.evaluate")
ROOT_VARIABLE = "BATOS_TRAIN_ENVS"
BASE_VARIABLE = "BATOS_TRAIN_BASE"
WORK_VARIABLE = "BATOS_TRAIN_WORK"
#: what a run through the fork-server may pass: option -> None (a flag) or the work
#: folders its path value must lie in (() for a value that is not a path)
RUN_OPTIONS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "weaver.training": {"--data": ("inquiry",), "--base": (), "--out": ("inquiry",),
                        "--facet": (), "--qlora": None, "--steps": (), "--rank": (),
                        "--lr": (), "--max-length": (), "--batch-size": (), "--seed": ()},
    "weaver.evaluate": {"--data": ("inquiry",), "--base": (), "--adapter": ("inquiry",),
                        "--against": ("inquiry", "adapters"), "--max-length": (),
                        "--max-new-tokens": (), "--limit": ()},
}
RUN_LOGS = ("train.log", "evaluate.log")
RUN_FILE_SIZE = 8 << 30  # RLIMIT_FSIZE of a locked training run (adapters, checkpoints)
_DIGEST = re.compile(r"^[0-9a-f]{16}$")


def _inside(path: str, folders: tuple[str, ...], work: str) -> bool:
    real = os.path.realpath(path)
    for name in folders:
        folder = os.path.join(work, name)
        if real != folder and os.path.commonpath([real, folder]) == folder:
            return True
    return False


def _run_problem(module: str, args: list[str], log_path: str) -> str | None:
    """Why a run's ARGS or LOG are refused (module docstring), or None."""
    work = os.environ.get(WORK_VARIABLE)
    if not work:
        return (f"this fork-server's table names no work folder ({WORK_VARIABLE}): "
                "it runs no training")
    options = RUN_OPTIONS[module]
    i = 0
    while i < len(args):
        name = args[i]
        if name not in options:
            return (f"{name!r} is not an option a run of {module} may pass "
                    f"(only: {', '.join(options)}, each as its own argument)")
        folders = options[name]
        if folders is None:
            i += 1
            continue
        if i + 1 >= len(args):
            return f"{name} has no value"
        value = args[i + 1]
        if folders and not (os.path.isabs(value) and _inside(value, folders, work)):
            where = " or ".join(os.path.join(work, f) for f in folders)
            return f"{name} {value!r} is not under {where}"
        i += 2
    if log_path != "-":
        if not os.path.isabs(log_path) or os.path.basename(log_path) not in RUN_LOGS:
            return f"the log {log_path!r} is not an absolute path to {' or '.join(RUN_LOGS)}"
        if not _inside(log_path, ("inquiry",), work):
            return f"the log {log_path!r} is not under {os.path.join(work, 'inquiry')}"
    return None


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _refuse(message: str, status: int = 2) -> int:
    _emit({"event": "error", "type": "TrainEnvError", "message": message})
    return status


def _build(root: str) -> int:
    try:
        env = build(Path(root), log=lambda m: _emit({"event": "log", "message": m}))
    except GrandNarrativeError as exc:
        _emit({"event": "error", "type": type(exc).__name__, "message": str(exc)})
        return 1
    _emit({"event": "done", "path": str(env.path), "python": str(env.python),
           "spec": env.spec.to_dict(), "built": env.built})
    return 0


def _run(root: str, digest: str, log_path: str, module: str, args: list[str]) -> int:
    path = Path(root) / digest
    python = path / "bin" / "python"
    if not _DIGEST.match(digest) or not (path / MARKER).is_file() or not python.exists():
        return _refuse(f"{digest!r} is not a complete training env under {root}")
    if module not in TRAINING_MODULES:
        return _refuse(f"{module!r} is not one of {', '.join(TRAINING_MODULES)}")
    base = os.environ.get(BASE_VARIABLE)
    given = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--base"]
    if base and (len(given) != 1 or str(Path(given[0]).resolve()) != base
                 or any(a.startswith("--base=") for a in args)):
        return _refuse(f"a run loads only the configured base model {base}")
    problem = _run_problem(module, args, log_path)
    if problem is not None:
        return _refuse(problem)
    try:
        log = os.open(os.devnull if log_path == "-" else log_path,
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        return _refuse(f"cannot open the log {log_path}: {exc.strerror or exc}")
    environ = {**os.environ, **CHILD_ENV}
    for name in ("PYTHONPATH", ROOT_VARIABLE, BASE_VARIABLE, WORK_VARIABLE):
        environ.pop(name, None)
    os.chdir(SOURCE_ROOT)
    try:
        from envs.confine import lock

        lock(children=True, file_size=RUN_FILE_SIZE)
    except Exception as exc:  # ImportError, ConfinementUnavailable: fail closed
        return _refuse(f"the training run cannot lock itself, so it does not run: {exc}")
    os.dup2(log, 2)
    os.close(log)
    os.execve(str(python), [str(python), "-m", module, *args], environ)


def main(argv: list[str]) -> int:
    """``build`` or ``run DIGEST LOG MODULE ARGS...`` (module docstring); the exit status."""
    root = os.environ.get(ROOT_VARIABLE)
    if not root:
        return _refuse(f"{ROOT_VARIABLE} is not set (the fork-server's table sets it)")
    if argv[:1] == ["build"] and len(argv) == 1:
        return _build(root)
    if argv[:1] == ["run"] and len(argv) >= 4:
        return _run(root, argv[1], argv[2], argv[3], argv[4:])
    return _refuse("usage: python -m weaver.train_env build | run DIGEST LOG MODULE ARGS...")
