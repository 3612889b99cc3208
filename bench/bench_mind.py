"""The cost of doesNotUnderstand: -> installed method, without the LLM's own time.

A mind that answers instantly (a scripted backend: the same seam a model
server plugs into) proposes a method for each of N new selectors; the real
crucible reviews each (static policy + trial run in a separate process with
resource limits; persona reviews off), the kernel installs it and runs the
message. Per synthesis we report the whole send minus the mind's call
(prompt build, static, trial, install and commit) as p50/p95, with its
parts, beside the baseline: the same message once the method exists.

The stand-in model takes ``--generation`` seconds per answer (default 1 s, a
short answer from a small model), and that time is subtracted: the trial
stage keeps one warm worker that is spent per trial, and its replacement
starts while the next answer is being generated. ``generation 0`` shows the
back-to-back case, where each trial waits for a fresh worker.

    python bench/bench_mind.py [--n 40] [--zeo]

``--zeo`` runs the image behind a real ZEO server (as incarnations do); the
default is a FileStorage in this process with the trial opening it read-only.
Target (issue 5): overhead <= 100 ms p50 with the trial stage on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crucible import Crucible, ImageRef, Policy, proposal_schema  # noqa: E402
from uvm import Kernel, bootstrap, open_db  # noqa: E402
from uvm.records import export_records  # noqa: E402
from uvm.synthesis import Synthesizer  # noqa: E402
from weaver.chat import Answer  # noqa: E402


class InstantMind:
    """Answers at once after ``generation`` seconds (the model's own time, subtracted)."""

    model = "instant"

    def __init__(self, generation: float) -> None:
        self.generation = generation

    def chat(self, messages: list[dict[str, str]], **_: Any) -> Any:
        time.sleep(self.generation)
        text = messages[1]["content"]
        name = text.rsplit("Write the method ", 1)[1].split(" ", 1)[0]
        proposal = {"thought": "add", "source": f"def {name}(self, x):\n    return x + 1\n"}
        return Answer(text="", parsed=proposal, model=self.model, structured=True, elapsed=0.0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(n: int, zeo: bool, generation: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="batos-bench-mind-") as tmp:
        path = Path(tmp) / "live_image.fs"
        server = None
        if zeo:
            import ZEO

            address, stop = ZEO.server(path=str(path))
            server = stop
            db = open_db(zeo=f"{address[0]}:{address[1]}")
            image = ImageRef(zeo=f"{address[0]}:{address[1]}")
        else:
            db = open_db(path)
            image = ImageRef(path=str(path))
        crucible = Crucible(policy=Policy(), image=image)
        try:
            bootstrap(db)
            kernel = Kernel(db, mind=Synthesizer(InstantMind(generation), crucible,
                                                 schema=proposal_schema()))
            # warm up: first compile, first trial worker
            kernel.send("genesis", "warmUp:", [1])
            totals: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                assert kernel.send("genesis", f"task{i}:", [i]) == i + 1
                totals.append((time.perf_counter() - t0) * 1000)
            records = [r for r in export_records(db)["synthesis"] if r["selector"] != "warmUp:"]
            parts: dict[str, list[float]] = {"prompt": [], "mind": [], "crucible": [], "rest": []}
            overhead: list[float] = []
            by_sel = {r["selector"]: r for r in records}
            for i, total in enumerate(totals):
                timings = by_sel[f"task{i}:"]["timings"]
                mind = timings.get("mind_1_ms", 0.0)
                parts["prompt"].append(timings["prompt_ms"])
                parts["mind"].append(mind)
                parts["crucible"].append(timings["crucible_1_ms"])
                parts["rest"].append(total - mind - timings["prompt_ms"] - timings["crucible_1_ms"])
                overhead.append(total - mind)
            baseline: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                kernel.send("genesis", f"task{i}:", [i])
                baseline.append((time.perf_counter() - t0) * 1000)
            return {
                "mode": ("ZEO" if zeo else "FileStorage") + f", generation {generation:g}s",
                "n": n,
                "overhead_p50": statistics.median(overhead),
                "overhead_p95": pct(overhead, 0.95),
                "parts_p50": {k: statistics.median(v) for k, v in parts.items()},
                "baseline_p50": statistics.median(baseline),
            }
        finally:
            crucible.close()
            db.close()
            if server is not None:
                server()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--zeo", action="store_true", help="also measure behind a ZEO server")
    parser.add_argument("--generation", type=float, default=1.0,
                        help="seconds the stand-in model takes per answer (subtracted; the trial "
                        "worker's spare warms meanwhile, as it does behind a real model)")
    args = parser.parse_args(argv)
    print(f"# bench_mind {datetime.date.today()} on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    results = [run(args.n, zeo=False, generation=args.generation),
               run(args.n, zeo=False, generation=0.0)]
    if args.zeo:
        results.append(run(args.n, zeo=True, generation=args.generation))
    for r in results:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts_p50"].items())
        verdict = "met" if r["overhead_p50"] <= 100 else "NOT met"
        print(f"{r['mode']:12} synthesis overhead p50 {r['overhead_p50']:.1f} ms, p95 "
              f"{r['overhead_p95']:.1f} ms (target <= 100 ms p50: {verdict}); parts p50 ms: "
              f"{parts}; the same message once installed: {r['baseline_p50']:.2f} ms "
              f"({r['overhead_p50'] / r['baseline_p50']:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
