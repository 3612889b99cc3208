"""Train and score one facet adapter for the inquiry loop, inside the training env, on a budget.

``FacetTrainer`` is the real implementation of the two ML steps of an inquiry cycle
(``weaver.inquiry``): ``train`` runs ``python -m weaver.training`` and ``evaluate``
runs ``python -m weaver.evaluate`` in the uv training environment
(``weaver.train_env``), each a child process in its own session. Both take a
``timeout``: the loop hands them what is left of the cycle's budget, and
``run_module`` kills the child's process group when it runs past it (the budget
is enforced, not advisory). ``cancel`` (an event) stops a run at the child's next
progress line, the same way. ``cpu_seconds`` of each run (user + system of the
children reaped in this process meanwhile) is reported beside the wall time.

Boundary: builds argument lists and runs processes; imports neither the ML stack
(that runs in the child) nor anything of the image. Runs in the caller's thread.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import train_env

__all__ = ["FacetTrainer", "child_cpu_seconds"]

Event = Callable[[dict[str, Any]], None]


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class FacetTrainer:
    """LoRA SFT and held-out scoring of facet adapters on one base model."""

    def __init__(self, base: str | os.PathLike[str], *, env_root: str | os.PathLike[str] | None = None,
                 rank: int = 8, lr: float = 2e-4, max_length: int = 512, batch_size: int = 2,
                 qlora: bool = False, eval_max_new_tokens: int = 48, eval_limit: int | None = 8,
                 log: Callable[[str], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        self.base = Path(base).resolve()
        self.env_root = Path(env_root) if env_root else train_env.default_root()
        self.rank, self.lr, self.max_length, self.batch_size = rank, lr, max_length, batch_size
        self.qlora = qlora
        self.eval_max_new_tokens, self.eval_limit = eval_max_new_tokens, eval_limit
        self.log = log
        self.cancel = cancel or threading.Event()
        self._env: train_env.TrainEnv | None = None

    def prepare(self) -> None:
        """Build (or find) the training env now, so the budget counts only the runs."""
        self.env()

    def env(self) -> train_env.TrainEnv:
        """The training env, built on first use (minutes the first time, then reused)."""
        if self._env is None:
            self._env = train_env.ensure_env(self.env_root, log=self.log)
        return self._env

    def train(self, data: Path, out: Path, *, facet: str, steps: int, timeout: float,
              on_event: Event | None = None) -> dict[str, Any]:
        """The training summary (``weaver.training``) plus ``cpu_seconds``."""
        args = ["--data", str(Path(data).resolve()), "--base", str(self.base),
                "--out", str(Path(out).resolve()), "--facet", facet, "--steps", str(steps),
                "--rank", str(self.rank), "--lr", repr(self.lr),
                "--max-length", str(self.max_length), "--batch-size", str(self.batch_size)]
        if self.qlora:
            args.append("--qlora")
        return self._run("weaver.training", args, Path(out).parent / "train.log", timeout,
                         on_event, lambda done: done["summary"])

    def evaluate(self, data: Path, adapter: Path, against: Path | None, *, timeout: float,
                 on_event: Event | None = None) -> dict[str, Any]:
        """``weaver.evaluate``'s result (adapter/against scores, better) plus ``cpu_seconds``."""
        args = ["--data", str(Path(data).resolve()), "--base", str(self.base),
                "--adapter", str(Path(adapter).resolve()), "--max-length", str(self.max_length),
                "--max-new-tokens", str(self.eval_max_new_tokens)]
        if self.eval_limit:
            args += ["--limit", str(self.eval_limit)]
        if against is not None:
            args += ["--against", str(Path(against).resolve())]
        return self._run("weaver.evaluate", args, Path(adapter).parent / "evaluate.log", timeout,
                         on_event, lambda done: {k: v for k, v in done.items() if k != "event"})

    def _run(self, module: str, args: list[str], log_path: Path, timeout: float,
             on_event: Event | None, pick: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        env = self.env()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cpu, began = child_cpu_seconds(), time.monotonic()
        if self.cancel.is_set():
            raise train_env.TrainingFailed(f"{module} cancelled before it started")

        def event(e: dict[str, Any]) -> None:
            if self.cancel.is_set():  # run_module stops the child's process group
                raise train_env.TrainingFailed(f"{module} cancelled")
            if on_event:
                on_event(e)

        done = train_env.run_module(env, module, args, on_event=event, log_path=log_path,
                                    timeout=max(1.0, timeout))
        result = dict(pick(done))
        result["cpu_seconds"] = round(child_cpu_seconds() - cpu, 3)
        result["wall_seconds"] = round(time.monotonic() - began, 3)
        return result
