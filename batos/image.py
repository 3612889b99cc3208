"""Image commands: ``batos bootstrap``, ``batos verify``, and ``batos send --image``.

They work on an embedded image (a FileStorage file) or, with ``--zeo``, on an image
served by a ZEO server. ``bootstrap`` and ``verify`` print a line of text, or with
``--json`` one object (``{image, changed, created_objects, added_slots, ...}``,
``{image, ok, problems, counts}``). ``send --image`` prints the message's result as
JSON (``--json``: ``{"ok": true, "result": ...}``); bytes are written
``{"$bytes": "<base64>"}``. Errors are ``batos.output``'s one format, exit 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import asdict
from typing import Any

from .home import default_image
from .output import add_json, emit, fail

__all__ = ["add_commands", "jsonable", "parse_arg", "send_embedded", "storage_options"]


def storage_options(p: argparse.ArgumentParser, zeo_help: str = "") -> None:
    """``--image``, ``--home`` and ``--zeo``: which image a command opens."""
    p.add_argument("--image", help="image file (default: <home>/live_image.fs)")
    p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")
    p.add_argument("--zeo", help=zeo_help or "use the image served by ZEO at HOST:PORT or a "
                   "socket path")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bootstrap", help="create the image with the Genesis objects (idempotent)",
                       epilog="examples:\n  batos bootstrap\n  batos bootstrap --image /tmp/try.fs --json")
    storage_options(p)
    add_json(p, "what was created, as JSON")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("verify", help="check that every Genesis slot is present and every method compiles",
                       epilog="examples:\n  batos verify\n  batos verify --zeo ~/.local/state/batos/run/zeo.sock --json")
    storage_options(p)
    add_json(p, "{ok, problems, counts} as JSON")
    p.set_defaults(func=cmd_verify)


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Any:
    from uvm import open_db

    if args.zeo:
        return open_db(zeo=args.zeo, read_only=read_only)
    return open_db(default_image(args.image, args.home), read_only=read_only)


def _where(args: argparse.Namespace) -> str:
    return args.zeo or str(default_image(args.image, args.home))


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


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    """``exc`` in the one error format (a ``UVMError`` by its own ``to_dict``), exit 1."""
    from uvm import UVMError

    err = exc.to_dict() if isinstance(exc, UVMError) else {"type": type(exc).__name__,
                                                             "message": str(exc)}
    kind, message = err.pop("type"), err.pop("message")
    return fail(args, kind, message, **err)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from uvm import UVMError, bootstrap

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(args, exc)
    try:
        report = bootstrap(db)
    except UVMError as exc:
        return _fail(args, exc)
    finally:
        db.close()
    emit(args, {"image": _where(args), "changed": report.changed, **asdict(report)}, _bootstrapped)
    return 0


def _bootstrapped(data: dict[str, Any]) -> str:
    if not data["changed"]:
        return f"{data['image']} already holds the Genesis image; nothing changed"
    return (f"bootstrapped {data['image']}: created {', '.join(data['created_objects']) or 'no objects'}; "
            f"added {len(data['added_slots'])} slots")


def send_embedded(args: argparse.Namespace) -> int:
    """``batos send --image|--zeo``: the message run here, against that image."""
    from uvm import Kernel, UVMError

    from .root.mind import build_mind, close_mind

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(args, exc)
    mind = None
    try:
        # a mind from BATOS_MIND_* / BATOS_MIND_CONFIG makes doesNotUnderstand: synthesize
        mind = build_mind(zeo=args.zeo, image_path=None if args.zeo else
                          str(default_image(args.image, args.home)))
        result = Kernel(db, mind=mind).send(
            args.target, args.selector, [parse_arg(a) for a in args.args], author=args.author)
    except Exception as exc:  # a UVMError, or a mind configuration error (weaver, crucible)
        return _fail(args, exc)
    finally:
        close_mind(mind)
        db.close()
    if getattr(args, "json", False):
        emit(args, {"ok": True, "result": jsonable(result)})
    else:
        print(json.dumps(jsonable(result), indent=None if not isinstance(result, dict | list) else 2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from uvm import UVMError, verify

    try:
        db = _open(args, read_only=True)
    except UVMError as exc:
        return _fail(args, exc)
    try:
        problems, counts = verify(db)
    finally:
        db.close()
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
    if getattr(args, "json", False):
        emit(args, {"image": _where(args), "ok": not problems, "problems": problems,
                    "counts": counts})
        return 1 if problems else 0
    for problem in problems:
        print(f"MISSING: {problem}", file=sys.stderr)
    if problems:
        return fail(args, "VerifyFailed", f"verify failed: {len(problems)} problem(s) (listed "
                    f"above); checked {summary}")
    print(f"verify ok: {summary}")
    return 0
