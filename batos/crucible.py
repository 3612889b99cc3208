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

Prints the verdict as JSON. Exit status: 0 approved, 1 rejected, 2 a usage
error or an image/supervisor that cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crucible", help="the AlchemicalCrucible: review proposed methods")
    crucible_sub = p.add_subparsers(dest="crucible_command", required=True, metavar="COMMAND")
    c = crucible_sub.add_parser("check", help="run the crucible's stages on a proposal in FILE")
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
    c.set_defaults(func=cmd_check)


def _usage(message: str) -> int:
    print(f"batos crucible check: {message}", file=sys.stderr)
    return 2


def _error(kind: str, message: str) -> int:
    print(json.dumps({"error": {"type": kind, "message": message}}), file=sys.stderr)
    return 2


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


def _print(verdict: dict[str, Any]) -> int:
    print(json.dumps(verdict, indent=2, default=repr))
    return 0 if verdict.get("approved") is True else 1


def cmd_check(args: argparse.Namespace) -> int:
    read = _read(args)
    if isinstance(read, str):
        return _usage(read)
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
        return _usage(str(exc))
    if args.image and not Path(args.image).is_file():
        return _error("ImageError", f"no image at {args.image}: run 'batos bootstrap' first")
    image = ImageRef(path=str(Path(args.image).resolve()) if args.image else None, zeo=args.zeo,
                     allowed_packages=tuple(args.allow_package))
    try:
        with Crucible(policy=Policy(), image=image) as crucible:
            verdict = crucible.review(model, receiver=args.receiver, selector=selector,
                                      args=arguments)
    except CrucibleError as exc:
        return _error(type(exc).__name__, str(exc))
    trial = verdict.stage("trial")
    if trial is not None and trial.status == "error":
        print(json.dumps(verdict.to_plain(), indent=2, default=repr))
        return 2  # the trial could not run: the image or a worker is unreachable
    return _print(verdict.to_plain())


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
            return _usage(str(exc))
    if selector is None:
        return _usage("--selector is needed for a proposal of acts")
    request = {k: v for k, v in proposal.items() if k in ("source", "acts", "thought")}
    request.update(selector=selector, arguments=arguments)
    try:
        with Client(args.endpoint, timeout=args.timeout, retries=0) as client:
            verdict = client.send(args.receiver, "reviewProposal:", request)
    except Timeout as exc:
        return _error("Timeout", str(exc))
    except RemoteError as exc:
        return _error(getattr(exc, "type", "RemoteError"), str(exc))
    except BridgeError as exc:
        return _error(type(exc).__name__, str(exc))
    if not isinstance(verdict, dict) or "approved" not in verdict:
        return _error("ProtocolError", f"reviewProposal: answered {verdict!r}, not a verdict")
    return _print(verdict)
