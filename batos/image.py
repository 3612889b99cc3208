"""Image commands: ``batos bootstrap``, ``batos verify``, and ``batos send --image``.

They work on an embedded image (a FileStorage file) or, with ``--zeo``, on
an image served by a ZEO server. Results and errors are printed as JSON:
results on stdout, errors on stderr as ``{"error": {"type", "message"}}``
with exit status 1. Bytes are written ``{"$bytes": "<base64>"}``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

from .home import default_image

__all__ = ["add_commands", "jsonable", "parse_arg", "send_embedded"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    def storage_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--image", help="image file (default: <home>/live_image.fs)")
        p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")
        p.add_argument("--zeo", help="use the image served by ZEO at HOST:PORT or a socket path")

    p = sub.add_parser("bootstrap", help="create the image with the Genesis objects (idempotent)")
    storage_options(p)
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("verify", help="check that every Genesis slot is present and every method compiles")
    storage_options(p)
    p.set_defaults(func=cmd_verify)


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Any:
    from uvm import open_db

    if args.zeo:
        return open_db(zeo=args.zeo, read_only=read_only)
    return open_db(default_image(args.image, args.home), read_only=read_only)


def parse_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _fail(exc: Exception) -> int:
    from uvm import UVMError

    err = exc.to_dict() if isinstance(exc, UVMError) else {"type": type(exc).__name__, "message": str(exc)}
    print(json.dumps({"error": err}), file=sys.stderr)
    return 1


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from uvm import UVMError, bootstrap

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(exc)
    try:
        report = bootstrap(db)
    except UVMError as exc:
        return _fail(exc)
    finally:
        db.close()
    where = args.zeo or default_image(args.image, args.home)
    if report.changed:
        print(f"bootstrapped {where}: created {', '.join(report.created_objects) or 'no objects'}; "
              f"added {len(report.added_slots)} slots")
    else:
        print(f"{where} already holds the Genesis image; nothing changed")
    return 0


def send_embedded(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError

    from .root.mind import build_mind, close_mind

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(exc)
    mind = None
    try:
        # a mind from BATOS_MIND_* / BATOS_MIND_CONFIG makes doesNotUnderstand: synthesize
        mind = build_mind(zeo=args.zeo, image_path=None if args.zeo else
                          str(default_image(args.image, args.home)))
        result = Kernel(db, mind=mind).send(
            args.target, args.selector, [parse_arg(a) for a in args.args], author=args.author)
    except UVMError as exc:
        return _fail(exc)
    except Exception as exc:  # a mind configuration error (weaver/crucible) names its cause
        return _fail(exc)
    finally:
        close_mind(mind)
        db.close()
    print(json.dumps(jsonable(result), indent=None if not isinstance(result, dict | list) else 2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from uvm import UVMError, verify

    try:
        db = _open(args, read_only=True)
    except UVMError as exc:
        return _fail(exc)
    try:
        problems, counts = verify(db)
    finally:
        db.close()
    for problem in problems:
        print(f"MISSING: {problem}", file=sys.stderr)
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    if problems:
        print(f"verify failed: {len(problems)} problem(s); checked {summary}", file=sys.stderr)
        return 1
    print(f"verify ok: {summary}")
    return 0
