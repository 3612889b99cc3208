"""``batos``: the entry point. Builds one argparse tree from the command modules and
dispatches to the command the arguments name.

Each module in ``COMMANDS`` registers its commands with ``add_commands(sub)``; adding a
module is adding its name there. The tree is then finished here, for every command at
once: each command's namespace gets ``command_name`` (``"keys generate"``), which
``batos.output.fail`` prints as ``batos keys generate: <Type>: <message>``; help keeps
the epilog's example lines as written. A usage error is one line in the same format
(JSON on stderr when ``--json`` is among the arguments), exit 2. An exception a command
did not expect is one error line too, exit 1; ``BATOS_DEBUG=1`` shows its traceback.

Nothing below ``batos`` is imported here: each command imports its layers when it runs
(``tests/unit/test_layering.py``); ``--version`` imports ``bridge.messages`` only when
asked.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

from .completion import parsers
from .output import EXIT_ERROR, EXIT_USAGE, fail

__all__ = ["COMMANDS", "BatosParser", "build_parser", "main", "version_line"]

#: the command modules (``batos.<name>``), in the order their commands are listed
COMMANDS = ("supervise", "client", "logs", "image", "admin", "audit", "crucible", "ui",
            "train", "inquiry", "quarantine", "completion")

EXAMPLES = """\
examples:
  batos up                          run the supervisor (home: $BATOS_HOME)
  batos send genesis printString    send one message
  batos evolve --add 'six==1.16.0'  change the image's libraries by a handover
  batos completion bash > ~/.local/share/bash-completion/completions/batos
"""


class BatosParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line in ``batos.output``'s format."""

    json_errors = False  # main() sets it when ``--json`` is among the arguments
    command_path = ""  # build_parser() sets it: "keys generate"

    def error(self, message: str) -> NoReturn:
        args = argparse.Namespace(json=self.json_errors, command_name=self.command_path)
        fail(args, "UsageError", f"{message} (see '{self.prog} --help')")
        self.exit(EXIT_USAGE)


class _Version(argparse.Action):
    """``--version``: computed when asked, so parsing imports nothing."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()


def version_line() -> str:
    """``batos 0.1.0 (protocol 1.0)``: the installed distribution's version and the wire's."""
    from importlib.metadata import PackageNotFoundError, version

    from bridge.messages import PROTOCOL

    try:
        mine = version("batos")
    except PackageNotFoundError:  # run from a checkout that was never installed
        mine = "unknown"
    return f"batos {mine} (protocol {PROTOCOL})"


def _command_modules() -> Iterator[Any]:
    for name in COMMANDS:
        yield importlib.import_module(f"{__package__}.{name}")


def build_parser() -> BatosParser:
    parser = BatosParser(prog="batos", description="a live, persistent object image",
                         epilog=EXAMPLES)
    parser.add_argument("--version", action=_Version, help="the batos and protocol versions")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _command_modules():
        module.add_commands(sub)
    parser.set_defaults(root_parser=parser)  # `batos completion` reads the tree from it
    for path, p in parsers(parser):
        p.formatter_class = argparse.RawDescriptionHelpFormatter  # the examples as written
        p.command_path = path  # type: ignore[attr-defined]
        if path:
            p.set_defaults(command_name=path)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    for _path, p in parsers(parser):
        p.json_errors = "--json" in argv  # type: ignore[attr-defined]
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        fail(args, "Interrupted", "stopped by the user (Ctrl-C)")
        return 130
    except Exception as exc:  # one line, not a traceback; BATOS_DEBUG=1 for the traceback
        if os.environ.get("BATOS_DEBUG", "") not in ("", "0"):
            raise
        message = str(exc) or repr(exc)
        return fail(args, type(exc).__name__, f"{message} (BATOS_DEBUG=1 shows where)",
                    code=EXIT_ERROR)


if __name__ == "__main__":
    sys.exit(main())

