"""``batos up``: run the supervisor in the foreground (what systemd runs).

Imports only ``supervisor`` (never ``uvm``): the supervisor process must not
load the image's code. Incarnations are confined (``[sandbox]``): where that cannot
work, ``batos up`` refuses to start with the reason, unless the operator says
``--unconfined``, which it then repeats as a warning at every start and in ``status``.
"""

from __future__ import annotations

import argparse
import sys

from .home import resolve_home

__all__ = ["add_commands"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the supervisor in the foreground")
    p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")
    p.add_argument("--config", help="TOML config file (default: <home>/config.toml if present)")
    p.add_argument("--endpoint", help="client frontend address (default: $BATOS_ENDPOINT or "
                   "tcp://127.0.0.1:7719)")
    p.add_argument("--env-mode", choices=["uv", "current"],
                   help="'uv' builds the incarnation's env with uv (default); 'current' runs it "
                   "with this interpreter")
    p.add_argument("--unconfined", action="store_true",
                   help="run incarnations WITHOUT the OS sandbox and process lock ([sandbox] "
                   "mode = 'off'): image code gets this user's files, processes and network")
    p.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from supervisor.config import Home, load_config
    from supervisor.errors import SupervisorError
    from supervisor.incarnations import confinement_problem
    from supervisor.server import Supervisor

    try:
        home = Home.at(resolve_home(args.home))
        config = load_config(args.config, home.root, endpoint=args.endpoint)
        if args.env_mode:
            config.env.mode = args.env_mode
        if args.unconfined:
            config.sandbox.mode = "off"
        problem = confinement_problem(config)
        if problem is not None:
            print(f"batos up: {problem}", file=sys.stderr)
            return 1
        if config.sandbox.mode == "off":
            print("batos up: WARNING: incarnations run UNCONFINED: image code runs with this "
                  "user's files, processes and network", file=sys.stderr, flush=True)
        print(f"batos home: {home.root}", file=sys.stderr, flush=True)
        print(f"batos endpoint: {config.endpoint}", file=sys.stderr, flush=True)
        return Supervisor(home, config).run()
    except SupervisorError as exc:
        print(f"batos up: {exc}", file=sys.stderr)
        return 1
