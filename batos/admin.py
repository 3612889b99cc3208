"""Operator commands: ``batos keys ...`` (who may connect) and ``batos service install``.

Both only write files in the home folder or the unit folder and print what to do next
(``--json``: what they wrote, as one JSON object); neither talks to a running
supervisor. ``service install --dry-run`` prints the unit and where it would go,
writing nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from .home import resolve_home
from .output import add_json, emit, fail

__all__ = ["add_commands"]

HOME_HELP = "batos home (default: $BATOS_HOME or ~/.local/state/batos)"


def add_commands(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="CurveZMQ keys: who may connect beyond loopback",
                          epilog="examples:\n  batos keys generate\n  batos keys list --json")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = keys_sub.add_parser("generate", help="the server's key pair and the local CLI's, authorized",
                            epilog="example:\n  batos keys generate --home ~/batos")
    p.add_argument("--home", help=HOME_HELP)
    p.add_argument("--force", action="store_true", help="replace existing keys (clients need the new server.key)")
    add_json(p, "the key files written, as JSON")
    p.set_defaults(func=cmd_keys_generate)
    p = keys_sub.add_parser("authorize", help="let a client in by its public key file",
                            epilog="example:\n  batos keys authorize --name laptop ./client.key")
    p.add_argument("--home", help=HOME_HELP)
    p.add_argument("--name", help="name to file it under (default: from the file name)")
    p.add_argument("public_key_file", help="the client's public key (its client.key, never the _secret)")
    add_json(p, "the authorized key's path, as JSON")
    p.set_defaults(func=cmd_keys_authorize)
    p = keys_sub.add_parser("revoke", help="remove a client's key from the authorized folder",
                            epilog="example:\n  batos keys revoke laptop")
    p.add_argument("--home", help=HOME_HELP)
    p.add_argument("name", help="the name it was authorized under (see batos keys list)")
    add_json(p, "the removed key's path, as JSON")
    p.set_defaults(func=cmd_keys_revoke)
    p = keys_sub.add_parser("list", help="names of the authorized clients",
                            epilog="examples:\n  batos keys list\n  batos keys list --json")
    p.add_argument("--home", help=HOME_HELP)
    add_json(p, "the names as a JSON list")
    p.set_defaults(func=cmd_keys_list)

    service = sub.add_parser("service", help="systemd integration",
                             epilog="example:\n  batos service install --user")
    service_sub = service.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    p = service_sub.add_parser("install", help="write a systemd unit that runs 'batos up'",
                               epilog="examples:\n  batos service install --user\n  batos service install --user --dry-run")
    p.add_argument("--home", help=HOME_HELP)
    p.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user)")
    p.add_argument("--unit-dir", help="write the unit here instead of systemd's folder")
    p.add_argument("--watchdog-sec", type=int, default=30, help="systemd's WatchdogSec (default 30)")
    p.add_argument("--dry-run", action="store_true", help="print the unit and where it would go; write nothing")
    add_json(p, "the unit's path, text and the commands to enable it, as JSON")
    p.set_defaults(func=cmd_service_install)


def _error(args: argparse.Namespace, exc: Exception) -> int:
    return fail(args, type(exc).__name__, str(exc))


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    home = resolve_home(args.home)
    try:
        public, _secret = keys.generate_server_keys(home, force=args.force)
        client_public, _ = keys.generate_local_client(home, force=args.force)
    except SupervisorError as exc:
        return _error(args, exc)
    emit(args, {"server_public_key": str(public), "local_client_key": str(client_public),
                "authorized": "local"},
         lambda d: f"server public key: {d['server_public_key']} (give it to clients)\n"
                   f"local client key:  {d['local_client_key']} (authorized as 'local')")
    return 0


def cmd_keys_authorize(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    try:
        path = keys.authorize(resolve_home(args.home), args.public_key_file, name=args.name)
    except SupervisorError as exc:
        return _error(args, exc)
    emit(args, {"authorized": str(path)},
         lambda d: f"authorized {d['authorized']}; a running supervisor reads it at its next start")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    try:
        path = keys.revoke(resolve_home(args.home), args.name)
    except SupervisorError as exc:
        return _error(args, exc)
    emit(args, {"revoked": str(path)}, lambda d: f"revoked {d['revoked']}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    try:
        names = keys.list_authorized(resolve_home(args.home))
    except SupervisorError as exc:
        return _error(args, exc)
    emit(args, names, lambda names: "\n".join(names))
    return 0


def cmd_service_install(args: argparse.Namespace) -> int:
    from supervisor import service
    from supervisor.errors import SupervisorError

    home = resolve_home(args.home).expanduser().resolve()
    batos = shutil.which("batos") or str(Path(sys.argv[0]).resolve())
    unit_dir = Path(args.unit_dir) if args.unit_dir else None
    try:
        text = service.render_unit(home=home, user=args.user, exec_start=[batos, "up", "--home", str(home)],
                                   watchdog_sec=args.watchdog_sec)
        if args.dry_run:
            path = (unit_dir or service.default_unit_dir(args.user)) / "batos.service"
        else:
            path = service.install_unit(text, user=args.user, unit_dir=unit_dir)
    except SupervisorError as exc:
        return _error(args, exc)
    data = {"unit": str(path), "written": not args.dry_run, "text": text,
            "enable": service.enable_commands(args.user)}
    emit(args, data, _service_text)
    return 0


def _service_text(data: dict[str, Any]) -> str:
    if data["written"]:
        lines = [f"wrote {data['unit']}", "enable it with:"]
    else:
        lines = [f"would write {data['unit']} (--dry-run):", "", data["text"].rstrip("\n"), "",
                 "then enable it with:"]
    return "\n".join(lines + [f"  {line}" for line in data["enable"]])
