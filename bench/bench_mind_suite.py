"""How good is a mind at batos? pass@1 and pass@3 on a frozen suite of missing selectors.

Point it at any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama):

    python bench/bench_mind_suite.py --url http://127.0.0.1:8000/v1 --model NAME
    python bench/bench_mind_suite.py --replay answers.jsonl       # a recording
    python bench/bench_mind_suite.py --reference                  # the suite's own answers

For each task in ``bench/mind_tasks.py`` a fresh image gets a receiver (a
clone of genesis with the task's slots), the mind gets up to 3 attempts
(the first proposal, then repairs with the crucible's reasons) through the
real crucible (static + trial), and the installed method must then pass the
task's hidden checks. pass@1: solved by the first proposal; pass@3: solved
within three. ``--reference`` answers with the suite's reference methods, to
show the checks are satisfiable (it must print 100%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.mind_tasks import SUITE_VERSION, TASKS  # noqa: E402
from crucible import Crucible, ImageRef, Policy, proposal_schema  # noqa: E402
from uvm import Kernel, UVMError, bootstrap, open_db  # noqa: E402
from uvm.records import export_records  # noqa: E402
from uvm.synthesis import Synthesizer  # noqa: E402
from weaver.chat import Answer  # noqa: E402


class ReferenceMind:
    """Answers every task with its reference method (proves the checks)."""

    model = "reference"

    def __init__(self) -> None:
        self.by_selector = {t["selector"]: t["reference"] for t in TASKS}

    def chat(self, messages: list[dict[str, str]], **_: Any) -> Any:
        text = messages[1]["content"]
        for selector, source in self.by_selector.items():
            if f"understand {selector!r}" in text:
                proposal = {"thought": "reference", "source": source}
                return Answer(text=json.dumps(proposal), parsed=proposal, model=self.model,
                              structured=True, elapsed=0.0)
        raise LookupError("no reference for this prompt")


def _chat(args: argparse.Namespace) -> Any:
    from weaver.config import mind_from_config

    if args.reference:
        return ReferenceMind()
    if args.replay:
        return mind_from_config({"backend": "replay", "path": args.replay})
    if not (args.url and args.model):
        raise SystemExit("give --url and --model, or --replay FILE, or --reference")
    return mind_from_config({"backend": "openai", "base_url": args.url, "model": args.model,
                             "timeout": args.timeout})


def run_task(task: dict[str, Any], chat: Any, folder: Path, attempts: int) -> dict[str, Any]:
    path = folder / f"task-{task['selector'].replace(':', '_')}.fs"
    db = open_db(path)
    crucible = Crucible(policy=Policy(), image=ImageRef(path=str(path)))
    try:
        bootstrap(db)
        plain = Kernel(db)
        receiver = plain.send("genesis", "clone", [])
        for name, value in task["slots"].items():
            plain.send(receiver, "setSlot:value:", [name, value])
        mind = Synthesizer(chat, crucible, schema=proposal_schema(), attempts=attempts)
        kernel = Kernel(db, mind=mind)
        started = time.monotonic()
        outcome: dict[str, Any] = {"selector": task["selector"], "solved": False, "attempt": None}
        try:
            kernel.send(receiver, task["selector"], task["args"])
        except UVMError as exc:
            outcome["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        outcome["seconds"] = time.monotonic() - started
        records = export_records(db)["synthesis"]
        installed = [r for r in records if r["outcome"] == "installed"]
        if installed:
            outcome["attempt"] = len(installed[-1]["attempts"])
            failures = []
            for check_args, expected in task["checks"]:
                try:
                    got = plain.send(receiver, task["selector"], check_args)
                except UVMError as exc:
                    got = f"{type(exc).__name__}: {exc}"
                if got != expected:
                    failures.append(f"{check_args!r}: expected {expected!r}, got {got!r}")
            outcome["solved"] = not failures
            if failures:
                outcome["error"] = "hidden checks: " + "; ".join(failures)[:300]
        return outcome
    finally:
        crucible.close()
        db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url")
    parser.add_argument("--model")
    parser.add_argument("--replay")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--limit", type=int, default=len(TASKS))
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    chat = _chat(args)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="batos-suite-") as tmp:
        for task in TASKS[: args.limit]:
            outcome = run_task(task, chat, Path(tmp), attempts=3)
            outcomes.append(outcome)
            if not args.json:
                mark = f"solved@{outcome['attempt']}" if outcome["solved"] else "FAILED"
                print(f"{task['selector']:24} {mark:10} {outcome['seconds']:7.2f}s "
                      f"{outcome.get('error', '')[:90]}", flush=True)
    n = len(outcomes)
    summary = {
        "suite_version": SUITE_VERSION,
        "tasks": n,
        "model": getattr(chat, "model", "?"),
        "pass@1": sum(o["solved"] and o["attempt"] == 1 for o in outcomes) / n,
        "pass@3": sum(o["solved"] for o in outcomes) / n,
        "seconds_per_task_p50": statistics.median(o["seconds"] for o in outcomes),
        "seconds_total": sum(o["seconds"] for o in outcomes),
    }
    if args.json:
        print(json.dumps({"summary": summary, "tasks": outcomes}, indent=2))
    else:
        print(f"\n{summary['model']}: pass@1 {summary['pass@1']:.0%}  pass@3 "
              f"{summary['pass@3']:.0%}  over {n} tasks; "
              f"{summary['seconds_per_task_p50']:.2f}s per task (p50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
