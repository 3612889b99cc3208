"""The training environment: a uv venv with the ML stack, and runs of modules inside it.

The heavy stack (torch, transformers, peft, trl, bitsandbytes, datasets, accelerate)
never enters the supervisor's or the incarnation's environment: ``ensure_env(root)``
builds ``<root>/<spec hash>/venv`` once and reuses it while the spec is the same, and
``run_module`` starts ``python -m weaver.training`` (or ``weaver.evaluate``) in it as a
child process in its own session, reading its JSON-lines events as they come.

The spec (``default_spec``): each package pinned to the version in the current
interpreter when it is installed here, so uv resolves the same wheels; torch pinned to
a CPU build (a ``torch-*+cpu`` wheel in a find-links folder, else the installed build if
it is a CPU one, else uv's ``--torch-backend cpu``): a plain torch requirement pulls
gigabytes of CUDA libraries. ``$BATOS_TRAIN_TORCH`` replaces the torch requirement (a
GPU machine sets e.g. ``torch==2.14.1``). uv does not read pip's configuration, so
pip's find-links, index URLs and constraint files (``pip config list``, which includes
``PIP_*`` variables) are passed to uv explicitly, with pip's index semantics
(``--index-strategy unsafe-best-match``). batos itself enters the venv as a ``.pth``
file naming the source root, so the child imports the same ``weaver`` code.

A build happens under a lock file, in place, and a marker (``batos-train-env.json``)
written last says it is complete; a folder without the marker is rebuilt. The uv cache
is ``<root>/uv-cache`` (same filesystem: hard links, so a rebuild takes seconds).

Where: the CLI uses ``<batos home>/train-envs``; ``$BATOS_TRAIN_ENVS`` overrides it
(the tests use ``~/.cache/batos/train-envs`` so CI builds the env once).

A process locked against exec (a confined incarnation: ``envs.confine``) cannot do
either itself. ``route_through(spawner)`` then sends both through its fork-server
(``envs.spawner``), whose table holds one more entry, ``spawner_command(root)``: this
module run as ``python -m weaver.train_env build`` (the env for the default spec under
the table's root, its progress and result as JSON lines) or ``run DIGEST LOG MODULE
ARGS...`` (checks DIGEST names a complete env under that root and MODULE is
``weaver.training`` or ``weaver.evaluate``, points stderr at LOG, locks itself with
``envs.confine.lock(children=True)``, then execs the env's python, which the lock
holds too). A request can choose neither the root, nor the interpreter, nor another
module, nor (with the inquiry table's ``base_model`` in the entry) another base model.
Its ARGS are the module's own options only (``RUN_OPTIONS``: exact names, no
abbreviation, no ``--opt=value``); every path among them (``--data``, ``--out``,
``--adapter``, ``--against``) and LOG (``train.log``/``evaluate.log``, or ``-``) must lie
under the entry's work folder (``spawner_command(..., work=<inquiry home>)``: its
``inquiry`` folder, and ``adapters`` for ``--against``); an entry without one runs
nothing. A run that cannot lock itself (pyseccomp missing where the fork-server's
interpreter runs: it is the confined incarnation's own, so this means a broken env)
fails closed rather than run unlocked. ``FacetTrainer``'s ``cpu_seconds`` do not see
such children (they are the fork-server's, not ours).

Boundary: stdlib only (and ``envs.spawner`` for the table entry); builds and runs
processes, never imports the ML stack itself. Runs in the caller's thread;
``run_module`` blocks until the child exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .narrative import GrandNarrativeError

__all__ = [
    "PACKAGES", "TrainEnv", "TrainEnvError", "TrainEnvSpec", "TrainingFailed", "default_root",
    "default_spec", "ensure_env", "route_through", "run_module", "spawner_command",
]

PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate",
            "pydantic")
MARKER = "batos-train-env.json"
SOURCE_ROOT = Path(__file__).resolve().parent.parent
TRAINING_MODULES = ("weaver.training", "weaver.evaluate")
_SELF = "weaver.train_env"
_ROOT_VARIABLE = "BATOS_TRAIN_ENVS"
_BASE_VARIABLE = "BATOS_TRAIN_BASE"
_WORK_VARIABLE = "BATOS_TRAIN_WORK"
#: what a run through the fork-server may pass: option -> None (a flag) or the work
#: folders its path value must lie in ("" for a value that is not a path)
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
_spawner: Any = None  # set by route_through: this process cannot exec
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "DISABLE_TQDM": "1"}


class TrainEnvError(GrandNarrativeError):
    """The training environment could not be built (uv failed; the message has its output)."""


class TrainingFailed(GrandNarrativeError):
    """A run in the training environment failed; the message carries the child's error."""


@dataclass(frozen=True)
class TrainEnvSpec:
    python: str
    requirements: list[str]
    find_links: list[str] = field(default_factory=list)
    index_urls: list[str] = field(default_factory=list)
    extra_index_urls: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    torch_backend: str | None = None
    source: str = str(SOURCE_ROOT)

    def digest(self) -> str:
        data = asdict(self)
        # constraint files count by content: editing one must give a new env
        data["constraints"] = [[p, _file_digest(p)] for p in self.constraints]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainEnv:
    path: Path
    python: Path
    spec: TrainEnvSpec
    built: bool  # False when an existing env was reused


def default_root(home: str | os.PathLike[str] | None = None) -> Path:
    env = os.environ.get("BATOS_TRAIN_ENVS")
    if env:
        return Path(env).expanduser()
    if home is not None:
        return Path(home) / "train-envs"
    return Path.home() / ".cache" / "batos" / "train-envs"


def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def pip_settings(python: str = sys.executable) -> dict[str, list[str]]:
    """find-links, index-url, extra-index-url and constraint from ``pip config list``."""
    out = {"find-links": [], "index-url": [], "extra-index-url": [], "constraint": []}
    try:
        text = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                              text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return out
    for line in text.splitlines():
        m = re.match(r"^[^.]*\.([a-z-]+)='(.*)'$", line.strip())
        if m and m.group(1) in out:
            for value in m.group(2).split():
                if value not in out[m.group(1)]:
                    out[m.group(1)].append(value)
    return out


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_torch_wheel(find_links: list[str]) -> str | None:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    best: tuple[tuple[int, ...], str] | None = None
    for link in find_links:
        folder = Path(link[7:] if link.startswith("file://") else link)
        if not folder.is_dir():
            continue
        for wheel in folder.glob(f"torch-*+cpu-{tag}-*.whl"):
            version = wheel.name.split("-")[1]
            key = tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0]))
            if best is None or key > best[0]:
                best = (key, version)
    return best[1] if best else None


def default_spec(python: str | None = None) -> TrainEnvSpec:
    """The spec of the module docstring, from this interpreter and pip's settings."""
    pip = pip_settings()
    requirements, backend = [], None
    for name in PACKAGES:
        version = _installed(name)
        if name == "torch":
            override = os.environ.get("BATOS_TRAIN_TORCH")
            cpu = _cpu_torch_wheel(pip["find-links"])
            if override:
                requirements.append(override)
            elif cpu:
                requirements.append(f"torch=={cpu}")
            elif version and "+" not in version or (version or "").endswith("+cpu"):
                requirements.append(f"torch=={version}")
            else:
                requirements.append(f"torch=={version.split('+')[0]}" if version else "torch")
                backend = "cpu"
            continue
        requirements.append(f"{name}=={version}" if version else name)
    return TrainEnvSpec(
        python=python or sys.executable, requirements=requirements,
        find_links=pip["find-links"], index_urls=pip["index-url"][:1],
        extra_index_urls=pip["extra-index-url"], constraints=pip["constraint"],
        torch_backend=backend)


def _uv() -> str:
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError) as exc:
        raise TrainEnvError("uv is not installed here: pip install uv (a batos dependency)") from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def route_through(spawner: Any) -> None:
    """Start every later child of this process through ``spawner`` (an ``envs.spawner.Spawner``
    whose table holds ``spawner_command(root)``); None: start them here again."""
    global _spawner
    _spawner = spawner


def spawner_command(root: str | os.PathLike[str],
                    base: str | os.PathLike[str] | None = None,
                    work: str | os.PathLike[str] | None = None) -> Any:
    """The fork-server table entry for ``build``/``run`` under ``root`` (module docstring);
    with ``base``, a run's ``--base`` must be that model folder (no other model is loaded);
    ``work``: the inquiry home whose ``inquiry``/``adapters`` folders a run's paths and log
    must lie in (None: runs are refused, builds only)."""
    from envs.spawner import Command

    env = {**os.environ, _ROOT_VARIABLE: str(Path(root).resolve())}
    env.pop(_WORK_VARIABLE, None)
    if base is not None:
        env[_BASE_VARIABLE] = str(Path(base).resolve())
    if work is not None:
        env[_WORK_VARIABLE] = os.path.realpath(work)
    return Command("train-env", sys.executable, (_SELF,), env=env, cwd=str(SOURCE_ROOT),
                   max_args=64)


def _through_spawner(argv: list[str]) -> Any:
    from envs.errors import EnvError

    try:
        return _spawner.spawn([sys.executable, "-m", _SELF, *argv])
    except EnvError as exc:
        raise TrainEnvError(f"the fork-server cannot start {argv[0]!r}: {exc}") from exc


def _ensure_through_spawner(root: str | os.PathLike[str] | None, spec: TrainEnvSpec | None,
                            log: Callable[[str], None] | None, timeout: float) -> TrainEnv:
    table_root = Path(_spawner_root())
    if spec is not None or (root is not None and Path(root).resolve() != table_root):
        raise TrainEnvError(f"this process builds only the default training env under "
                            f"{table_root} (its fork-server's table), not {root} / a given spec")

    def event(e: dict[str, Any]) -> None:
        if e.get("event") == "log" and log:
            log(str(e.get("message")))

    done = _follow(lambda: _through_spawner(["build"]), "the training env build", event,
                   None, timeout)
    return TrainEnv(Path(done["path"]), Path(done["python"]), TrainEnvSpec(**done["spec"]),
                    built=bool(done["built"]))


def _spawner_root() -> str:
    command = next((c for c in _spawner.table if _SELF in c.modules), None)
    if command is None or not (command.env or {}).get(_ROOT_VARIABLE):
        raise TrainEnvError("the fork-server's table has no training-env entry "
                            "(weaver.train_env.spawner_command)")
    return command.env[_ROOT_VARIABLE]


def ensure_env(root: str | os.PathLike[str] | None = None, spec: TrainEnvSpec | None = None, *,
               log: Callable[[str], None] | None = None, timeout: float = 1800) -> TrainEnv:
    """The env for ``spec`` under ``root``: reused when complete, else built (minutes the first time)."""
    if _spawner is not None:
        return _ensure_through_spawner(root, spec, log, timeout)
    spec = spec or default_spec()
    root = Path(root) if root is not None else default_root()
    path = root / spec.digest()
    python = path / "venv" / "bin" / "python"
    with _locked(root / f"{spec.digest()}.lock"):
        if (path / MARKER).is_file() and python.exists():
            return TrainEnv(path, python, spec, built=False)
        if log:
            log(f"building the training env {path} (uv; first time only)")
        uv, cache = _uv(), root / "uv-cache"
        environ = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_NO_CONFIG": "1"}
        environ.pop("VIRTUAL_ENV", None)
        if path.exists():
            import shutil

            shutil.rmtree(path)
        path.mkdir(parents=True)
        began = time.monotonic()
        _run([uv, "venv", "--python", spec.python, str(path / "venv")], environ, timeout)
        cmd = [uv, "pip", "install", "--python", str(python), "--index-strategy", "unsafe-best-match"]
        for link in spec.find_links:
            cmd += ["--find-links", link]
        for url in spec.index_urls:
            cmd += ["--index-url", url]
        for url in spec.extra_index_urls:
            cmd += ["--extra-index-url", url]
        for c in spec.constraints:
            cmd += ["--constraint", c]
        if spec.torch_backend:
            cmd += ["--torch-backend", spec.torch_backend]
        _run(cmd + list(spec.requirements), environ, timeout)
        site = next((path / "venv" / "lib").glob("python*/site-packages"))
        (site / "batos-source.pth").write_text(spec.source + "\n")
        record = {"spec": asdict(spec), "digest": spec.digest(), "built": time.time(),
                  "seconds": round(time.monotonic() - began, 1)}
        (path / MARKER).write_text(json.dumps(record, indent=1))
        return TrainEnv(path, python, spec, built=True)


def _run(cmd: list[str], environ: dict[str, str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise TrainEnvError(f"{' '.join(cmd[:3])} took over {timeout:.0f}s; retry, or check the "
                            "network/find-links") from exc
    except OSError as exc:
        raise TrainEnvError(f"cannot run {cmd[0]}: {exc.strerror}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise TrainEnvError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}):\n{tail}")


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
        return _follow(lambda: _through_spawner(["run", env.path.name, log_arg, module, *args]),
                       module, on_event, log_path, timeout)

    def start() -> Any:
        environ = {**os.environ, **CHILD_ENV}
        environ.pop("PYTHONPATH", None)
        log = open(log_path, "w") if log_path else open(os.devnull, "w")  # noqa: SIM115
        with log:
            return subprocess.Popen([str(env.python), "-m", module, *args],
                                    stdout=subprocess.PIPE, stderr=log, text=True, env=environ,
                                    start_new_session=True, cwd=str(SOURCE_ROOT))

    return _follow(start, module, on_event, log_path, timeout)


def _follow(start: Callable[[], Any], module: str,
            on_event: Callable[[dict[str, Any]], None] | None,
            log_path: str | os.PathLike[str] | None, timeout: float) -> dict[str, Any]:
    """Start a child with ``start`` and follow its JSON-lines events (``run_module``)."""
    deadline = time.monotonic() + timeout
    done: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    proc = start()
    stdout = proc.stdout
    if not isinstance(proc, subprocess.Popen):  # a fork-server's child: binary pipes
        proc.stdin.close()
        proc.stderr.close()
        stdout = io.TextIOWrapper(io.BufferedReader(proc.stdout), encoding="utf-8",
                                  errors="replace")
    try:
        assert stdout is not None
        for line in stdout:
            if time.monotonic() > deadline:
                raise TrainingFailed(f"{module} ran past {timeout:.0f}s")
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "done":
                done = event
            elif event.get("event") == "error":
                error = event
            if on_event:
                on_event(event)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (KeyboardInterrupt, TrainingFailed, subprocess.TimeoutExpired) as exc:
        _stop(proc)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TrainingFailed(f"{module} ran past {timeout:.0f}s") from exc
        raise
    finally:
        if stdout:
            stdout.close()
    tail = _tail(log_path)
    if error is not None:
        raise TrainingFailed(f"{module}: {error.get('type')}: {error.get('message')}{tail}")
    if rc != 0 or done is None:
        raise TrainingFailed(f"{module} exited with status {rc} without a summary{tail}")
    return done


def _stop(proc: Any) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if not isinstance(proc, subprocess.Popen):  # the fork-server signals its group
            with contextlib.suppress(Exception):
                proc.send_signal(sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log_path: str | os.PathLike[str] | None, lines: int = 15) -> str:
    if not log_path:
        return ""
    try:
        text = Path(log_path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return ("\n--- " + str(log_path) + " (last lines) ---\n" + "\n".join(text[-lines:])) if text else ""


# ---------------------------------------------------------------------------------------
# ``python -m weaver.train_env build | run ...``: the fork-server's children (docstring)


def _inside(path: str, folders: tuple[str, ...], work: str) -> bool:
    real = os.path.realpath(path)
    for name in folders:
        folder = os.path.join(work, name)
        if real != folder and os.path.commonpath([real, folder]) == folder:
            return True
    return False


def _run_problem(module: str, args: list[str], log_path: str) -> str | None:
    """Why a run's ARGS or LOG are refused (module docstring), or None."""
    work = os.environ.get(_WORK_VARIABLE)
    if not work:
        return (f"this fork-server's table names no work folder ({_WORK_VARIABLE}): "
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


def _main(argv: list[str]) -> int:
    root = os.environ.get(_ROOT_VARIABLE)
    if not root:
        _emit({"event": "error", "type": "TrainEnvError",
               "message": f"{_ROOT_VARIABLE} is not set (the fork-server's table sets it)"})
        return 2
    if argv[:1] == ["build"] and len(argv) == 1:
        try:
            env = ensure_env(Path(root), log=lambda m: _emit({"event": "log", "message": m}))
        except GrandNarrativeError as exc:
            _emit({"event": "error", "type": type(exc).__name__, "message": str(exc)})
            return 1
        _emit({"event": "done", "path": str(env.path), "python": str(env.python),
               "spec": asdict(env.spec), "built": env.built})
        return 0
    if argv[:1] == ["run"] and len(argv) >= 4:
        digest, log_path, module, args = argv[1], argv[2], argv[3], argv[4:]
        path = Path(root) / digest
        python = path / "venv" / "bin" / "python"
        if not _DIGEST.match(digest) or not (path / MARKER).is_file() or not python.exists():
            _emit({"event": "error", "type": "TrainEnvError",
                   "message": f"{digest!r} is not a complete training env under {root}"})
            return 2
        if module not in TRAINING_MODULES:
            _emit({"event": "error", "type": "TrainEnvError",
                   "message": f"{module!r} is not one of {', '.join(TRAINING_MODULES)}"})
            return 2
        base = os.environ.get(_BASE_VARIABLE)
        given = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--base"]
        if base and (len(given) != 1 or str(Path(given[0]).resolve()) != base
                     or any(a.startswith("--base=") for a in args)):
            _emit({"event": "error", "type": "TrainEnvError",
                   "message": f"a run loads only the configured base model {base}"})
            return 2
        problem = _run_problem(module, args, log_path)
        if problem is not None:
            _emit({"event": "error", "type": "TrainEnvError", "message": problem})
            return 2
        try:
            log = os.open(os.devnull if log_path == "-" else log_path,
                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            _emit({"event": "error", "type": "TrainEnvError",
                   "message": f"cannot open the log {log_path}: {exc.strerror or exc}"})
            return 2
        environ = {**os.environ, **CHILD_ENV}
        for name in ("PYTHONPATH", _ROOT_VARIABLE, _BASE_VARIABLE, _WORK_VARIABLE):
            environ.pop(name, None)
        os.chdir(SOURCE_ROOT)
        try:
            from envs.confine import lock

            lock(children=True, file_size=RUN_FILE_SIZE)
        except Exception as exc:  # ImportError, ConfinementUnavailable: fail closed
            _emit({"event": "error", "type": "TrainEnvError",
                   "message": f"the training run cannot lock itself, so it does not run: {exc}"})
            return 2
        os.dup2(log, 2)
        os.close(log)
        os.execve(str(python), [str(python), "-m", module, *args], environ)
    _emit({"event": "error", "type": "TrainEnvError",
           "message": "usage: python -m weaver.train_env build | run DIGEST LOG MODULE ARGS..."})
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
