"""The handover log's entry format: event names, one line's shape, reading lines back.

``<home>/logs/handovers.jsonl`` holds one entry per line, keys sorted, no spaces::

    {"data":{...},"event":"phase.end","handover":"h-20250131-120000-a1b2c3",
     "prev":"<sha256 hex of the previous line>","seq":7,"ts":1738324800.5}

``seq`` counts lines from 0 across the whole file; ``prev`` is the sha256 of
the previous line's exact bytes (newline excluded, ``digest``), 64 zeros
(``ZERO_HASH``) for the first.

Events (``data`` keys by convention; readers tolerate missing ones):

    requested        kind (evolve|rollback), request (the id of the evolve/rollback
                     request that started it; absent in logs written before 1.0), who
                     (client key name or local user), add [pkg], remove [pkg], env_before
                     {id, python, packages}, force, spec_after
    phase.start      phase (one of PHASES)
    phase.end        phase, duration, then the phase's details: build: env {id, python,
                     packages}; validate: validation; drain: drained; ok=False, error
    intent.switch    old, new (incarnation ids), env_before, env_after (env ids)
    switched         old, new, in_flight_on_old
    intent.rollback  reason, to          rolled_back   reason, to
    intent.retire    old                 retired       old
    failed           phase, reason
    answered         request, ok, total (s from requested to the reply): the reply was
                     given (at the switch, or with the failure); with the entries before
                     it, what rebuilds the reply for a resend (``handover_requests``)
    completed        outcome (OUTCOMES), total, phases {phase: s}, served, in_flight,
                     drained, env_before, env_after (with versions), validation,
                     failed_phase, reason, after_restart (finished by a restarted supervisor)
    recovered        written by a restarted supervisor: found (``interrupted()``), action
    unchanged        request, kind, env {id, python, packages, ...}, message: an evolve or
                     rollback whose spec already served, so no handover ran; its
                     ``handover`` field is a ``u-<hex>`` id of its own, and readers that
                     list handovers skip it (``NOT_HANDOVERS``)

Entries are only ever added to (new events, new ``data`` keys); a reader ignores an
event it does not know, so an older log reads as before.

The modules built on this one: ``handover_log`` (the writer), ``handover_chain``
(the hash-chain verifier), ``handover_report`` (rows per handover and the
recovery decision). This one only names and reads: stdlib only, no writes;
a read error becomes ``HomeError``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import HomeError

__all__ = [
    "ANSWERED", "COMPLETED", "EVENTS", "FAILED", "INTENT_RETIRE", "INTENT_ROLLBACK",
    "INTENT_SWITCH", "NOT_HANDOVERS", "OUTCOMES", "PHASES", "PHASE_END", "PHASE_START",
    "RECOVERED", "REQUESTED", "RETIRED", "ROLLED_BACK", "SWITCHED", "UNCHANGED", "ZERO_HASH",
    "digest", "parse_entry", "read_entries", "read_lines",
]

ZERO_HASH = "0" * 64
REQUESTED, PHASE_START, PHASE_END = "requested", "phase.start", "phase.end"
INTENT_SWITCH, SWITCHED = "intent.switch", "switched"
INTENT_ROLLBACK, ROLLED_BACK = "intent.rollback", "rolled_back"
INTENT_RETIRE, RETIRED = "intent.retire", "retired"
FAILED, COMPLETED, RECOVERED = "failed", "completed", "recovered"
ANSWERED, UNCHANGED = "answered", "unchanged"
EVENTS = frozenset({REQUESTED, PHASE_START, PHASE_END, INTENT_SWITCH, SWITCHED, INTENT_ROLLBACK,
                    ROLLED_BACK, INTENT_RETIRE, RETIRED, FAILED, COMPLETED, RECOVERED, ANSWERED,
                    UNCHANGED})
#: events recorded under an id of their own that is no handover (no row, never interrupted)
NOT_HANDOVERS = frozenset({UNCHANGED})
PHASES = ("build", "incarnate", "validate", "switch", "drain", "probation", "retire")
OUTCOMES = ("completed", "failed", "rolled_back", "interrupted")
_KEYS = frozenset({"seq", "ts", "handover", "event", "data", "prev"})


def digest(line: bytes) -> str:
    """The sha256 hex of one line's exact bytes (newline excluded): the next entry's ``prev``."""
    return hashlib.sha256(line).hexdigest()


def parse_entry(line: bytes) -> dict[str, Any] | None:
    """The entry on ``line``, or None if it is not one."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or set(entry) != _KEYS or type(entry["seq"]) is not int:
        return None
    if not (isinstance(entry["data"], dict) and isinstance(entry["handover"], str)
            and isinstance(entry["event"], str) and isinstance(entry["ts"], int | float)):
        return None
    return entry


def read_lines(path: str | os.PathLike[str]) -> tuple[list[bytes], bytes]:
    """(complete lines, torn fragment after the last newline); a missing file is empty."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return [], b""
    except OSError as exc:
        raise HomeError(f"cannot read the handover log {path}: {exc.strerror or exc}") from exc
    *lines, torn = raw.split(b"\n")
    return lines, torn


def read_entries(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The valid entries, in file order (invalid lines and a torn tail are skipped: see verify)."""
    lines, _ = read_lines(path)
    return [e for e in map(parse_entry, lines) if e is not None]
