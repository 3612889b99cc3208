"""Training speed on the tiny model: LoRA and 4-bit QLoRA steps per second, same run.

    python bench/bench_training.py [--steps 12]

Builds the tiny Llama model (no downloads) and a Grand Narrative dataset from the
curriculum templates, then trains the same number of steps with LoRA and with 4-bit
QLoRA in the uv training env (``weaver.train_env``; built once, then reused) and
prints steps per second as the trainer measured them (model load and imports
excluded) beside the QLoRA/LoRA ratio. The device is printed so GPU runs compare.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from weaver import dataset, train_env  # noqa: E402
from weaver.tinymodel import build_tiny_model  # noqa: E402


def device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                  .splitlines() if line.startswith("model name")), platform.machine())
    return f"CPU {model}, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args(argv)
    env = train_env.ensure_env(train_env.default_root())
    with tempfile.TemporaryDirectory(prefix="batos-bench-train-") as tmp:
        base = build_tiny_model(Path(tmp) / "tiny")
        data = Path(tmp) / "data"
        dataset.build(data, dataset.collect({}, [], with_templates="all"))
        results = {}
        for kind in ("lora", "qlora"):
            out = Path(tmp) / kind
            done = train_env.run_module(
                env, "weaver.training",
                ["--data", str(data), "--base", str(base), "--out", str(out),
                 "--steps", str(args.steps), "--max-length", "384", "--facet", "bench"]
                + (["--qlora"] if kind == "qlora" else []),
                log_path=Path(tmp) / f"{kind}.log", timeout=1800)
            results[kind] = done["summary"]
    print(f"# bench_training {datetime.date.today()} on {device()}, tiny Llama (hidden 256, "
          f"2 layers), rank 8, batch 2, max length 384, {args.steps} steps")
    for kind, summary in results.items():
        print(f"{kind:6} {summary['steps_per_s']:.3f} steps/s  ({summary['seconds']:.1f} s of "
              f"training, final loss {summary['train_loss']:.3f})")
    ratio = results["qlora"]["steps_per_s"] / results["lora"]["steps_per_s"]
    print(f"QLoRA/LoRA speed ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
