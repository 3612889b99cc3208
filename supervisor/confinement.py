"""What confines an incarnation, decided by the supervisor: grants, environment, status.

``spawn_incarnation`` (``supervisor.incarnations``) asks this module, per incarnation,
for its environment (``incarnation_environment``: what it reads, never the
supervisor's whole environment, so a secret the supervisor holds stays out), for the
paths its sandbox shows it (``grants``: the sockets folder ``<run>/inc``, the image
file and index read-only, its env and the batos source read-only, the mind's files
and the inquiry loop's folders when configured, the operator's extra grants) and
whether it gets the network (``needs_network``: only for a TCP storage or backend or
a configured mind or inquiry server). ``confinement_problem`` is why ``batos up``
refuses to start (``[sandbox] mode = "required"`` where bubblewrap or the process
lock cannot work); ``confinement`` is what ``status`` shows. ``precompile`` writes the
bytecode a read-only sandbox cannot.

Runs in the supervisor's loop (everything but ``precompile``, which blocks: the env
worker thread runs it). Imports nothing of ``uvm``; ``envs.confine`` only to ask
whether the process lock can work here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from envs import BuildWatch, sandbox

from . import process
from .config import Config, Home

__all__ = [
    "absolute",
    "confinement",
    "confinement_problem",
    "grants",
    "incarnation_environment",
    "needs_network",
    "precompile",
    "warn_if_unconfined",
]

log = logging.getLogger("batos.supervisor.confinement")

#: variables an incarnation reads (and the mind's API key variable, ``api_key_env``)
_PASSED = ("LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "PYTHONPATH",
           "BATOS_UNSAFE_TEST_EXPOSE_OS")
#: BATOS_BUDGET_*: the message budget (uvm.budget), under the ``[budget]`` table's values
_PASSED_PREFIXES = ("BATOS_MIND_", "BATOS_TRAIN_", "BATOS_BUDGET_")
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
        "memory_mb": table.memory_budget(), "cpu_seconds": table.cpu_seconds,
    }


def warn_if_unconfined(config: Config) -> None:
    if config.sandbox.mode == "off":
        log.warning(_UNCONFINED_WARNING)


def absolute(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def incarnation_environment(config: Config, *, confined: bool, mind: dict[str, Any] | None = None,
                            environ: dict[str, str] | None = None) -> dict[str, str]:
    """The incarnation's whole environment: what it reads, from the supervisor's, plus
    its configuration tables; the supervisor's other variables (secrets) stay out.
    File-valued mind variables are made absolute (a sandbox runs in ``/``)."""
    source = dict(os.environ if environ is None else environ)
    names = set(_PASSED) | set(config.sandbox.pass_env)
    key_env = str((mind or {}).get("api_key_env") or "")
    if key_env:
        names.add(key_env)
    if not confined:
        names |= set(_UNCONFINED_BASICS)
    env = {k: v for k, v in source.items()
           if k in names or k.startswith(_PASSED_PREFIXES)}
    for name in _MIND_FILES:
        if env.get(name, "").strip():
            env[name] = absolute(env[name].strip())
    if confined:  # glibc's per-thread arenas would eat the memory budget (envs.confine)
        from envs.confine import ARENA_MAX

        env["MALLOC_ARENA_MAX"] = str(ARENA_MAX)
    return env


def needs_network(zeo: str, home: Home, mind: dict[str, Any], inquiry: dict[str, Any],
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


def grants(*, home: Home, config: Config, code: list[str | None], mind: dict[str, Any],
           inquiry: dict[str, Any], env_vars: dict[str, str]) -> tuple[list[str], list[str]]:
    """(read-only, read-write) paths an incarnation needs inside its sandbox; ``code``:
    the folders of its code beyond the interpreter (the env, the batos source tree)."""
    ro = [str(home.sockets), *[str(p) for p in (home.image, Path(f"{home.image}.index"))
                               if p.exists()]]
    rw: list[str] = []
    ro += [str(p) for p in code if p and Path(p).exists()]
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
        ro.append(absolute(extra))
    for extra in config.sandbox.read_write:
        rw.append(absolute(extra))
    return ro, rw


def precompile(python: str, folders: list[str | None], watch: BuildWatch | None = None,
               timeout: float = 900.0) -> None:
    """Write the bytecode a confined incarnation cannot write itself.

    Inside the sandbox the env and the source tree are read-only, so a module without a
    current ``__pycache__`` entry is compiled again at EVERY start (uv installs without
    bytecode: seconds per start for a fresh env). ``compileall`` once, here, off the
    loop; a no-op walk (well under a second) when everything is current. Failures (a
    file that does not compile) are logged, never fatal: that module then compiles at
    import, as before. Blocking: run it off the loop."""
    targets = [str(p) for p in folders if p and Path(p).is_dir()]
    if not targets:
        return
    watch = watch or BuildWatch()
    argv = [python, "-m", "compileall", "-q", *dict.fromkeys(targets)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    if watch.started:
        watch.started(proc.pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                code = proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if watch.cancel.is_set() or time.monotonic() > deadline:
                    process.kill(proc, "bytecode compilation")
                    proc.wait()
                    log.warning("bytecode compilation stopped (cancelled or past %.0fs)", timeout)
                    return
    finally:
        if watch.ended:
            watch.ended(proc.pid)
    if code != 0:
        log.warning("some modules did not compile to bytecode (compileall exit %s); they "
                    "compile at each confined start", code, extra={"python": python})
