"""``python -m bridge.conformance ENDPOINT``: the suite from a shell, a table or JSON lines.

Prints one row per check as it finishes (name, spec section, pass/fail/skip, the
reason), then a summary line; with ``--json`` one JSON object per check
(``{"name", "section", "outcome", "reason", "elapsed_ms"}``) and a last line
``{"summary": {...}}``. Exit status: 0 when no check failed, 1 when one did, 2 for bad
arguments, 3 when the server did not answer a ping at all. ``--list`` prints the
checks without connecting.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence

from .context import Options
from .registry import FAIL, PASS, SKIP, Result, select
from .runner import REACHABLE, ordered, run

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "main", "parser"]

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3
MARK = {PASS: "pass", FAIL: "FAIL", SKIP: "skip"}

EPILOG = """\
examples:
  python -m bridge.conformance tcp://127.0.0.1:7719
  python -m bridge.conformance ipc:///home/me/.batos/run/fe.sock --json --only 'once-*'
  python -m bridge.conformance tcp://127.0.0.1:7719 --evolve-requirement 'greetlib==1.0' \\
      --find-links ./wheels --offline

Without --evolve-requirement the suite changes no environment: evolve and rollback are
asked only what the server must refuse before it builds anything. It does add a few
objects to the image, named conformance_<run>_<label>. With it, the suite evolves, asks
the same again ("unchanged"), and rolls back to the env it found.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridge.conformance", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check a live batos server against the protocol (docs/protocol.md).")
    p.add_argument("endpoint", nargs="?", help="the frontend, e.g. tcp://127.0.0.1:7719")
    p.add_argument("--events", metavar="EVENTS_ENDPOINT",
                   help="the events PUB address (default: the one status names)")
    p.add_argument("--json", action="store_true", help="one JSON object per check")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this check (a name or shell pattern; repeatable)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument("--evolve-requirement", metavar="REQ",
                   help="run a real evolve adding REQ, then roll it back")
    p.add_argument("--find-links", action="append", default=[], metavar="URL",
                   help="a find-links folder or URL for that evolve (repeatable)")
    p.add_argument("--offline", action="store_true", help="that evolve builds offline")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each reply (default 10)")
    p.add_argument("--handover-timeout", type=float, default=900.0, metavar="S",
                   help="seconds a real evolve or rollback may take (default 900)")
    p.add_argument("--max-frame", type=int, default=1 << 20, metavar="BYTES",
                   help="the server's max_frame (default 1048576)")
    return p


def _options(args: argparse.Namespace) -> Options:
    return Options(
        endpoint=args.endpoint, events=args.events, timeout=args.timeout,
        evolve_requirement=args.evolve_requirement, find_links=tuple(args.find_links),
        offline=args.offline, handover_timeout=args.handover_timeout,
        max_frame=args.max_frame, only=tuple(args.only))


class Table:
    """Rows printed as results come, in columns sized for every check's name and section."""

    def __init__(self, out: object = None) -> None:
        checks = ordered()
        self.name_w = max(len(c.name) for c in checks)
        self.section_w = max(len(c.section) for c in checks)
        self.width = shutil.get_terminal_size((120, 24)).columns
        self.out = out or sys.stdout

    def header(self) -> None:
        self._line("CHECK", "SECTION", "RESULT", "REASON")

    def row(self, result: Result) -> None:
        self._line(result.name, result.section, MARK[result.outcome], result.reason)

    def _line(self, name: str, section: str, mark: str, reason: str) -> None:
        head = f"{name:<{self.name_w}}  {section:<{self.section_w}}  {mark:<6}  "
        room = max(40, self.width - len(head))
        text = " ".join(reason.split())
        if len(text) > room and mark != "FAIL":  # a failure is printed whole
            text = text[: room - 3] + "..."
        print(head + text, file=self.out, flush=True)  # type: ignore[call-overload]


def _summary(results: list[Result], elapsed: float) -> dict[str, object]:
    count = {o: sum(r.outcome == o for r in results) for o in (PASS, FAIL, SKIP)}
    return {"passed": count[PASS], "failed": count[FAIL], "skipped": count[SKIP],
            "elapsed_ms": round(elapsed * 1000, 1)}


def _list(as_json: bool, only: list[str]) -> int:
    for chk in select(ordered(), only):
        if as_json:
            print(json.dumps({"name": chk.name, "section": chk.section, "summary": chk.summary}))
        else:
            print(f"{chk.name:<28} {chk.section:<28} {chk.summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        return _list(args.json, args.only)
    if not args.endpoint:
        parser().error("the endpoint is required (e.g. tcp://127.0.0.1:7719)")
    if args.only and not select(ordered(), args.only):
        parser().error(f"no check matches {args.only} (see --list)")
    table = None if args.json else Table()
    if table is not None:
        table.header()

    def show(result: Result) -> None:
        if table is not None:
            table.row(result)
        else:
            print(json.dumps(result.to_json()), flush=True)

    started = time.monotonic()
    try:
        results = run(_options(args), show)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    summary = {"endpoint": args.endpoint, **_summary(results, time.monotonic() - started)}
    if table is None:
        print(json.dumps({"summary": summary}))
    else:
        print(f"\n{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} "
              f"skipped in {summary['elapsed_ms'] / 1000:.1f}s against {args.endpoint}")
    if any(r.name == REACHABLE and r.failed for r in results):
        return EXIT_UNREACHABLE
    return EXIT_FAILED if summary["failed"] else EXIT_OK
