"""What every command prints: one result format, one error format.

A result goes to stdout: with ``--json`` as JSON (one object, or one object per line
for a stream), otherwise as the command's human text. An error goes to stderr and
the command exits non-zero: with ``--json`` as one line ``{"error": {"type",
"message", ...}}``, otherwise as one readable line ``batos <command>: <Type>: <message>``.
Exit codes: 0 done, 1 the request or the image said no, 2 bad arguments or
configuration, 3 the supervisor (or the storage) could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_ERROR", "EXIT_UNREACHABLE", "EXIT_USAGE", "add_json", "emit", "emit_line",
           "fail", "jsonable", "wants_json"]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def add_json(p: argparse.ArgumentParser, what: str = "print the result as JSON") -> None:
    """The ``--json`` option every command has."""
    p.add_argument("--json", action="store_true", help=what)


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold made printable (bytes as text, sets as lists,
    anything else by ``str``)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str] | None = None) -> None:
    """The command's result on stdout: JSON with ``--json`` (or when there is no human
    form), else ``human(data)``."""
    if wants_json(args) or human is None:
        indent = None if wants_json(args) else 2
        print(json.dumps(jsonable(data), indent=indent if isinstance(data, dict | list) else None))
    else:
        text = human(data)
        if text:
            print(text)


def emit_line(args: argparse.Namespace, data: dict[str, Any], human: str | None) -> None:
    """One item of a stream: a JSON line on stdout with ``--json``, else ``human`` (when
    given) on stderr, so stdout keeps only the result."""
    if wants_json(args):
        print(json.dumps(jsonable(data)), flush=True)
    elif human:
        print(human, file=sys.stderr, flush=True)


def fail(args: argparse.Namespace | None, type_: str, message: str, *, code: int = EXIT_ERROR,
         **extra: Any) -> int:
    """Print one error in the one format and answer the exit code to return."""
    if args is not None and wants_json(args):
        print(json.dumps({"error": jsonable({"type": type_, "message": message, **extra})}),
              file=sys.stderr)
    else:
        command = getattr(args, "command_name", None) if args is not None else None
        where = f"batos {command}" if command else "batos"
        print(f"{where}: {type_}: {message}", file=sys.stderr)
    return code
