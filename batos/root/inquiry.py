"""The Characterological Inquiry Loop with its real parts, wired (``batos.root``).

``build_loop(kernel, ...)`` assembles a ``weaver.inquiry.InquiryLoop`` whose seams are
the real things: ``kernel.send`` (the image's ``weaver`` object and ``entropy``),
``uvm.records.export_records`` (the dataset's records), ``crucible.adapters`` (the
review), ``weaver.facet_trainer.FacetTrainer`` (training and evaluation in the uv
training env) and ``weaver.lora.LoraRuntime`` (loading the adapter on vLLM).
``batos inquiry once`` uses it; ``start_inquiry`` runs it in the background of an
incarnation.

Configuration, in layers (``settings``):

* the image's ``inquiryConfig`` (``weaver`` object; changed live with
  ``setInquiry:to:``): enabled, idle_seconds, threshold, min_interval, max_steps,
  budget_seconds;
* the operator's ``[inquiry]`` table, JSON in ``BATOS_INQUIRY_CONFIG`` (like
  ``BATOS_MIND_CONFIG``): its keys override the image's, except ``enabled``, which must
  be true in both (either one switches the loop off). It may also name ``facet``,
  ``entropy_target``, ``templates``, ``interval`` (seconds between checks) and the
  trainer's ``rank``, ``lr``, ``max_length``, ``batch_size``, ``qlora``,
  ``eval_max_new_tokens``, ``eval_limit``.

Where: ``<home>/inquiry/<cycle>`` (dataset, logs), ``<home>/inquiry/discarded/<cycle>``
(adapters that lost), ``<home>/adapters/<name>`` (registered adapters), the training env
under ``weaver.train_env.default_root(home)``.

Processes: in a confined incarnation (no exec, ``envs.confine``) ``start_inquiry`` gets
the incarnation's fork-server (``spawner``) and routes the training env's build and
runs through it (``weaver.train_env.route_through``; its table holds
``weaver.train_env.spawner_command(root)`` for the same root).

Threads: ``start_inquiry`` starts one daemon thread that, every ``interval`` seconds,
reads the configuration from the image and runs ``InquiryLoop.maybe_run`` (a cycle runs
in that thread). ``touch()`` may be called from any thread. ``stop()`` cancels a
training/evaluation child at its next progress line and joins the thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crucible.adapters import adapter_reviewer
from uvm.errors import ImageError
from uvm.records import export_records
from weaver.facet_trainer import FacetTrainer
from weaver.inquiry import InquiryConfig, InquiryLoop
from weaver.lora import LoraRuntime
from weaver.train_env import default_root, route_through

from .mind import table_from_env

__all__ = ["InquiryHandle", "build_loop", "config_from_env", "settings", "start_inquiry"]

log = logging.getLogger("batos.inquiry")

TRAINER_KEYS = ("rank", "lr", "max_length", "batch_size", "qlora", "eval_max_new_tokens",
                "eval_limit")


def config_from_env(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The ``[inquiry]`` table from ``BATOS_INQUIRY_CONFIG`` (JSON), or {}."""
    return table_from_env("BATOS_INQUIRY_CONFIG", env)


def settings(image: Mapping[str, Any] | None, table: Mapping[str, Any] | None) -> InquiryConfig:
    """The loop's configuration from the image's ``inquiryConfig`` and the operator's table."""
    image, table = dict(image or {}), dict(table or {})
    config = InquiryConfig.merged(image, table)
    config.enabled = bool(image.get("enabled", True)) and bool(table.get("enabled", True))
    return config


def build_loop(kernel: Any, *, home: str | os.PathLike[str], base_model: str | os.PathLike[str],
               vllm_url: str | None = None, lora: LoraRuntime | None = None,
               table: Mapping[str, Any] | None = None, publish: Callable[..., None] | None = None,
               log_line: Callable[[str], None] | None = None,
               cancel: threading.Event | None = None,
               env_root: str | os.PathLike[str] | None = None) -> InquiryLoop:
    """An ``InquiryLoop`` on ``kernel``'s image with the real parts (module docstring)."""
    home = Path(home)
    table = dict(table or {})
    if lora is None:
        if not vllm_url:
            raise ImageError("the inquiry loop needs the vLLM server's URL (vllm_url) or a "
                             "LoraRuntime to load adapters on")
        lora = LoraRuntime(vllm_url, max_adapters=table.get("max_loras"),
                           max_rank=table.get("max_lora_rank"))
    base = Path(base_model).resolve()
    trainer = FacetTrainer(base, env_root=env_root or default_root(home), log=log_line, cancel=cancel,
                           **{k: table[k] for k in TRAINER_KEYS if k in table})
    loop = InquiryLoop(
        send=kernel.send, export=lambda: export_records(kernel.db),
        review=adapter_reviewer(max_rank=lora.max_rank, max_bytes=lora.max_bytes,
                                base_model=str(base)),
        trainer=trainer, load=lora.ensure, publish=publish,
        work_dir=home / "inquiry", adapters_dir=home / "adapters",
        config=settings(None, table))
    loop.lora = lora  # type: ignore[attr-defined]  # the CLI shows the adapter in use with it
    return loop


def refresh(loop: InquiryLoop, kernel: Any, table: Mapping[str, Any] | None) -> InquiryConfig:
    """Re-read the image's ``inquiryConfig`` into ``loop.config``; answers it."""
    loop.config = settings(kernel.send("weaver", "inquiryConfig", []), table)
    return loop.config


class InquiryHandle:
    """The background loop of one incarnation; ``touch()`` on each request, ``stop()`` at exit."""

    def __init__(self, loop: InquiryLoop, kernel: Any, table: Mapping[str, Any],
                 interval: float, cancel: threading.Event) -> None:
        self.loop, self.kernel, self.table = loop, kernel, dict(table)
        self.interval = interval
        self._cancel = cancel
        self._stop = threading.Event()
        self.checks = 0
        self.last_reason = ""
        self.thread = threading.Thread(target=self._run, name="batos-inquiry", daemon=True)

    def touch(self) -> None:
        self.loop.touch()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                refresh(self.loop, self.kernel, self.table)
                ok, self.last_reason = self.loop.should_run()
                if ok:
                    log.info("inquiry cycle starting: %s", self.last_reason)
                    record = self.loop.run_cycle()
                    log.info("inquiry cycle %s: %s in %.1fs", record["cycle"], record["outcome"],
                             record["total_seconds"])
            except Exception as exc:  # the image or a server unavailable: try at the next check
                self.last_reason = f"check failed: {type(exc).__name__}: {exc}"
                log.warning("inquiry %s", self.last_reason)
            finally:
                self.checks += 1

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop checking; cancel a running cycle's child process; True when the thread ended."""
        self._stop.set()
        self._cancel.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_inquiry(kernel: Any, *, publish: Callable[..., None] | None, home: str | os.PathLike[str],
                  base_model: str | os.PathLike[str], vllm_url: str | None = None,
                  lora: LoraRuntime | None = None, table: Mapping[str, Any] | None = None,
                  interval: float | None = None, spawner: Any = None) -> InquiryHandle:
    """Start the background loop (module docstring); ``table`` defaults to the env's."""
    table = dict(config_from_env() if table is None else table)
    if spawner is not None:
        route_through(spawner)
    cancel = threading.Event()
    loop = build_loop(kernel, home=home, base_model=base_model, vllm_url=vllm_url, lora=lora,
                      table=table, publish=publish, cancel=cancel,
                      log_line=lambda m: log.info("%s", m))
    handle = InquiryHandle(loop, kernel, table, float(interval or table.get("interval", 30.0)),
                           cancel)
    handle.thread.start()
    return handle
