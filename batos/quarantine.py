"""``batos quarantine list|release``: the methods a poison message got quarantined.

A request whose execution killed incarnations is answered ``PoisonMessage`` by
the supervisor, and the method it reached is quarantined in the image
(``uvm.quarantine``): dispatching it answers ``Quarantined`` until a person
releases it here. Both commands work on the image directly, like ``batos send
--image``: a stopped image file, or the live one through the supervisor's ZEO
socket (``--zeo``). A release is written to the quarantine's own log with who
released it and why. Each prints a short text, or its rows/record as JSON with
``--json``; errors are ``batos.output``'s one format, exit 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from .image import _fail, _open, storage_options
from .output import add_json, emit

__all__ = ["add_commands"]

ZEO_HELP = ("the image served by ZEO at HOST:PORT or a socket path (the live image: the "
            "supervisor's ZEO socket)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("quarantine", help="list or release quarantined methods",
                       epilog="examples:\n  batos quarantine list\n"
                              "  batos quarantine release genesis crash --by alice --reason 'fixed'")
    qsub = q.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")

    p = qsub.add_parser("list", help="the quarantined methods, oldest first",
                        epilog="examples:\n  batos quarantine list --image ./live_image.fs\n"
                               "  batos quarantine list --history --json")
    p.add_argument("--history", action="store_true", help="every quarantine and release instead")
    storage_options(p, ZEO_HELP)
    add_json(p, "the rows as a JSON list")
    p.set_defaults(func=cmd_list)

    p = qsub.add_parser("release", help="let a quarantined method run again",
                        epilog="example:\n  batos quarantine release genesis crash --by alice "
                               "--reason 'the loop is bounded now'")
    p.add_argument("target", help="the object holding the method (uuid or name), or one "
                                  "that reaches it")
    p.add_argument("selector", help="the quarantined method's selector")
    p.add_argument("--by", required=True, help="who releases it (kept in the quarantine log)")
    p.add_argument("--reason", default="", help="why it is safe now")
    storage_options(p, ZEO_HELP)
    add_json(p, "the release record as JSON")
    p.set_defaults(func=cmd_release)


def cmd_list(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError
    from uvm.quarantine import history

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(args, exc)
    try:
        kernel = Kernel(db)
        rows = (kernel.read(lambda cycle: history(cycle.connection.root())) if args.history
                else kernel.quarantined())
    except UVMError as exc:
        return _fail(args, exc)
    finally:
        db.close()
    emit(args, rows, _rows_text)
    return 0


_TIMES = ("when", "since")
_SHOWN = (*_TIMES, "event", "holder", "selector", "method")


def _when(row: dict[str, Any]) -> str:
    for key in _TIMES:
        if isinstance(row.get(key), int | float):
            return dt.datetime.fromtimestamp(row[key], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return ""


def _rows_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "nothing is quarantined"
    lines = []
    for row in rows:
        head = " ".join(str(x) for x in (_when(row), row.get("event", ""), row.get("holder")
                                         or row.get("target", ""), row.get("selector", "")) if x)
        rest = {k: v for k, v in row.items() if k not in _SHOWN and v not in (None, "")}
        lines.append(head + "".join(f"  {k}={v}" for k, v in rest.items()))
    return "\n".join(lines)


def cmd_release(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(args, exc)
    try:
        record = Kernel(db).release(args.target, args.selector, by=args.by, reason=args.reason)
    except UVMError as exc:
        return _fail(args, exc)
    finally:
        db.close()
    emit(args, {"released": record},
         lambda d: f"released {args.selector} of {args.target} (by {args.by}); it runs again")
    return 0
