"""The Characterological Inquiry Loop: when idle and the image's entropy is low, grow a facet.

One cycle (``InquiryLoop.run_cycle``), after ``env`` (``trainer.prepare()``, when the
trainer has one: the training environment, built the first time and not counted in
the budget), each phase an event ``image.inquiry.<phase>``
published when it ends (with its duration), and the whole cycle one ``recordCycle:``
entry in the image at the end, whatever happened:

1. ``dataset``   the image's records (``export()``) + curriculum -> ``weaver.dataset``
                 folder ``<work>/<cycle>/data``;
2. ``train``     a new LoRA adapter for the facet (``trainer.train``), at most
                 ``max_steps`` steps; the whole cycle has ``budget_seconds`` of wall time,
                 and training and evaluation get what is left of it (the child process
                 is killed past it: outcome ``over_budget``);
3. ``evaluate``  held-out scores of the new adapter beside the facet's current adapter
                 (``facetFor:`` -> its folder) or, when the facet has none, the base model;
4. ``review``    the crucible's judgement (``review(evidence)``, the composition root
                 passes ``crucible.adapters.adapter_reviewer``): eval scores, schema-valid
                 share, adapter config;
5. approved:     ``register`` (the folder moves to ``<adapters>/<name>``, then
                 ``registerAdapter:``), ``load`` (on vLLM, ``LoraRuntime.ensure``),
                 ``switch`` (``switchFacet:to:``, one message: one transaction with become:);
   otherwise:    ``discard``: the adapter folder is KEPT under ``<work>/discarded/<cycle>``
                 with ``discarded.json`` (scores, reasons) for a post-mortem; the dataset
                 stays in ``<work>/<cycle>/data``.

Outcomes: ``switched``, ``discarded``, ``over_budget``, ``cancelled`` (the trainer
was told to stop), ``failed`` (a phase raised: the
record names the phase and the error). ``run_cycle`` never raises for a failed phase;
it returns the record.

When (``should_run``): enabled, no cycle running, idle (no ``touch()``) for
``idle_seconds``, ``min_interval`` since the last cycle started, and the image's
Composite Entropy Metric (``entropy`` sent to ``entropy_target``) below ``threshold``.
Cheap checks first; the image is asked last.

Seams (all injected; this module imports nothing of the image, the crucible or a server):
``send(target, selector, args)``, ``export()``, ``review(evidence) -> (approved, reasons,
verdict_plain)``, ``publish(kind, **data)``, ``trainer`` (``train``/``evaluate`` as
``weaver.facet_trainer.FacetTrainer``), ``load(AdapterInfo) -> name``.

Threads: ``touch()`` may be called from any thread (one float store). ``run_cycle`` takes
a non-blocking lock; a second caller gets ``InquiryBusy``. The cycle runs in the
caller's thread (the composition root runs it in its own background thread).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from . import dataset
from .adapters import AdapterInfo, describe_adapter
from .errors import WeaverError
from .train_env import TrainingFailed

__all__ = ["InquiryBusy", "InquiryConfig", "InquiryError", "InquiryLoop", "Trainer", "facet_slug"]

PHASES = ("dataset", "train", "evaluate", "review", "register", "load", "switch", "discard")


class InquiryError(WeaverError):
    """The inquiry loop cannot do what was asked (bad configuration, nothing to compare)."""


class InquiryBusy(InquiryError):
    """A cycle is already running; at most one runs at a time."""


class Trainer(Protocol):
    def train(self, data: Path, out: Path, *, facet: str, steps: int, timeout: float,
              on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]: ...

    def evaluate(self, data: Path, adapter: Path, against: Path | None, *, timeout: float,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]: ...


@dataclass
class InquiryConfig:
    """The loop's knobs; the image's ``inquiryConfig`` answer overrides them key by key."""

    enabled: bool = True
    idle_seconds: float = 600.0
    threshold: float = 0.5
    min_interval: float = 3600.0
    max_steps: int = 20
    budget_seconds: float = 1800.0
    facet: str = "persona response"
    entropy_target: str = "weaver"
    templates: str = "missing"

    @classmethod
    def merged(cls, *layers: Mapping[str, Any] | None) -> InquiryConfig:
        """Defaults, then each layer's known keys in turn (unknown keys are ignored)."""
        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                if key in names and value is not None:
                    values[key] = value
        config = cls(**values)
        config.enabled = bool(config.enabled)
        for key in ("idle_seconds", "threshold", "min_interval", "budget_seconds"):
            setattr(config, key, float(getattr(config, key)))
        config.max_steps = int(config.max_steps)
        if config.max_steps < 0 or config.budget_seconds <= 0:
            raise InquiryError(f"inquiry config: max_steps must be >= 0 and budget_seconds > 0, "
                               f"got {config.max_steps} and {config.budget_seconds}")
        return config


def facet_slug(facet: str) -> str:
    """The facet as it goes into an adapter name: ``persona response`` -> ``persona_response``."""
    slug = re.sub(r"[^a-z0-9_]+", "_", facet.lower()).strip("_")
    if not slug or not slug[0].isalnum():
        raise InquiryError(f"facet {facet!r} gives no usable adapter name")
    return slug


class _Phases:
    """Per-phase wall times, and one event per phase."""

    def __init__(self, publish: Callable[..., None], cycle: str) -> None:
        self.publish, self.cycle = publish, cycle
        self.seconds: dict[str, float] = {}
        self.current: str | None = None

    def run(self, name: str, thunk: Callable[[], Any], **shown: Any) -> Any:
        self.current = name
        began = time.monotonic()
        result = thunk()
        self.seconds[name] = round(time.monotonic() - began, 3)
        self.current = None
        self.emit(name, seconds=self.seconds[name], **shown)
        return result

    def emit(self, name: str, **data: Any) -> None:
        try:
            self.publish(f"image.inquiry.{name}", cycle=self.cycle, **data)
        except Exception:  # an event stream that fails must not break the cycle
            pass


class InquiryLoop:
    def __init__(self, *, send: Callable[[str, str, list[Any]], Any], export: Callable[[], dict],
                 review: Callable[[dict[str, Any]], tuple[bool, list[str], dict[str, Any]]],
                 trainer: Trainer, load: Callable[[AdapterInfo], str],
                 work_dir: str | Path, adapters_dir: str | Path,
                 publish: Callable[..., None] | None = None,
                 config: InquiryConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.send, self.export, self.review = send, export, review
        self.trainer, self.load = trainer, load
        self.work_dir, self.adapters_dir = Path(work_dir), Path(adapters_dir)
        self.publish = publish or (lambda kind, **data: None)
        self.config = config or InquiryConfig()
        self.clock = clock
        self.idle_since = clock()
        self.last_cycle_at: float | None = None
        self.last_record: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # -- when ---------------------------------------------------------------------

    def touch(self, now: float | None = None) -> None:
        """A client request arrived: the image is not idle."""
        self.idle_since = self.clock() if now is None else now

    @property
    def running(self) -> bool:
        return self._lock.locked()

    def cem(self) -> float:
        answer = self.send(self.config.entropy_target, "entropy", [])
        try:
            return float(answer["cem"])
        except (TypeError, KeyError, ValueError) as exc:
            raise InquiryError(f"'entropy' sent to {self.config.entropy_target} answered "
                               f"{answer!r}, without a numeric 'cem'") from exc

    def should_run(self, now: float | None = None) -> tuple[bool, str]:
        """(run?, why) by the rules of the module docstring."""
        now = self.clock() if now is None else now
        c = self.config
        if not c.enabled:
            return False, "the inquiry loop is switched off (enabled = false)"
        if self.running:
            return False, "a cycle is already running"
        idle = now - self.idle_since
        if idle < c.idle_seconds:
            return False, f"not idle: last request {idle:.0f}s ago (< {c.idle_seconds:.0f}s)"
        if self.last_cycle_at is not None and now - self.last_cycle_at < c.min_interval:
            return False, (f"last cycle started {now - self.last_cycle_at:.0f}s ago "
                           f"(< min_interval {c.min_interval:.0f}s)")
        cem = self.cem()
        if cem >= c.threshold:
            return False, f"CEM {cem:.3f} is not below the threshold {c.threshold:.3f}"
        return True, f"idle {idle:.0f}s and CEM {cem:.3f} < {c.threshold:.3f}"

    def maybe_run(self, now: float | None = None) -> dict[str, Any] | None:
        """One check; runs a cycle when ``should_run`` says so. Returns its record or None."""
        ok, _why = self.should_run(now)
        if not ok:
            return None
        try:
            return self.run_cycle()
        except InquiryBusy:
            return None

    # -- one cycle ----------------------------------------------------------------

    def run_cycle(self) -> dict[str, Any]:
        """Run one full cycle now (no idleness/CEM checks); returns the cycle's record."""
        if not self._lock.acquire(blocking=False):
            raise InquiryBusy("an inquiry cycle is already running; one runs at a time")
        try:
            self.last_cycle_at = self.clock()  # min_interval runs from a cycle's start
            return self._cycle(self.last_cycle_at)
        finally:
            self._lock.release()

    def _cycle(self, started: float) -> dict[str, Any]:
        c = self.config
        cycle = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started)) + f"-{int(started * 1e3) % 1000:03d}"
        folder = self.work_dir / cycle
        phases = _Phases(self.publish, cycle)
        record: dict[str, Any] = {"cycle": cycle, "facet": c.facet, "started": started,
                                  "config": asdict(c), "outcome": "failed"}
        phases.emit("start", facet=c.facet, max_steps=c.max_steps, budget_seconds=c.budget_seconds)
        try:
            prepare = getattr(self.trainer, "prepare", None)
            if prepare is not None:  # the training env: built once, outside the budget
                phases.run("env", prepare)
            deadline = time.monotonic() + c.budget_seconds
            self._phases(record, phases, folder, deadline)
        except Exception as exc:
            record["outcome"] = ("over_budget" if _over_budget(exc) else
                                 "cancelled" if "cancelled" in str(exc) else "failed")
            record["failed_phase"] = phases.current
            record["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000]}
            phases.current = None
            if record.get("adapter_path") and not record.get("registered"):
                try:
                    self._discard(record, phases, folder)
                except OSError as err:
                    record["discard_error"] = f"{type(err).__name__}: {err}"
        record["finished"] = self.clock()
        record["phases"] = phases.seconds
        record["total_seconds"] = round(record["finished"] - started, 3)
        try:
            self.send("weaver", "recordCycle:", [_plain(record)])
        except Exception as exc:  # the record is still returned and published
            record["record_error"] = f"{type(exc).__name__}: {exc}"
        phases.emit("done", outcome=record["outcome"], adapter=record.get("adapter"),
                    total_seconds=record["total_seconds"], phases=phases.seconds,
                    error=record.get("error"))
        self.last_record = record
        return record

    def _phases(self, record: dict[str, Any], phases: _Phases, folder: Path,
                deadline: float) -> None:
        c = self.config
        data = folder / "data"
        manifest = phases.run("dataset", lambda: self._dataset(data))
        record["data_digest"] = manifest["data_digest"]
        record["dataset"] = {k: manifest[k] for k in ("turns", "train", "held_out")}
        record["dataset"]["skipped"] = len(manifest["skipped"])

        out = folder / "adapter"
        record["adapter_path"] = str(out)
        summary = phases.run("train", lambda: self.trainer.train(
            data, out, facet=facet_slug(c.facet), steps=c.max_steps,
            timeout=deadline - time.monotonic(),
            on_event=lambda e: e.get("event") == "step" and phases.emit("progress", **e)),
            facet=c.facet)
        record["train"] = {k: summary.get(k) for k in ("steps", "final_loss", "train_loss",
                                                        "seconds", "cpu_seconds", "steps_per_s")}

        current = self.send("weaver", "facetFor:", [c.facet])
        against = self._current_folder(current) if current else None
        record["previous"] = current
        left = deadline - time.monotonic()
        if left <= 0:
            raise TrainingFailed(f"the cycle used its whole budget of {c.budget_seconds:.0f}s "
                                 "in training; nothing left to evaluate")
        result = phases.run("evaluate", lambda: self.trainer.evaluate(data, out, against,
                                                                      timeout=left),
                            against=current or "base")
        record["scores"] = {"new": result["adapter"], "current": result["against"],
                            "against": current or "base", "better": result.get("better")}

        info = describe_adapter(out, facet_slug(c.facet), data_digest=manifest["data_digest"],
                                eval_scores=_numbers(result["adapter"]))
        record["adapter"] = info.name
        evidence = {"facet": c.facet, "adapter": info.model_dump(mode="json"),
                    "new_scores": result["adapter"], "current_scores": result["against"],
                    "against": current or "base", "held_out_rows": result.get("held_out_rows"),
                    "data_digest": manifest["data_digest"], "train": record["train"]}
        approved, reasons, verdict = phases.run("review", lambda: self.review(evidence))
        record["verdict"] = {"approved": approved, "reasons": list(reasons), "detail": verdict}
        if not approved:
            self._discard(record, phases, folder)
            record["outcome"] = "discarded"
            return

        def register() -> AdapterInfo:
            final = self.adapters_dir / info.name
            self.adapters_dir.mkdir(parents=True, exist_ok=True)
            if not final.exists():
                shutil.move(str(out), str(final))
            record["adapter_path"] = str(final)
            moved = info.model_copy(update={"path": str(final.resolve()), "facet": c.facet})
            self.send("weaver", "registerAdapter:", [_registration(moved)])
            record["registered"] = True
            return moved

        registered = phases.run("register", register, adapter=info.name)
        phases.run("load", lambda: self.load(registered), adapter=info.name)
        previous = phases.run("switch", lambda: self.send("weaver", "switchFacet:to:",
                                                          [c.facet, info.name]),
                              adapter=info.name, facet=c.facet)
        record["previous"] = previous if previous is not None else current
        record["outcome"] = "switched"

    def _dataset(self, out: Path) -> dict[str, Any]:
        narrative = dataset.collect(self.export(), (), with_templates=self.config.templates)  # type: ignore[arg-type]
        return dataset.build(out, narrative)

    def _current_folder(self, name: str) -> Path:
        folder = self.adapters_dir / name
        if not (folder / "adapter_config.json").is_file():
            raise InquiryError(f"the facet's current adapter {name} has no folder at {folder}; "
                               "without it the new adapter cannot be compared (restore the "
                               "folder, or switch the facet to another adapter)")
        return folder

    def _discard(self, record: dict[str, Any], phases: _Phases, folder: Path) -> None:
        source = Path(record["adapter_path"])

        def move() -> None:
            target = self.work_dir / "discarded" / folder.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.exists():
                shutil.move(str(source), str(target))
            else:
                target.mkdir(parents=True, exist_ok=True)
            partial = source.with_name(source.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            (target / "discarded.json").write_text(json.dumps(_plain({
                k: record.get(k) for k in ("cycle", "facet", "adapter", "scores", "verdict",
                                           "error", "data_digest")}), indent=1))
            record["adapter_path"] = str(target)

        phases.run("discard", move, adapter=record.get("adapter"))


def _over_budget(exc: Exception) -> bool:
    return isinstance(exc, TrainingFailed) and ("ran past" in str(exc) or "budget" in str(exc))


def _numbers(scores: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def _registration(info: AdapterInfo) -> dict[str, Any]:
    """The ``registerAdapter:`` argument: the registry fields, plain JSON."""
    data = info.model_dump(mode="json")
    return {k: data[k] for k in ("name", "path", "base_model", "rank", "size_bytes", "facet",
                                 "data_digest", "eval_scores", "created", "digest")}


def _plain(value: Any) -> Any:
    """JSON round trip: what the image stores is plain data, NaN becomes None."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v
    return json.loads(json.dumps(clean(value), default=str))
