"""``batos``: the entry point. Dispatches to one module per command group."""

from __future__ import annotations

import argparse
import sys

from . import admin, audit, client, image, inquiry, supervise, train, ui
from . import crucible as crucible_cmd
from . import quarantine as quarantine_cmd

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batos", description="a live, persistent object image")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    supervise.add_commands(sub)
    client.add_commands(sub)
    image.add_commands(sub)
    admin.add_commands(sub)
    audit.add_commands(sub)
    crucible_cmd.add_commands(sub)
    ui.add_commands(sub)
    train.add_commands(sub)
    inquiry.add_commands(sub)
    quarantine_cmd.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
