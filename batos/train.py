"""``batos dataset build``, ``batos train``, ``batos evaluate``: the Grand Narrative and its facets.

``dataset build`` reads the image (``--image`` file or ``--zeo`` address, read-only, so a
live image is fine) through ``uvm.records.export_records`` and the supervisor's handover
log (``<home>/logs/handovers.jsonl``, if present), and writes the dataset folder of
``weaver.dataset`` into ``--out``; it prints what was skipped and why.

``train`` and ``evaluate`` run in the training environment (``weaver.train_env``: a uv
venv under ``<home>/train-envs``, built on first use, reused after), as a child process;
progress is one rewritten line (step, loss, ETA) on stderr, or JSON lines with ``--json``;
the result is a short summary on stdout, or its JSON as the last line with ``--json``.
Errors are ``batos.output``'s one format, exit 1.

Every layer is imported inside the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .home import default_image, resolve_home
from .output import add_json, emit, fail

__all__ = ["add_commands", "cmd_dataset_build", "cmd_evaluate", "cmd_train"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    ds = sub.add_parser("dataset", help="the Grand Narrative fine-tuning dataset",
                        epilog="example:\n  batos dataset build --out ./narrative")
    dsub = ds.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    b = dsub.add_parser("build", help="write the dataset from the image's records and the curriculum",
                        epilog="examples:\n  batos dataset build --out ./narrative\n"
                               "  batos dataset build --image ./live_image.fs --out ./narrative "
                               "--templates none --json")
    where = b.add_mutually_exclusive_group()
    where.add_argument("--image", help="image file (default <home>/live_image.fs)")
    where.add_argument("--zeo", help="the image served by ZEO at HOST:PORT or a socket path")
    b.add_argument("--home", help=HOME_HELP)
    b.add_argument("--out", required=True, help="folder for the JSONL files and manifest.json")
    b.add_argument("--templates", choices=("missing", "all", "none"), default="missing",
                   help="curriculum templates: for chapters not lived (default), all, or none")
    b.add_argument("--held-out", type=int, default=15, metavar="PCT", help="held-out percent (15)")
    add_json(b, "print the manifest as JSON")
    b.set_defaults(func=cmd_dataset_build)

    t = sub.add_parser("train", help="fine-tune a LoRA (or 4-bit QLoRA) facet on a dataset",
                       epilog="examples:\n  batos train --data ./narrative --base ./models/tiny-llama "
                              "--out ./adapters/persona --steps 20\n"
                              "  batos train --data ./narrative --base ./models/llama --out ./adapters/q "
                              "--qlora --json")
    t.add_argument("--data", required=True, help="a folder written by `batos dataset build`")
    t.add_argument("--base", required=True, help="the base model folder")
    t.add_argument("--out", required=True, help="the adapter folder to write")
    t.add_argument("--facet", default="default", help="the facet it serves (default 'default')")
    t.add_argument("--qlora", action="store_true", help="4-bit base through bitsandbytes")
    t.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    t.add_argument("--rank", type=int, default=8, help="LoRA rank (vLLM's --max-lora-rank caps it)")
    t.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    t.add_argument("--max-length", type=int, default=1024, help="tokens per row (default 1024)")
    t.add_argument("--batch-size", type=int, default=2, help="rows per step (default 2)")
    t.add_argument("--home", help=HOME_HELP)
    add_json(t, "progress and summary as JSON lines")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score an adapter on the held-out split beside another",
                       epilog="example:\n  batos evaluate --data ./narrative --base ./models/tiny-llama "
                              "--adapter ./adapters/new --against ./adapters/current")
    e.add_argument("--data", required=True, help="a folder written by `batos dataset build`")
    e.add_argument("--base", required=True, help="the base model folder")
    e.add_argument("--adapter", required=True, help="the adapter folder to score")
    e.add_argument("--against", help="the current adapter (default: the bare base model)")
    e.add_argument("--max-length", type=int, default=1024, help="tokens per row (default 1024)")
    e.add_argument("--max-new-tokens", type=int, default=256,
                   help="tokens generated per held-out row (default 256)")
    e.add_argument("--home", help=HOME_HELP)
    add_json(e, "the scores as JSON lines (the result last)")
    e.set_defaults(func=cmd_evaluate)


HOME_HELP = "batos home (default: $BATOS_HOME or ~/.local/state/batos)"


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    return fail(args, type(exc).__name__, str(exc))


def _handovers(home: Path) -> list[dict[str, Any]]:
    from supervisor.handover_log import LOG_FILE
    from supervisor.handover_report import summarize

    path = home / "logs" / LOG_FILE
    return summarize(path) if path.is_file() else []


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from uvm import UVMError, open_db
    from uvm.records import export_records
    from weaver import dataset
    from weaver.narrative import GrandNarrativeError

    home = resolve_home(args.home)
    try:
        db = open_db(zeo=args.zeo) if args.zeo else open_db(default_image(args.image, args.home),
                                                            read_only=True)
        try:
            export = export_records(db)
        finally:
            db.close()
        narrative = dataset.collect(export, _handovers(home), with_templates=args.templates)
        manifest = dataset.build(args.out, narrative, held_out_percent=args.held_out)
    except (UVMError, GrandNarrativeError, OSError) as exc:
        return _fail(args, exc)
    if args.json:
        emit(args, manifest)
        return 0
    print(f"{manifest['turns']} turns ({manifest['train']} train, {manifest['held_out']} held out) "
          f"-> {args.out}  data {manifest['data_digest'][:12]}")
    for number, ch in manifest["chapters"].items():
        print(f"  Act {ch['act']:<3} ch.{number} {ch['title']:<30} {ch['turns']:>5} turns"
              + (f" ({ch['templates']} from templates)" if ch["templates"] else ""))
    for s in manifest["skipped"]:
        print(f"  skipped {s['source']}: {s['reason']}", file=sys.stderr)
    return 0


class _Progress:
    """One rewritten status line on stderr, or each event as a JSON line on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.as_json:
            if event.get("event") not in ("done",):
                print(json.dumps(event), flush=True)
            return
        kind = event.get("event")
        if kind == "start":
            print(f"training {event.get('facet')}: {event.get('steps')} steps on "
                  f"{event.get('train_rows')} rows, rank {event.get('rank')}"
                  + (" (4-bit QLoRA)" if event.get("qlora") else ""), file=sys.stderr)
        elif kind == "step":
            line = (f"step {event['step']}/{event['steps']}  loss {event['loss']:.4f}  "
                    f"lr {event['lr']:.2e}  eta {event['eta']:.0f}s")
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n",
                  file=sys.stderr, flush=True)
        elif kind == "scored":
            s = event.get("scores", {})
            print(f"{event.get('which')}: loss {s.get('loss'):.4f}  schema-valid "
                  f"{s.get('schema_valid_share'):.0%}", file=sys.stderr)

    def end(self) -> None:
        if self.tty and not self.as_json:
            print(file=sys.stderr)


def _env(args: argparse.Namespace) -> Any:
    from weaver import train_env

    root = train_env.default_root(resolve_home(args.home))  # $BATOS_TRAIN_ENVS first
    return train_env.ensure_env(root, log=lambda m: print(m, file=sys.stderr))


def cmd_train(args: argparse.Namespace) -> int:
    from weaver import train_env
    from weaver.narrative import GrandNarrativeError

    out = Path(args.out).resolve()
    progress = _Progress(args.json)
    cli = ["--data", str(Path(args.data).resolve()), "--base", str(Path(args.base).resolve()),
           "--out", str(out), "--facet", args.facet, "--steps", str(args.steps),
           "--rank", str(args.rank), "--lr", str(args.lr), "--max-length", str(args.max_length),
           "--batch-size", str(args.batch_size)] + (["--qlora"] if args.qlora else [])
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        env = _env(args)
        done = train_env.run_module(env, "weaver.training", cli, on_event=progress,
                                    log_path=out.parent / f"{out.name}.train.log")
    except GrandNarrativeError as exc:
        progress.end()
        return _fail(args, exc)
    progress.end()
    emit(args, done["summary"], _trained)
    return 0


def _trained(s: dict[str, Any]) -> str:
    return (f"trained {s.get('facet')!r}: {s.get('steps')} steps in {s.get('seconds')}s, final loss "
            f"{s.get('final_loss')}, rank {s.get('rank')}{' (QLoRA)' if s.get('qlora') else ''}\n"
            f"adapter {s.get('adapter')} ({s.get('adapter_bytes')} bytes)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from weaver import train_env
    from weaver.narrative import GrandNarrativeError

    progress = _Progress(args.json)
    adapter = Path(args.adapter).resolve()
    cli = ["--data", str(Path(args.data).resolve()), "--base", str(Path(args.base).resolve()),
           "--adapter", str(adapter), "--max-length", str(args.max_length),
           "--max-new-tokens", str(args.max_new_tokens)]
    if args.against:
        cli += ["--against", str(Path(args.against).resolve())]
    try:
        env = _env(args)
        done = train_env.run_module(env, "weaver.evaluate", cli, on_event=progress,
                                    log_path=adapter.parent / f"{adapter.name}.eval.log")
    except GrandNarrativeError as exc:
        return _fail(args, exc)
    done.pop("event", None)
    emit(args, done, _evaluated)
    return 0


def _evaluated(d: dict[str, Any]) -> str:
    def scores(side: str) -> str:
        s = d.get(side) or {}
        return (f"loss {s.get('loss', float('nan')):.4f}, schema-valid "
                f"{s.get('schema_valid_share', 0):.0%} on {s.get('rows')} rows")

    rule = f" ({d['rule']})" if d.get("rule") else ""
    return (f"adapter: {scores('adapter')}\n{d.get('against_kind', 'against')}: {scores('against')}\n"
            f"better: {'yes' if d.get('better') else 'no'}{rule}")
