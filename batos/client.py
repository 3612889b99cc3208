"""Client commands: ``batos send``, ``batos status``, ``batos ping``, through the bridge.

``batos send`` talks to the supervisor at ``--endpoint`` (or
``$BATOS_ENDPOINT``); with ``--image`` or ``--zeo`` it instead runs the
message against that image directly (``cli.image``), which needs no
supervisor. Results print as JSON; ``--json`` prints the whole reply. An
error reply exits 1, an unreachable supervisor exits 3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .home import resolve_home
from .image import jsonable, parse_arg, send_embedded

__all__ = ["add_commands"]


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", help="supervisor frontend (default: $BATOS_ENDPOINT or tcp://127.0.0.1:7719)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (default 10)")
    p.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    p.add_argument("--home", help="batos home, for CURVE keys beyond loopback (and --image/--zeo)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("send", help="send one message to an object and print the result as JSON")
    _client_options(p)
    p.add_argument("--image", help="run against this image file directly (no supervisor)")
    p.add_argument("--zeo", help="run against the image served by ZEO at HOST:PORT or a socket path")
    p.add_argument("--author", default="architect", help="who is acting (recorded in method history)")
    p.add_argument("--id", dest="request_id", help="request id (default: a new uuid4); resending an "
                   "id that already committed returns its recorded reply")
    p.add_argument("target", help="uuid or registered name (genesis, traits, true, false, nil, block)")
    p.add_argument("selector", help="e.g. printString or setSlot:value: (or setSlot_value)")
    p.add_argument("args", nargs="*", help="arguments: JSON when valid JSON, else a string")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("evolve", help="change the incarnation's libraries by a validated handover")
    _client_options(p)
    p.set_defaults(timeout=900.0)
    p.add_argument("--add", action="append", default=[], metavar="REQ",
                   help="a requirement to add or replace, e.g. 'six==1.16.0' (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="NAME",
                   help="a package to remove (repeatable)")
    p.add_argument("--offline", action="store_true", help="build from the uv cache and --find-links only")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR",
                   help="a local folder of wheels (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="hand over even if methods still import a removed package")
    p.add_argument("--probation", type=float, help="seconds the old incarnation stays ready (default: config)")
    p.set_defaults(func=cmd_evolve)

    p = sub.add_parser("rollback", help="hand over to a previous generation's environment")
    _client_options(p)
    p.set_defaults(timeout=900.0)
    p.add_argument("--env", dest="env_id", help="env id to return to (default: the one before)")
    p.add_argument("--force", action="store_true",
                   help="hand over even if methods import a package the target env lacks")
    p.add_argument("--probation", type=float)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("status", help="the supervisor's incarnations, routing and restarts")
    _client_options(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ping", help="check that the supervisor answers")
    _client_options(p)
    p.set_defaults(func=cmd_ping)


def _call(args: argparse.Namespace, make: Any, extra: Any = None) -> int:
    """Send the request ``make(client)`` builds and print the reply; ``extra(client, reply)``
    may add keys to a dict result, asked through the same client."""
    from bridge import Client, Timeout
    from bridge.errors import BridgeError

    added: dict[str, Any] = {}
    try:
        with Client(args.endpoint, timeout=args.timeout, curve=_curve(args),
                    retries=getattr(args, "retries", 2)) as client:
            reply = client.request(make(client))
            if extra is not None:
                added = extra(client, reply)
    except Timeout as exc:
        print(json.dumps({"error": {"type": "Timeout", "message": str(exc)}}), file=sys.stderr)
        return 3
    except BridgeError as exc:
        print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}), file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(jsonable({**reply.model_dump(), **added}), indent=2))
        return 0 if reply.ok else 1
    if not reply.ok:
        print(json.dumps({"error": reply.error.model_dump()}), file=sys.stderr)
        return 1
    result = reply.result
    if added:
        result = {**(result if isinstance(result, dict) else {"status": result}), **added}
    print(json.dumps(jsonable(result), indent=2 if isinstance(result, dict | list) else None))
    return 0


def _curve(args: argparse.Namespace) -> tuple[bytes, bytes, bytes] | None:
    """CURVE keys from home for an endpoint beyond loopback (``batos keys generate``)."""
    from bridge import default_endpoint
    from supervisor import keys

    endpoint = args.endpoint or default_endpoint()
    if keys.is_loopback(endpoint):
        return None
    paths = keys.KeyPaths.of(resolve_home(getattr(args, "home", None)))
    if not (paths.server_public.is_file() and paths.client_secret.is_file()):
        return None
    client = keys.client_curve(paths.server_public, paths.client_secret)
    return (client.server_key, client.public_key, client.secret_key)


def cmd_send(args: argparse.Namespace) -> int:
    if args.image or args.zeo:
        return send_embedded(args)
    from bridge import new_request_id
    from bridge.messages import SendRequest

    values = [parse_arg(a) for a in args.args]
    return _call(args, lambda _c: SendRequest(
        id=args.request_id or new_request_id(), target=args.target, selector=args.selector,
        args=values, author=args.author))


def cmd_evolve(args: argparse.Namespace) -> int:
    from bridge import new_request_id
    from bridge.client import _who
    from bridge.messages import EvolveRequest

    if not args.add and not args.remove:
        print("batos evolve: nothing to change: give --add and/or --remove", file=sys.stderr)
        return 2
    args.retries = 0
    find_links = [str(Path(d).resolve()) for d in args.find_links]
    return _call(args, lambda _c: EvolveRequest(
        id=new_request_id(), add=args.add, remove=args.remove, offline=args.offline,
        find_links=find_links, force=args.force, probation=args.probation, who=_who()))


def cmd_rollback(args: argparse.Namespace) -> int:
    from bridge import new_request_id
    from bridge.client import _who
    from bridge.messages import RollbackRequest

    args.retries = 0
    return _call(args, lambda _c: RollbackRequest(
        id=new_request_id(), env_id=args.env_id, force=args.force, probation=args.probation,
        who=_who()))


def cmd_status(args: argparse.Namespace) -> int:
    """The supervisor's status, plus the image's Composite Entropy Metric under ``image``
    (``genesis entropy``), or ``image: {error}`` when the image cannot answer it."""
    from bridge import new_request_id
    from bridge.messages import StatusRequest

    return _call(args, lambda _c: StatusRequest(id=new_request_id()),
                 extra=lambda client, reply: {"image": _image_entropy(client, reply, args.timeout)})


def _image_entropy(client: Any, status: Any, timeout: float) -> dict[str, Any]:
    """``genesis entropy`` through the same client, once; an error entry if it fails
    (no incarnation serving, or an image from before the CEM that does not understand it)."""
    from bridge import new_request_id
    from bridge.errors import BridgeError
    from bridge.messages import SendRequest

    state = status.result.get("state") if status.ok and isinstance(status.result, dict) else None
    if state != "serving":
        return {"error": {"type": "Unavailable",
                          "message": f"no incarnation is serving (supervisor state {state})"}}
    retries, client.retries = client.retries, 0
    try:
        reply = client.request(SendRequest(id=new_request_id(), target="genesis",
                                           selector="entropy", args=[]), timeout=timeout)
    except BridgeError as exc:  # Timeout included: the supervisor's status still prints
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}
    finally:
        client.retries = retries
    if not reply.ok:
        return {"error": reply.error.model_dump()}
    return reply.result if isinstance(reply.result, dict) else {"entropy": reply.result}


def cmd_ping(args: argparse.Namespace) -> int:
    from bridge import new_request_id
    from bridge.messages import PingRequest

    return _call(args, lambda _c: PingRequest(id=new_request_id()))
