"""``batos logs``: the supervisor's JSON log, readable, and followed as it grows.

The supervisor writes one JSON object per line to ``<home>/logs/supervisor.log``
(``supervisor.logs``: ``ts``, ``level``, ``logger``, ``msg``, then the record's own
fields; rotated at 10 MB to ``supervisor.log.1`` ... ``.5``). ``batos logs`` prints the
last ``-n`` lines (reaching into the rotated files when the current one holds fewer)
as ``time level logger message key=value ...`` with a traceback indented below, or,
with ``--json``, each line as written (a line that is not JSON as ``{"unparsed":
line}``). ``--follow`` then prints lines as they are appended, across a rotation (the
rest of the old file is read before the new one), until Ctrl-C, which exits 0.

Reads files only: works with the supervisor stopped, and never imports it at module
level (the command line loads a layer only when one of its commands runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from . import output
from .home import resolve_home

__all__ = ["LogTail", "add_commands", "follow", "format_record", "last_lines", "log_path"]

FIXED = ("ts", "level", "logger", "msg", "exc", "stack")
POLL_SECONDS = 0.2
MAX_BACKUPS = 5
EXAMPLE = ("examples:\n  batos logs                  # the last 20 lines\n"
           "  batos logs -n 100 --follow  # then every new line, until Ctrl-C\n"
           "  batos logs --json | jq 'select(.level == \"ERROR\")'")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="the supervisor's log: the last lines, or --follow it",
                       description="the supervisor's JSON log (<home>/logs/supervisor.log)",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")
    p.add_argument("-n", "--lines", type=_count, default=20, metavar="N",
                   help="how many of the last lines to print (default 20)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing lines as they are appended, until Ctrl-C")
    output.add_json(p, "print each line as the JSON object the supervisor wrote")
    p.set_defaults(func=cmd_logs, command_name="logs")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def log_path(home: str | None) -> Path:
    """``<home>/logs/supervisor.log``, where ``batos up --home`` writes it."""
    from supervisor.config import Home
    from supervisor.logs import LOG_FILE

    return Home.at(resolve_home(home)).logs / LOG_FILE


def cmd_logs(args: argparse.Namespace) -> int:
    path = log_path(args.home)
    show = _printer(args)
    if not path.exists() and not args.follow:
        return output.fail(args, "NoLog", f"no supervisor log at {path}: has `batos up` run "
                           "with this home?")
    tail = LogTail(path)  # from the end as it is now: no line twice, none lost
    try:
        if tail.position is None:
            if not output.wants_json(args):
                print(f"batos logs: waiting for {path} to appear", file=sys.stderr, flush=True)
        else:
            for line in last_lines(path, args.lines, end=tail.position):
                show(line)
        if args.follow:
            follow(tail, show, threading.Event())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        return output.fail(args, "NoLog", f"cannot read {path}: {exc.strerror or exc}")
    finally:
        tail.close()
    return 0


def _printer(args: argparse.Namespace) -> Callable[[str], None]:
    raw = output.wants_json(args)

    def show(line: str) -> None:
        if raw:
            print(line if _parses(line) else json.dumps({"unparsed": line}), flush=True)
        else:
            print(format_record(line), flush=True)
    return show


def _parses(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def format_record(line: str) -> str:
    """One log line as ``time level logger message key=value ...`` (a traceback below)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    when = str(record.get("ts", "")).replace("T", " ")
    extras = " ".join(f"{k}={_value(v)}" for k, v in record.items() if k not in FIXED)
    text = (f"{when}  {record.get('level', '?'):<7} {record.get('logger', '?')}: "
            f"{record.get('msg', '')}" + (f"  {extras}" if extras else ""))
    for key in ("exc", "stack"):
        if record.get(key):
            text += "\n" + "\n".join("    " + part for part in str(record[key]).splitlines())
    return text


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, str) and (not text or " " in text or "=" in text):
        text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


# --- reading ----------------------------------------------------------------------------


def _backups(path: Path) -> Iterator[Path]:
    for index in range(1, MAX_BACKUPS + 1):
        backup = path.with_name(f"{path.name}.{index}")
        if not backup.exists():
            return
        yield backup


def last_lines(path: Path, n: int, *, end: int | None = None) -> list[str]:
    """The last ``n`` complete lines of the log (of ``path`` up to byte ``end``), oldest
    first, from the rotated files too."""
    if n <= 0:
        return []
    lines: list[str] = []
    for source in (path, *_backups(path)):
        lines = _tail(source, n - len(lines), end=end if source == path else None) + lines
        if len(lines) >= n:
            break
    return lines[-n:]


def _tail(path: Path, n: int, *, end: int | None = None, block: int = 64 * 1024) -> list[str]:
    """The last ``n`` non-empty lines of one file (up to byte ``end``), read backwards."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        end = size if end is None else min(end, size)
        data = b""
        while end > 0 and data.count(b"\n") <= n:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
    lines = [line.decode("utf-8", "replace") for line in data.splitlines() if line.strip()]
    return lines[-n:]


class LogTail:
    """Reads what is appended to ``path`` after ``open``; follows a rotation (the old
    file's rest first, then the new file from its start). Not thread-safe."""

    def __init__(self, path: Path, *, from_end: bool = True) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._ino: int | None = None
        self._partial = b""
        self._open(at_end=from_end)

    def _open(self, *, at_end: bool) -> None:
        try:
            handle = self.path.open("rb")
        except OSError:
            return  # not there yet (or rotated away this instant): try again next time
        self._file, self._ino = handle, os.fstat(handle.fileno()).st_ino
        if at_end:
            handle.seek(0, os.SEEK_END)

    @property
    def position(self) -> int | None:
        """Where the next read starts in the open file; None while there is none."""
        return None if self._file is None else self._file.tell()

    def lines(self) -> list[str]:
        """The complete lines appended since the last call."""
        if self._file is None:
            self._open(at_end=False)
            if self._file is None:
                return []
        data = self._partial + self._file.read()
        try:
            current = os.stat(self.path)
        except OSError:
            current = None
        if current is not None and (current.st_ino != self._ino
                                    or current.st_size < self._file.tell()):
            self.close()  # rotated or truncated: what the old one had is read, now the new
            self._open(at_end=False)
            if self._file is not None:
                data += self._file.read()
        head, sep, self._partial = data.rpartition(b"\n")
        if not sep:
            head, self._partial = b"", data
        return [line.decode("utf-8", "replace") for line in head.split(b"\n") if line.strip()]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def follow(tail: LogTail, show: Callable[[str], None], stop: threading.Event, *,
           interval: float = POLL_SECONDS) -> None:
    """Call ``show`` with each line appended to ``tail``'s file until ``stop`` is set."""
    while not stop.is_set():
        lines = tail.lines()
        for line in lines:
            show(line)
        if not lines:
            stop.wait(interval)
