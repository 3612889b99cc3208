"""``batos up``: run the supervisor in the foreground (what systemd runs).

Imports only ``supervisor`` (never ``uvm``): the supervisor process must not load the
image's code. Before anything starts it checks the configuration: the file itself
(``supervisor.config``), then ``[mind]`` and ``[inquiry]``, which only incarnations
read, with the models that read them (``batos.config_check``, run as a child process
for the reason above); a bad key or type is one error naming the table and key, exit 2.
Incarnations are confined (``[sandbox]``): where that cannot work, ``batos up`` refuses
to start with the reason (exit 1), unless the operator says ``--unconfined``, which it
then repeats as a warning at every start and in ``status``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .home import resolve_home
from .output import EXIT_ERROR, EXIT_USAGE, add_json, emit_line, fail

__all__ = ["add_commands", "config_problems"]

CHECK_TIMEOUT = 120.0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run the supervisor in the foreground",
                       epilog="examples:\n"
                              "  batos up                          # home: $BATOS_HOME or ~/.local/state/batos\n"
                              "  batos up --home ~/batos --endpoint tcp://127.0.0.1:7800")
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
    add_json(p, "the start as a JSON line on stdout; errors as JSON on stderr")
    p.set_defaults(func=cmd_up)


def config_problems(mind: dict[str, Any], inquiry: dict[str, Any]) -> list[str]:
    """``batos.config_check.problems`` of the two tables, asked of a child process (so
    this one loads none of the layers the check imports); [] when both are empty."""
    if not mind and not inquiry:
        return []
    root = Path(__file__).resolve().parents[1]  # where `batos` is, first on the child's path
    done = subprocess.run([sys.executable, "-m", "batos.config_check"], cwd=root,
                          input=json.dumps({"mind": mind, "inquiry": inquiry}),
                          capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the check of [mind] and [inquiry] failed (exit {done.returncode}): {tail}")
    return list(json.loads(done.stdout))


def cmd_up(args: argparse.Namespace) -> int:
    from supervisor.config import Home, load_config
    from supervisor.errors import ConfigError, SupervisorError
    from supervisor.incarnations import confinement_problem
    from supervisor.server import Supervisor

    try:
        home = Home.at(resolve_home(args.home))
        config = load_config(args.config, home.root, endpoint=args.endpoint)
        if args.env_mode:
            config.env.mode = args.env_mode
        if args.unconfined:
            config.sandbox.mode = "off"
        problems = config_problems(config.mind, config.inquiry)
        if problems:
            return fail(args, "ConfigError", "; ".join(problems), code=EXIT_USAGE,
                        problems=problems)
        problem = confinement_problem(config)
        if problem is not None:
            return fail(args, "ConfinementError", problem, code=EXIT_ERROR)
        if config.sandbox.mode == "off":
            print("batos up: WARNING: incarnations run UNCONFINED: image code runs with this "
                  "user's files, processes and network", file=sys.stderr, flush=True)
        emit_line(args, {"event": "starting", "home": str(home.root), "endpoint": config.endpoint,
                         "confined": config.sandbox.mode != "off"},
                  f"batos home: {home.root}\nbatos endpoint: {config.endpoint}")
        return Supervisor(home, config).run()
    except ConfigError as exc:
        return fail(args, "ConfigError", str(exc), code=EXIT_USAGE)
    except SupervisorError as exc:
        return fail(args, type(exc).__name__, str(exc))
