"""Client commands: ``batos send``, ``evolve``, ``rollback``, ``status``, ``ping``, through the bridge.

They talk to the supervisor at ``--endpoint`` (or ``$BATOS_ENDPOINT``); ``batos send``
with ``--image`` or ``--zeo`` instead runs the message against that image directly
(``batos.image``), which needs no supervisor. Each prints its human form by default
and the reply as protocol 1.0 has it (``{v, id, ok, result}``) with ``--json``; an
error prints in ``batos.output``'s one format and exits 1 when the supervisor or the
image said no, 2 for bad arguments, 3 when the supervisor cannot be reached. A request
is resent with the same id on a timeout (``--retries``): the supervisor runs an id once
and answers a resend from its record, evolve and rollback included.

``evolve`` and ``rollback`` show their handover as it runs (``batos.progress``);
``status`` is short unless ``--verbose`` or ``--json`` (``batos.status_view``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import output
from .home import resolve_home
from .image import parse_arg, send_embedded

__all__ = ["add_commands"]

EXAMPLES = {
    "send": "examples:\n  batos send genesis printString\n"
            "  batos send counter setSlot:value: n 3 --json",
    "evolve": "examples:\n  batos evolve --add 'six==1.16.0'\n"
              "  batos evolve --add 'mylib==2.0' --offline --find-links /srv/wheels --json\n"
              "  batos evolve --remove mylib --force",
    "rollback": "examples:\n  batos rollback\n  batos rollback --env 3f2a1b9c0d1e2f34 --probation 60",
    "status": "examples:\n  batos status\n  batos status --verbose\n"
              "  batos status --json | jq .result.state",
    "ping": "example:\n  batos ping --endpoint tcp://127.0.0.1:7719",
}


def _command(sub: argparse._SubParsersAction, name: str, help_: str, *,
             timeout: float = 10.0) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", help="supervisor frontend (default: $BATOS_ENDPOINT or "
                   "tcp://127.0.0.1:7719)")
    p.add_argument("--timeout", type=float, default=timeout,
                   help=f"seconds to wait for the reply per attempt (default {timeout:g})")
    p.add_argument("--retries", type=int, default=2,
                   help="resends of the same request id after a timeout (default 2)")
    output.add_json(p, "print the reply as JSON ({v, id, ok, result})")
    p.add_argument("--home", help="batos home, for CURVE keys beyond loopback (and --image/--zeo)")
    p.set_defaults(command_name=name)
    return p


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = _command(sub, "send", "send one message to an object and print the result as JSON")
    p.add_argument("--image", help="run against this image file directly (no supervisor)")
    p.add_argument("--zeo", help="run against the image served by ZEO at HOST:PORT or a socket path")
    p.add_argument("--author", default="architect", help="who is acting (recorded in method history)")
    p.add_argument("--id", dest="request_id", help="request id (default: a new uuid4); resending an "
                   "id that already committed returns its recorded reply")
    p.add_argument("target", help="uuid or registered name (genesis, traits, true, false, nil, block)")
    p.add_argument("selector", help="e.g. printString or setSlot:value: (or setSlot_value)")
    p.add_argument("args", nargs="*", help="arguments: JSON when valid JSON, else a string")
    p.set_defaults(func=cmd_send)

    p = _command(sub, "evolve", "change the incarnation's libraries by a validated handover, "
                 "showing its phases", timeout=900.0)
    p.add_argument("--add", action="append", default=[], metavar="REQ",
                   help="a requirement to add or replace, e.g. 'six==1.16.0' (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="NAME",
                   help="a package to remove (repeatable)")
    p.add_argument("--offline", action="store_true", help="build from the uv cache and --find-links only")
    p.add_argument("--find-links", action="append", default=[], metavar="DIR",
                   help="a local folder of wheels (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="hand over even if methods still import a removed package")
    _handover_options(p)
    p.set_defaults(func=cmd_evolve)

    p = _command(sub, "rollback", "hand over to a previous generation's environment, "
                 "showing its phases", timeout=900.0)
    p.add_argument("--env", dest="env_id", help="env id to return to (default: the one before)")
    p.add_argument("--force", action="store_true",
                   help="hand over even if methods import a package the target env lacks")
    _handover_options(p)
    p.set_defaults(func=cmd_rollback)

    p = _command(sub, "status", "the supervisor's state, active env, incarnations, restarts "
                 "and handover log (short; --verbose for everything)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="everything, as indented JSON, with the image's entropy")
    p.set_defaults(func=cmd_status)

    p = _command(sub, "ping", "check that the supervisor answers")
    p.set_defaults(func=cmd_ping)


def _handover_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--probation", type=float,
                   help="seconds the old incarnation stays ready (default: config)")
    p.add_argument("--id", dest="request_id", help="request id (default: a new uuid4); the same "
                   "id again answers that handover's outcome and never starts a second one")


# --- talking to the supervisor --------------------------------------------------------


def _connect(args: argparse.Namespace) -> Any:
    from bridge import Client

    return Client(args.endpoint, timeout=args.timeout, curve=_curve(args), retries=args.retries)


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


def _ask(args: argparse.Namespace, message: Any, *, timeout: float | None = None) -> Any:
    """The reply to ``message``, or the exit code after printing why there is none."""
    from bridge.errors import BridgeError

    try:
        with _connect(args) as client:
            return client.request(message, timeout=timeout)
    except BridgeError as exc:  # Timeout included
        return output.fail(args, type(exc).__name__, str(exc), code=output.EXIT_UNREACHABLE)


def _refused(args: argparse.Namespace, reply: Any) -> int:
    return output.fail(args, reply.error.type, reply.error.message, where=reply.error.where,
                       id=reply.id)


def _build(args: argparse.Namespace, make: Any) -> Any:
    """``make()``'s request, or exit code 2 when the arguments do not make a valid one."""
    from pydantic import ValidationError

    try:
        return make()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return output.fail(args, "UsageError", f"{where}: {first.get('msg')}",
                           code=output.EXIT_USAGE)


def _print_reply(args: argparse.Namespace, reply: Any, human: Any, **extra: Any) -> int:
    from .progress import wire

    if not reply.ok:
        return _refused(args, reply)
    if output.wants_json(args):
        output.emit(args, {**wire(reply), **extra})
    else:
        output.emit(args, reply.result, human)
    return 0


def _as_json(value: Any) -> str:
    return json.dumps(output.jsonable(value), indent=2 if isinstance(value, dict | list) else None)


# --- the commands ---------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    if args.image or args.zeo:
        return send_embedded(args)
    from bridge import new_request_id
    from bridge.messages import SendRequest

    values = [parse_arg(a) for a in args.args]
    message = _build(args, lambda: SendRequest(
        id=args.request_id or new_request_id(), target=args.target, selector=args.selector,
        args=values, author=args.author))
    if isinstance(message, int):
        return message
    reply = _ask(args, message)
    return reply if isinstance(reply, int) else _print_reply(args, reply, _as_json)


def cmd_evolve(args: argparse.Namespace) -> int:
    from bridge import new_request_id
    from bridge.client import _who
    from bridge.messages import EvolveRequest

    if not args.add and not args.remove:
        return output.fail(args, "UsageError", "nothing to change: give --add and/or --remove",
                           code=output.EXIT_USAGE)
    find_links = [str(Path(d).resolve()) for d in args.find_links]
    message = _build(args, lambda: EvolveRequest(
        id=args.request_id or new_request_id(), add=args.add, remove=args.remove,
        offline=args.offline, find_links=find_links, force=args.force,
        probation=args.probation, who=_who()))
    return message if isinstance(message, int) else _handover(args, message)


def cmd_rollback(args: argparse.Namespace) -> int:
    from bridge import new_request_id
    from bridge.client import _who
    from bridge.messages import RollbackRequest

    message = _build(args, lambda: RollbackRequest(
        id=args.request_id or new_request_id(), env_id=args.env_id, force=args.force,
        probation=args.probation, who=_who()))
    return message if isinstance(message, int) else _handover(args, message)


def _handover(args: argparse.Namespace, message: Any) -> int:
    """Ask ``status`` where the events are, then send ``message`` and follow its handover."""
    from bridge import new_request_id
    from bridge.messages import StatusRequest

    from . import progress

    status = _ask(args, StatusRequest(id=new_request_id()), timeout=min(args.timeout, 10.0))
    if isinstance(status, int):
        return status
    events = progress.events_address(status.result) if status.ok else None
    return progress.follow(args, message, lambda: _connect(args), events)


def cmd_status(args: argparse.Namespace) -> int:
    """Short by default; with ``--verbose`` or ``--json`` everything, plus the image's
    Composite Entropy Metric under ``image`` (``genesis entropy``), or ``image: {error}``
    when the image cannot answer it."""
    from bridge import new_request_id
    from bridge.errors import BridgeError
    from bridge.messages import StatusRequest

    from .status_view import short_status

    full = args.verbose or output.wants_json(args)
    try:
        with _connect(args) as client:
            reply = client.request(StatusRequest(id=new_request_id()))
            image = _image_entropy(client, reply, args.timeout) if full and reply.ok else None
    except BridgeError as exc:
        return output.fail(args, type(exc).__name__, str(exc), code=output.EXIT_UNREACHABLE)
    if not reply.ok:
        return _refused(args, reply)
    if output.wants_json(args):
        return _print_reply(args, reply, None, image=image)
    if args.verbose:
        print(_as_json({**reply.result, "image": image}))
        return 0
    return _print_reply(args, reply, short_status)


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

    reply = _ask(args, PingRequest(id=new_request_id()))
    if isinstance(reply, int):
        return reply

    def human(pong: Any) -> str:
        if not isinstance(pong, dict):
            return _as_json(pong)
        protocol = f" (protocol {pong['protocol']})" if pong.get("protocol") else ""
        return (f"pong: supervisor pid {pong.get('pid')}, up {pong.get('uptime', 0):.0f}s, "
                f"state {pong.get('state')}{protocol}")
    return _print_reply(args, reply, human)
