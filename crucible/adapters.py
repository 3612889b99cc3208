"""The adapter review: may a newly trained facet adapter replace the current one?

The inquiry loop (``weaver.inquiry``) hands its evidence here as plain data; the
composition root passes ``adapter_reviewer(...)`` to it as its ``review`` seam. Three
required stages, each a ``StageVerdict``, decided like every crucible verdict
(``verdict.decide``):

* ``config``: the adapter folder is a sane LoRA for the server: ``adapter_config.json``
  says ``peft_type`` LORA, rank 1..``max_rank`` (the server's ``--max-lora-rank``), no
  ``modules_to_save`` (vLLM refuses them), the base model is the one being served (when
  given), the weights exist, the size is within ``max_bytes`` (when given), and the
  adapter's recorded ``data_digest`` names the dataset of this cycle;
* ``schema``: the held-out split was not empty and the new adapter's schema-valid
  share of ``autopoietic_act`` is at least ``min_schema_share`` and not below the
  current one's;
* ``evaluation``: the new adapter's held-out loss is finite and lower than the
  current facet's (its adapter, or the base model when the facet has none).

Evidence keys: ``adapter`` (the ``AdapterInfo`` fields: name, path, rank, size_bytes,
base_model), ``new_scores`` and ``current_scores`` (``loss``, ``schema_valid_share``),
``against``, ``held_out_rows``, ``data_digest``.

Boundary: reads the adapter's JSON files, runs nothing; imports neither the weaver nor
the image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .verdict import StageVerdict, Verdict, decide, timed

__all__ = ["adapter_reviewer", "review_adapter"]

WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _stage(name: str, reasons: list[str], detail: dict[str, Any], ms: float) -> StageVerdict:
    return StageVerdict(stage=name, status="fail" if reasons else "pass", required=True,
                        reasons=reasons, detail=detail, elapsed_ms=ms)


def _config(evidence: dict[str, Any], max_rank: int, max_bytes: int | None,
            base_model: str | None) -> StageVerdict:
    reasons: list[str] = []
    detail: dict[str, Any] = {}
    with timed() as t:
        adapter = evidence.get("adapter") or {}
        folder = Path(str(adapter.get("path") or ""))
        try:
            config = json.loads((folder / "adapter_config.json").read_text())
        except (OSError, ValueError) as exc:
            config = {}
            reasons.append(f"{folder}/adapter_config.json is not readable JSON ({exc})")
        if config:
            kind = str(config.get("peft_type", "")).upper()
            rank = config.get("r")
            detail.update(peft_type=kind, rank=rank, target_modules=config.get("target_modules"))
            if kind != "LORA":
                reasons.append(f"peft_type is {kind or 'missing'}, not LORA")
            if not isinstance(rank, int) or not 1 <= rank <= max_rank:
                reasons.append(f"rank {rank!r} is outside 1..{max_rank} (the server's "
                               "--max-lora-rank)")
            if config.get("modules_to_save"):
                reasons.append(f"it saves whole modules {config['modules_to_save']}; vLLM "
                               "cannot load such an adapter")
            if base_model and str(config.get("base_model_name_or_path")) != base_model:
                reasons.append(f"it was trained on {config.get('base_model_name_or_path')!r}, "
                               f"not the served base model {base_model!r}")
        if not any((folder / w).is_file() for w in WEIGHTS):
            reasons.append(f"{folder} holds no adapter weights")
        size = int(adapter.get("size_bytes") or 0)
        if max_bytes is not None and size > max_bytes:
            reasons.append(f"{size} bytes is over the adapter budget of {max_bytes}")
        record = folder / "batos_adapter.json"
        if record.is_file():
            try:
                trained_on = json.loads(record.read_text()).get("data_digest")
            except ValueError:
                trained_on = None
            if evidence.get("data_digest") and trained_on != evidence["data_digest"]:
                reasons.append("the adapter's recorded data_digest does not name this "
                               "cycle's dataset")
    return _stage("config", reasons, detail, t.elapsed_ms)


def _share(scores: dict[str, Any]) -> float:
    value = scores.get("schema_valid_share")
    return float(value) if isinstance(value, int | float) else math.nan


def _loss(scores: dict[str, Any]) -> float:
    value = scores.get("loss")
    return float(value) if isinstance(value, int | float) else math.nan


def _schema(evidence: dict[str, Any], min_share: float) -> StageVerdict:
    with timed() as t:
        new, old = evidence.get("new_scores") or {}, evidence.get("current_scores") or {}
        rows, share, current = evidence.get("held_out_rows") or new.get("rows") or 0, _share(new), _share(old)
        reasons = []
        if not rows:
            reasons.append("the held-out split is empty: nothing was checked")
        if not share >= min_share:  # also catches NaN
            reasons.append(f"schema-valid share {share:.2f} is below the minimum {min_share:.2f}")
        if not math.isnan(current) and not share >= current:
            reasons.append(f"schema-valid share {share:.2f} is below the current "
                           f"{evidence.get('against', 'facet')}'s {current:.2f}")
    return _stage("schema", reasons, {"rows": rows, "new": share, "current": current}, t.elapsed_ms)


def _evaluation(evidence: dict[str, Any], margin: float) -> StageVerdict:
    with timed() as t:
        new = _loss(evidence.get("new_scores") or {})
        old = _loss(evidence.get("current_scores") or {})
        against = evidence.get("against", "the current facet")
        reasons = []
        if not math.isfinite(new):
            reasons.append(f"the new adapter's held-out loss is {new}")
        elif math.isfinite(old) and not new < old - margin:
            reasons.append(f"held-out loss {new:.4f} does not beat {against}'s {old:.4f}"
                           + (f" by {margin}" if margin else ""))
    return _stage("evaluation", reasons, {"new_loss": new, "current_loss": old,
                                          "against": against}, t.elapsed_ms)


def review_adapter(evidence: dict[str, Any], *, max_rank: int = 16, max_bytes: int | None = None,
                   base_model: str | None = None, min_schema_share: float = 0.0,
                   loss_margin: float = 0.0) -> Verdict:
    """The verdict of the module docstring on one adapter's evidence."""
    return decide([_config(evidence, max_rank, max_bytes, base_model),
                   _schema(evidence, min_schema_share),
                   _evaluation(evidence, loss_margin)])


def adapter_reviewer(**limits: Any) -> Callable[[dict[str, Any]], tuple[bool, list[str], dict[str, Any]]]:
    """``review(evidence) -> (approved, reasons, verdict_plain)`` for the inquiry loop."""
    def review(evidence: dict[str, Any]) -> tuple[bool, list[str], dict[str, Any]]:
        verdict = review_adapter(evidence, **limits)
        return verdict.approved, list(verdict.reasons), verdict.to_plain()

    return review
