"""Held-out scoring of an adapter beside the current one (or the base model).

Runs INSIDE the training environment as ``python -m weaver.evaluate`` (started by
``weaver.train_env.run_module``; ``batos evaluate`` is the command). For each model
(base + adapter, and base + ``--against`` adapter or the bare base) on
``heldout_chatml.jsonl`` of a dataset folder:

* ``loss``: mean token cross-entropy of the assistant turn given system + user (the
  prompt tokens are masked), token-weighted over the split; ``perplexity`` = exp(loss);
* ``schema_valid_share``: greedy generation for each held-out prompt, the share of outputs
  whose assistant layout parses and whose ``autopoietic_act`` validates against the act
  schema (``weaver.narrative.parse_assistant``); ``json_share``: the share that is a JSON
  object at all.

The rule (``better_than``): the new adapter is better when its held-out loss is lower
and its schema-valid share is not lower. Both matter: loss alone rewards fluent text
whose acts do not apply; the share alone is too coarse on a small split.

Protocol on stdout (JSON lines): ``{"event": "scored", "which": ..., "scores": {...}}``
per model, then ``{"event": "done", "adapter": {...}, "against": {...},
"against_kind": "adapter"|"base", "better": bool, "rule": ...}``; ``error`` as in
``weaver.training``. ``better_than`` itself is plain Python, importable anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from .dataset import HELDOUT_FILE, load_chatml
from .narrative import InvalidRecord, parse_assistant

__all__ = ["RULE", "better_than", "main", "score"]

RULE = "lower held-out loss and a schema-valid act share that is not lower"
_EVENTS = sys.stdout


def better_than(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """True when ``new`` beats ``old`` by ``RULE`` (scores as ``score`` returns them)."""
    return (float(new["loss"]) < float(old["loss"])
            and float(new["schema_valid_share"]) >= float(old["schema_valid_share"]))


def emit(event: str, **data: Any) -> None:
    _EVENTS.write(json.dumps({"event": event, **data}) + "\n")
    _EVENTS.flush()


def _load(base: str, adapter: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return model, tokenizer


def _ids(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    if isinstance(out, dict) or hasattr(out, "keys"):  # transformers 5 returns a BatchEncoding
        out = out["input_ids"]
    return list(out)


def score(base: str, adapter: str | None, rows: list[dict[str, Any]], *, max_length: int = 1024,
          max_new_tokens: int = 256) -> dict[str, Any]:
    """The scores of the module docstring for base (+ adapter) on ``rows`` (ChatML)."""
    import torch

    model, tokenizer = _load(base, adapter)
    total_loss, total_tokens, valid, json_ok = 0.0, 0, 0, 0
    began = time.monotonic()
    for row in rows:
        prompt = _ids(tokenizer, row["messages"][:-1], generation_prompt=True)
        full = _ids(tokenizer, row["messages"], generation_prompt=False)
        if full[:len(prompt)] != prompt:  # a template that re-renders the prompt differently
            prompt = prompt[:max(i for i in range(len(prompt) + 1) if full[:i] == prompt[:i])]
        full = full[:max_length]
        labels = [-100] * min(len(prompt), len(full)) + full[len(prompt):]
        n = sum(1 for t in labels[1:] if t != -100)
        with torch.no_grad():
            if n:
                out = model(input_ids=torch.tensor([full]), labels=torch.tensor([labels]))
                total_loss += float(out.loss) * n
                total_tokens += n
            gen = model.generate(input_ids=torch.tensor([prompt[-max_length:]]),
                                 attention_mask=torch.ones(1, len(prompt[-max_length:]), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(gen[0][len(prompt[-max_length:]):], skip_special_tokens=True)
        try:
            parse_assistant(text)
            valid += 1
            json_ok += 1
        except InvalidRecord:
            json_ok += int(_is_json_object(text))
    loss = total_loss / total_tokens if total_tokens else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss) if total_tokens and loss < 50 else None,
            "tokens": total_tokens, "rows": len(rows),
            "schema_valid_share": valid / len(rows) if rows else 0.0,
            "json_share": json_ok / len(rows) if rows else 0.0,
            "seconds": round(time.monotonic() - began, 3), "adapter": adapter}


def _is_json_object(text: str) -> bool:
    start = text.find("{")
    if start < 0:
        return False
    try:
        return isinstance(json.JSONDecoder().raw_decode(text[start:])[0], dict)
    except json.JSONDecodeError:
        return False


def evaluate(data: str, base: str, adapter: str, against: str | None = None, *,
             max_length: int = 1024, max_new_tokens: int = 256, limit: int | None = None) -> dict[str, Any]:
    rows = load_chatml(Path(data) / HELDOUT_FILE)[:limit]
    new = score(base, adapter, rows, max_length=max_length, max_new_tokens=max_new_tokens)
    emit("scored", which="adapter", scores=new)
    old = score(base, against, rows, max_length=max_length, max_new_tokens=max_new_tokens)
    emit("scored", which="against", scores=old)
    return {"adapter": new, "against": old, "against_kind": "adapter" if against else "base",
            "better": better_than(new, old), "rule": RULE, "held_out_rows": len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m weaver.evaluate")
    p.add_argument("--data", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--against")
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int)
    a = p.parse_args(argv)
    sys.stdout = sys.stderr
    try:
        result = evaluate(a.data, a.base, a.adapter, a.against, max_length=a.max_length,
                          max_new_tokens=a.max_new_tokens, limit=a.limit)
    except Exception as exc:  # the parent turns this into TrainingFailed
        emit("error", type=type(exc).__name__, message=str(exc))
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1
    emit("done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
