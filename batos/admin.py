"""Operator commands: ``batos keys ...`` (who may connect) and ``batos service install``.

Both only write files in the home folder or the unit folder and print what
to do next; neither talks to a running supervisor.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .home import resolve_home

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="CurveZMQ keys: who may connect beyond loopback")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = keys_sub.add_parser("generate", help="the server's key pair and the local CLI's, authorized")
    p.add_argument("--home")
    p.add_argument("--force", action="store_true", help="replace existing keys (clients need the new server.key)")
    p.set_defaults(func=cmd_keys_generate)
    p = keys_sub.add_parser("authorize", help="let a client in by its public key file")
    p.add_argument("--home")
    p.add_argument("--name", help="name to file it under (default: from the file name)")
    p.add_argument("public_key_file")
    p.set_defaults(func=cmd_keys_authorize)
    p = keys_sub.add_parser("revoke", help="remove a client's key from the authorized folder")
    p.add_argument("--home")
    p.add_argument("name")
    p.set_defaults(func=cmd_keys_revoke)
    p = keys_sub.add_parser("list", help="names of the authorized clients")
    p.add_argument("--home")
    p.set_defaults(func=cmd_keys_list)

    service = sub.add_parser("service", help="systemd integration")
    service_sub = service.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    p = service_sub.add_parser("install", help="write a systemd unit that runs 'batos up'")
    p.add_argument("--home")
    p.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user)")
    p.add_argument("--unit-dir", help="write the unit here instead of systemd's folder")
    p.add_argument("--watchdog-sec", type=int, default=30)
    p.set_defaults(func=cmd_service_install)


def _fail(exc: Exception) -> int:
    print(f"batos: {exc}", file=sys.stderr)
    return 1


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    home = resolve_home(args.home)
    try:
        public, _secret = keys.generate_server_keys(home, force=args.force)
        client_public, _ = keys.generate_local_client(home, force=args.force)
    except SupervisorError as exc:
        return _fail(exc)
    print(f"server public key: {public} (give it to clients)")
    print(f"local client key:  {client_public} (authorized as 'local')")
    return 0


def cmd_keys_authorize(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    try:
        path = keys.authorize(resolve_home(args.home), args.public_key_file, name=args.name)
    except SupervisorError as exc:
        return _fail(exc)
    print(f"authorized {path}; a running supervisor reads it at its next start")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from supervisor import keys
    from supervisor.errors import SupervisorError

    try:
        path = keys.revoke(resolve_home(args.home), args.name)
    except SupervisorError as exc:
        return _fail(exc)
    print(f"revoked {path}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from supervisor import keys

    for name in keys.list_authorized(resolve_home(args.home)):
        print(name)
    return 0


def cmd_service_install(args: argparse.Namespace) -> int:
    from supervisor import service
    from supervisor.errors import SupervisorError

    home = resolve_home(args.home).expanduser().resolve()
    batos = shutil.which("batos") or str(Path(sys.argv[0]).resolve())
    try:
        text = service.render_unit(home=home, user=args.user, exec_start=[batos, "up", "--home", str(home)],
                                   watchdog_sec=args.watchdog_sec)
        path = service.install_unit(text, user=args.user,
                                    unit_dir=Path(args.unit_dir) if args.unit_dir else None)
    except SupervisorError as exc:
        return _fail(exc)
    print(f"wrote {path}")
    print("enable it with:")
    for line in service.enable_commands(args.user):
        print(f"  {line}")
    return 0
