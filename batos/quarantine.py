"""``batos quarantine list|release``: the methods a poison message got quarantined.

A request whose execution killed incarnations is answered ``PoisonMessage`` by
the supervisor, and the method it reached is quarantined in the image
(``uvm.quarantine``): dispatching it answers ``Quarantined`` until a person
releases it here. Both commands work on the image directly, like ``batos send
--image``: a stopped image file, or the live one through the supervisor's ZEO
socket (``--zeo``). A release is written to the quarantine's own log with who
released it and why.
"""

from __future__ import annotations

import argparse
import json

from .image import _fail, _open

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("quarantine", help="list or release quarantined methods")
    qsub = q.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")

    def storage_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--image", help="image file (default: <home>/live_image.fs)")
        p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")
        p.add_argument("--zeo", help="the image served by ZEO at HOST:PORT or a socket path "
                                     "(the live image: the supervisor's ZEO socket)")

    p = qsub.add_parser("list", help="the quarantined methods, oldest first")
    p.add_argument("--history", action="store_true", help="every quarantine and release instead")
    storage_options(p)
    p.set_defaults(func=cmd_list)

    p = qsub.add_parser("release", help="let a quarantined method run again")
    p.add_argument("target", help="the object holding the method (uuid or name), or one "
                                  "that reaches it")
    p.add_argument("selector")
    p.add_argument("--by", required=True, help="who releases it (kept in the quarantine log)")
    p.add_argument("--reason", default="", help="why it is safe now")
    storage_options(p)
    p.set_defaults(func=cmd_release)


def cmd_list(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError
    from uvm.quarantine import history

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(exc)
    try:
        kernel = Kernel(db)
        rows = (kernel.read(lambda cycle: history(cycle.connection.root())) if args.history
                else kernel.quarantined())
    except UVMError as exc:
        return _fail(exc)
    finally:
        db.close()
    print(json.dumps(rows, indent=2))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from uvm import Kernel, UVMError

    try:
        db = _open(args)
    except UVMError as exc:
        return _fail(exc)
    try:
        record = Kernel(db).release(args.target, args.selector, by=args.by, reason=args.reason)
    except UVMError as exc:
        return _fail(exc)
    finally:
        db.close()
    print(json.dumps({"released": record}, indent=2))
    return 0
