"""``batos handovers``: the audit of handovers (``evolve``), read from the log file.

It reads ``<home>/logs/handovers.jsonl`` directly and talks to no one, so it
works with the supervisor stopped. One row per handover: when (UTC), what
changed (``+pkg -pkg``), outcome, total and per-phase durations, requests
served during it. ``--verify`` checks the hash chain and exits 1 naming the
first entry edited, removed or reordered; ``--anchor SEQ:HASH`` (a head printed
earlier by ``--verify``) extends the check to the last entries. ``--json``
prints ``supervisor.handover_report.report``: the same data the UI gets over the
bridge (with ``warning`` when the chain is broken and ``--verify`` was not asked).
An unreadable log is one error line (``batos.output``), exit 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from .home import resolve_home
from .output import add_json, emit, fail

__all__ = ["add_commands", "cmd_handovers", "format_duration", "format_table"]

_SHORT = {"incarnate": "inc", "validate": "val", "switch": "sw", "probation": "prob", "retire": "ret"}


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("handovers", help="the audit of handovers: what changed, when, how it went",
                       epilog="examples:\n  batos handovers --last 5\n  batos handovers --verify\n"
                              "  batos handovers --anchor 41:3f2a1b9c0d1e --json")
    p.add_argument("--home", help="batos home (default: $BATOS_HOME or ~/.local/state/batos)")
    p.add_argument("--verify", action="store_true", help="check the hash chain; exit 1 if broken")
    add_json(p, "rows (and the chain check) as JSON")
    p.add_argument("--last", type=_positive, metavar="N", help="only the newest N handovers")
    p.add_argument("--anchor", type=_anchor, metavar="SEQ:HASH",
                   help="a head published earlier (from --verify); implies --verify")
    p.set_defaults(func=cmd_handovers)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return int(text)


def _anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    try:
        int(digest, 16)
        if len(digest) < 12:
            raise ValueError
        return int(seq), digest.lower()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SEQ:HASH (12+ hex digits), not {text!r}") from None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _outcome(row: dict[str, Any]) -> str:
    text = row["outcome"]
    if row.get("failed_phase") and text in ("failed", "rolled_back"):
        text += f" in {row['failed_phase']}"
    return text + (" (after restart)" if row.get("after_restart") else "")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The human table; a row with a reason gets it on an indented line below."""
    header = ("WHEN (UTC)", "HANDOVER", "CHANGE", "OUTCOME", "TOTAL", "PHASES", "SERVED")
    cells = []
    for row in rows:
        when = dt.datetime.fromtimestamp(row["started"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        change = " ".join([f"+{p}" for p in row["add"]] + [f"-{p}" for p in row["remove"]])
        if row.get("kind", "evolve") != "evolve":
            change = f"({row['kind']}) {change}".rstrip()
        phases = " ".join(f"{_SHORT.get(k, k)}:{format_duration(v)}" for k, v in row["phases"].items())
        served = "-" if row["served"] is None else str(row["served"])
        cells.append((when, row["handover"], change or "-", _outcome(row), format_duration(row["total"]),
                      phases or "-", served))
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
    lines = []
    for n, line in enumerate([header, *cells]):
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        reason = rows[n - 1].get("reason") if n else None
        if reason:
            lines.append(f"    why: {reason}")
    return "\n".join(lines)


def _chain_line(result: dict[str, Any]) -> str:
    if not result["ok"]:
        return f"chain BROKEN at {result['reason']}"
    if not result["entries"]:
        return "chain ok: 0 entries"
    text = f"chain ok: {result['entries']} entries, head {result['head_seq']} {result['head_hash'][:12]}"
    if result["torn"]:
        text += " (and a torn last fragment: an append that never returned; removed at the next start)"
    return text


def cmd_handovers(args: argparse.Namespace) -> int:
    from supervisor.config import Home
    from supervisor.errors import SupervisorError
    from supervisor.handover_log import LOG_FILE
    from supervisor.handover_report import report

    path = Home.at(resolve_home(args.home)).logs / LOG_FILE
    check = args.verify or args.anchor is not None
    try:
        data = report(path, last=args.last, check=True, anchor=args.anchor)
    except SupervisorError as exc:
        return fail(args, type(exc).__name__, str(exc))
    chain = data["verify"]
    if not check:
        data["verify"] = None
    warning = None
    if not chain["ok"] and not check:
        warning = (f"the handover log's chain is broken ({chain['reason']}); "
                   "see batos handovers --verify")
        if args.json:
            data["warning"] = warning
    emit(args, data, lambda d: "\n".join(
        [format_table(d["handovers"]) if d["handovers"] else "no handovers yet"]
        + ([_chain_line(chain)] if check else [])))
    if warning and not args.json:
        print(f"batos handovers: warning: {warning}", file=sys.stderr)
    return 1 if check and not chain["ok"] else 0
