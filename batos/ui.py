"""``batos ui``: the window the image draws of itself (extra ``ui``: Kivy).

Fetches Genesis's ``display_yourself`` through the supervisor at
``--endpoint``, checks it with the crucible's static stage and runs it; falls
back to the seed window in ``ui_seed`` with a banner saying why.
``--screenshot PATH`` renders offscreen once Genesis's slots are shown, saves
a PNG (and ``PATH.json`` with the texts drawn) and exits: 0 when the data
arrived, 3 when the supervisor could not be reached; with ``--json`` it prints
``PATH.json``'s record on stdout. Errors (no Kivy: exit 2) are ``batos.output``'s
one format. Kivy is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from pathlib import Path

from .output import EXIT_UNREACHABLE, EXIT_USAGE, add_json, emit, fail

__all__ = ["add_commands"]

EXTRA = "install the UI extra: pip install -e '.[ui]'"


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="show the image's own Kivy window (needs the 'ui' extra)",
                       epilog="examples:\n  batos ui\n  batos ui --screenshot /tmp/batos.png --json")
    p.add_argument("--endpoint", help="supervisor frontend (default: $BATOS_ENDPOINT or "
                   "tcp://127.0.0.1:7719)")
    p.add_argument("--home", help="batos home, for CURVE keys beyond loopback")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    p.add_argument("--screenshot", metavar="PATH",
                   help="render offscreen, save a PNG once Genesis is shown, and exit")
    add_json(p, "with --screenshot: what was drawn (PATH.json's record) as JSON")
    p.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from bridge import default_endpoint

    from .client import _curve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from ui_seed import runner
    except ImportError as exc:
        return fail(args, "MissingExtra", f"{exc}; {EXTRA}", code=EXIT_USAGE)
    endpoint = args.endpoint or default_endpoint()
    if importlib.util.find_spec("kivy") is None:  # not imported here: Kivy reads its env once
        return fail(args, "MissingExtra", f"Kivy is not installed; {EXTRA}", code=EXIT_USAGE)
    status = runner.run(endpoint, timeout=args.timeout, curve=_curve(args),
                        screenshot=args.screenshot)
    if args.screenshot and getattr(args, "json", False):
        sidecar = Path(args.screenshot + ".json")
        if sidecar.is_file():
            emit(args, json.loads(sidecar.read_text()))
    if status == EXIT_UNREACHABLE:
        return fail(args, "Unreachable", f"the supervisor at {endpoint} did not show Genesis in "
                    "time; the screenshot has no data", code=EXIT_UNREACHABLE)
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m batos.ui``: the same command without the rest of ``batos``."""
    parser = argparse.ArgumentParser(prog="batos")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ui", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
