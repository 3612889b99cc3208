"""``batos crucible check``: run the crucible's stages on a proposal in a file.

    batos crucible check FILE --receiver NAME [--selector S] [--args JSON]
                         [--image PATH | --zeo ADDR | --endpoint EP]

FILE holds one Python function (the selector defaults to its name) or a JSON
proposal (``{"source": ...}`` or ``{"acts": [...]}``, which needs
``--selector``). With ``--image`` or ``--zeo`` the crucible runs here, its
trial against that image opened read-only (so a running incarnation's image
works too); with ``--endpoint`` (the default when neither is given) the live
incarnation runs it: the receiver is sent ``reviewProposal:`` with
``{"source"|"acts", "selector", "arguments"}`` and answers the verdict.

Prints the verdict: approved or rejected with the reasons, and one line per stage
(``--json``: the verdict as JSON). Exit status: 0 approved, 1 rejected (or the image
said no), 2 a usage error (a file, ``--args`` or an image path that will not do), 3 an
image, worker or supervisor that cannot be reached (with ``--json`` the verdict still
prints when the trial could not run). Errors are ``batos.output``'s one format.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .output import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, add_json, emit, fail

__all__ = ["add_commands", "verdict_text"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crucible", help="the AlchemicalCrucible: review proposed methods",
                       epilog="example:\n  batos crucible check double.py --receiver genesis --args '[21]'")
    crucible_sub = p.add_subparsers(dest="crucible_command", required=True, metavar="COMMAND")
    c = crucible_sub.add_parser("check", help="run the crucible's stages on a proposal in FILE",
                                epilog="examples:\n"
                                       "  batos crucible check double.py --receiver genesis --args '[21]'\n"
                                       "  batos crucible check acts.json --receiver genesis --selector "
                                       "greet: --image ./live_image.fs --json")
    c.add_argument("file", help="a Python function, or a JSON proposal ({source} or {acts})")
    c.add_argument("--receiver", required=True, help="uuid or registered name of the receiver")
    c.add_argument("--selector", help="the selector it answers (default: the function's name)")
    c.add_argument("--args", default="[]", help="the message's arguments as a JSON list")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--image", help="run the crucible here against this image file")
    where.add_argument("--zeo", help="run the crucible here against the image at this ZEO address")
    where.add_argument("--endpoint", help="ask the live incarnation through the supervisor "
                       "(default: $BATOS_ENDPOINT or tcp://127.0.0.1:7719)")
    c.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for --endpoint")
    c.add_argument("--allow-package", action="append", default=[], metavar="DIST",
                   help="a distribution whose modules methods may import (repeatable)")
    add_json(c, "the verdict as JSON")
    c.set_defaults(func=cmd_check)


def _usage(args: argparse.Namespace, message: str) -> int:
    return fail(args, "UsageError", message, code=EXIT_USAGE)


def _read(args: argparse.Namespace) -> tuple[dict[str, Any], list[Any]] | str:
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read {args.file}: {exc}"
    try:
        arguments = json.loads(args.args)
    except ValueError as exc:
        return f"--args is not JSON: {exc}"
    if not isinstance(arguments, list):
        return "--args must be a JSON list"
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            proposal = json.loads(stripped)
        except ValueError as exc:
            return f"{args.file} looks like JSON but does not parse: {exc}"
        if not isinstance(proposal, dict):
            return f"{args.file} holds JSON that is not a proposal object"
    else:
        proposal = {"source": text}
    return proposal, arguments


def verdict_text(verdict: dict[str, Any]) -> str:
    """The verdict for a person: approved or rejected with why, then one line per stage."""
    approved = verdict.get("approved") is True
    lines = ["approved" if approved else "rejected: " + ("; ".join(verdict.get("reasons") or [])
                                                        or "no reason given")]
    for stage in verdict.get("stages") or []:
        if not isinstance(stage, dict):
            continue
        detail = stage.get("detail") or {}
        shown = " ".join(f"{k}={json.dumps(v, default=repr)}" for k, v in detail.items()
                         if k in ("result", "cpu_ms", "wall_ms", "error", "skipped"))
        reasons = "; ".join(stage.get("reasons") or [])
        line = f"  {stage.get('stage', '?'):<8} {stage.get('status', '?'):<8}"
        lines.append((line + " " + " ".join(x for x in (shown, reasons) if x)).rstrip())
    return "\n".join(lines)


def _print(args: argparse.Namespace, verdict: dict[str, Any]) -> int:
    emit(args, verdict, verdict_text)
    return 0 if verdict.get("approved") is True else EXIT_ERROR


def cmd_check(args: argparse.Namespace) -> int:
    read = _read(args)
    if isinstance(read, str):
        return _usage(args, read)
    proposal, arguments = read
    if args.image or args.zeo:
        return _local(args, proposal, arguments)
    return _remote(args, proposal, arguments)


def _local(args: argparse.Namespace, proposal: dict[str, Any], arguments: list[Any]) -> int:
    from crucible import Crucible, CrucibleError, ImageRef, Policy
    from crucible.pipeline import selector_of
    from crucible.proposal import coerce

    try:
        model = coerce(proposal)
        selector = args.selector or selector_of(model)
    except (CrucibleError, ValueError) as exc:
        return _usage(args, str(exc))
    if args.image and not Path(args.image).is_file():
        return fail(args, "ImageError", f"no image at {args.image}: run 'batos bootstrap' first",
                    code=EXIT_USAGE)
    image = ImageRef(path=str(Path(args.image).resolve()) if args.image else None, zeo=args.zeo,
                     allowed_packages=tuple(args.allow_package))
    try:
        with Crucible(policy=Policy(), image=image) as crucible:
            verdict = crucible.review(model, receiver=args.receiver, selector=selector,
                                      args=arguments)
    except CrucibleError as exc:
        return fail(args, type(exc).__name__, str(exc))
    trial = verdict.stage("trial")
    if trial is not None and trial.status == "error":  # the image or a worker is unreachable
        if args.json:
            emit(args, verdict.to_plain())
        return fail(args, "TrialError", "the trial could not run: " + "; ".join(
            trial.reasons or [str(trial.detail.get("error", "no reason given"))]),
            code=EXIT_UNREACHABLE)
    return _print(args, verdict.to_plain())


def _remote(args: argparse.Namespace, proposal: dict[str, Any], arguments: list[Any]) -> int:
    from bridge import Client, RemoteError, Timeout
    from bridge.errors import BridgeError

    selector = args.selector
    if selector is None and "source" in proposal:
        from crucible.pipeline import selector_of
        from crucible.proposal import Proposal

        try:
            selector = selector_of(Proposal(source=proposal["source"]))
        except ValueError as exc:
            return _usage(args, str(exc))
    if selector is None:
        return _usage(args, "--selector is needed for a proposal of acts")
    request = {k: v for k, v in proposal.items() if k in ("source", "acts", "thought")}
    request.update(selector=selector, arguments=arguments)
    try:
        with Client(args.endpoint, timeout=args.timeout, retries=0) as client:
            verdict = client.send(args.receiver, "reviewProposal:", request)
    except Timeout as exc:
        return fail(args, "Timeout", str(exc), code=EXIT_UNREACHABLE)
    except RemoteError as exc:
        return fail(args, getattr(exc, "type", "RemoteError"), str(exc))
    except BridgeError as exc:
        return fail(args, type(exc).__name__, str(exc), code=EXIT_UNREACHABLE)
    if not isinstance(verdict, dict) or "approved" not in verdict:
        return fail(args, "ProtocolError", f"reviewProposal: answered {verdict!r}, not a verdict")
    return _print(args, verdict)
