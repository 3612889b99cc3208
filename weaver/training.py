"""One fine-tuning run: TRL SFT with a PEFT LoRA (or 4-bit QLoRA) on the Grand Narrative.

Runs INSIDE the training environment (``weaver/train_env.py`` builds it and starts
``python -m weaver.training ...`` as a child process): torch, transformers, peft, trl,
bitsandbytes and datasets never enter the supervisor's or the incarnation's env.

Protocol: stdout carries JSON lines only, one event each::

    {"event": "start", "steps": N, "train_rows": n, "qlora": bool, "rank": r, "data_digest": ...}
    {"event": "step", "step": s, "steps": N, "loss": x, "lr": y, "elapsed": t, "eta": t}
    {"event": "done", "summary": {...}}          the summary of ``batos train --json``
    {"event": "error", "type": ..., "message": ...}   then exit status 1

Everything else (library warnings) goes to stderr. The data is ``finetuning_chatml.jsonl``
of a folder written by ``weaver.dataset.build``; its sha256 must match the manifest's
``data_digest`` (a changed file is refused: the adapter's digest must name its data).
Each ``{"messages": [system, user, assistant]}`` row trains as prompt/completion, so the
loss is on the assistant turn only.

Output (``--out``): a PEFT adapter folder (``adapter_config.json``,
``adapter_model.safetensors``) with ``base_model_name_or_path`` the absolute base folder
and no ``modules_to_save`` (vLLM refuses adapters that replace embeddings or the
lm_head), plus ``batos_adapter.json`` (facet, data digest, summary).

CPU: float32 throughout (``use_cpu``, no fp16/bf16, no gradient checkpointing).
QLoRA: ``BitsAndBytesConfig(load_in_4bit, nf4, compute float32)`` and
``prepare_model_for_kbit_training``; TRL casts a quantized model's adapter weights to
bf16, which this run undoes (float32 on CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .dataset import CHATML_FILE, MANIFEST_FILE, load_chatml, sha256_file

__all__ = ["ADAPTER_RECORD", "TARGET_MODULES", "main", "train"]

ADAPTER_RECORD = "batos_adapter.json"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


_EVENTS = sys.stdout  # main() points sys.stdout at stderr so library prints stay off the protocol


def emit(event: str, **data: Any) -> None:
    _EVENTS.write(json.dumps({"event": event, **data}) + "\n")
    _EVENTS.flush()


def prompt_completion(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` rows -> conversational prompt/completion rows (loss on the completion)."""
    return [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]


def load_base(base: str, *, qlora: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if qlora:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant,
                                                     device_map={"": "cpu"}, dtype=torch.float32)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return model, tokenizer


def _progress_callback(steps: int) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.last_loss: float | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            logs = logs or {}
            if "loss" not in logs:
                return
            self.last_loss = float(logs["loss"])
            elapsed = time.monotonic() - self.started
            done = max(state.global_step, 1)
            emit("step", step=state.global_step, steps=steps, loss=self.last_loss,
                 lr=float(logs.get("learning_rate", 0.0)), elapsed=round(elapsed, 3),
                 eta=round(elapsed / done * (steps - state.global_step), 3))

    return Progress()


def train(data: str, base: str, out: str, *, facet: str = "default", qlora: bool = False,
          steps: int = 20, rank: int = 8, lr: float = 2e-4, max_length: int = 1024,
          batch_size: int = 2, seed: int = 0) -> dict[str, Any]:
    """Run SFT and write the adapter folder; returns the summary (also in ``batos_adapter.json``)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    data_dir, base_dir, out_dir = Path(data), Path(base).resolve(), Path(out).resolve()
    manifest = json.loads((data_dir / MANIFEST_FILE).read_text())
    digest = sha256_file(data_dir / CHATML_FILE)
    if digest != manifest.get("data_digest"):
        raise ValueError(f"{data_dir / CHATML_FILE} changed since the manifest was written "
                         f"(sha256 {digest[:12]} != {str(manifest.get('data_digest'))[:12]}); rebuild it")
    rows = prompt_completion(load_chatml(data_dir / CHATML_FILE))
    torch.manual_seed(seed)
    model, tokenizer = load_base(str(base_dir), qlora=qlora)
    four_bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    if qlora and not four_bit:
        raise RuntimeError("--qlora loaded no 4-bit layers: bitsandbytes did not quantize the model")
    emit("start", steps=steps, train_rows=len(rows), qlora=qlora, rank=rank, data_digest=digest,
         base=str(base_dir), facet=facet)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, bias="none",
                      target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM")
    work = Path(tempfile.mkdtemp(prefix="batos-train-"))
    try:
        config = SFTConfig(
            output_dir=str(work), max_steps=steps, per_device_train_batch_size=batch_size,
            learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
            save_strategy="no", report_to=[], use_cpu=True, bf16=False, fp16=False,
            gradient_checkpointing=False, max_length=max_length, seed=seed,
            dataloader_num_workers=0, disable_tqdm=True, dataset_num_proc=None,
        )
        progress = _progress_callback(steps)
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=lora, callbacks=[progress])
        for param in trainer.model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()  # TRL's bf16 cast for QLoRA; CPU stays float32
        began = time.monotonic()
        result = trainer.train()
        seconds = time.monotonic() - began
        tmp_out = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp_out, ignore_errors=True)
        trainer.model.save_pretrained(str(tmp_out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _fix_adapter_config(tmp_out / "adapter_config.json", base_dir)
    files = [tmp_out / "adapter_config.json", tmp_out / "adapter_model.safetensors"]
    summary = {
        "facet": facet, "steps": int(result.global_step), "final_loss": progress.last_loss,
        "train_loss": float(result.training_loss), "seconds": round(seconds, 3),
        "steps_per_s": round(result.global_step / seconds, 4) if seconds else None,
        "adapter": str(out_dir), "adapter_bytes": sum(f.stat().st_size for f in files),
        "data_digest": digest, "base": str(base_dir), "qlora": qlora, "rank": rank, "lr": lr,
        "linear4bit_modules": four_bit, "max_length": max_length, "batch_size": batch_size, "train_rows": len(rows),
        "target_modules": list(TARGET_MODULES), "created": time.time(),
    }
    (tmp_out / ADAPTER_RECORD).write_text(json.dumps(summary, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp_out, out_dir)
    return summary


def _fix_adapter_config(path: Path, base: Path) -> None:
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(base)
    if config.get("modules_to_save"):
        raise ValueError(f"the adapter saves whole modules {config['modules_to_save']}; vLLM cannot load it")
    config["modules_to_save"] = None
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m weaver.training")
    p.add_argument("--data", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--facet", default="default")
    p.add_argument("--qlora", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    sys.stdout = sys.stderr
    try:
        summary = train(a.data, a.base, a.out, facet=a.facet, qlora=a.qlora, steps=a.steps,
                        rank=a.rank, lr=a.lr, max_length=a.max_length, batch_size=a.batch_size,
                        seed=a.seed)
    except Exception as exc:  # the parent turns this into TrainingFailed
        emit("error", type=type(exc).__name__, message=str(exc))
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1
    emit("done", summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
