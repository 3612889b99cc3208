"""Evolve and rollback by request id: which handover a request started, and its reply again.

A resend of an ``evolve`` or ``rollback`` request with an id already seen never
starts a second handover: it gets the reply the first one got (the handover desk,
``supervisor.evolution``, decides; this module remembers and rebuilds). The
handover log (format: ``handover_entries``) is the record, so this holds across
supervisor restarts:

* ``requested`` carries the request id, ``answered`` the reply's ``ok`` and
  ``total``; with the envs, the validation and the phases' times already logged
  they rebuild the reply exactly (``replay``); nothing is logged twice;
* an evolve whose spec already served (``unchanged``, no handover) is one entry
  of its own, with the env it answered;
* a handover that ended without ``answered`` is answered from how it ended:
  ``failed`` (phase, reason), or a ``completed`` written by a restarted
  supervisor (``interrupted``: the supervisor stopped inside it; or
  ``completed`` after the switch, rebuilt as the switch's reply).

``RequestIndex`` maps request ids to the byte offset where their entries begin,
so a resend reads a few lines, not the log. It is built by one pass over the log
at start (``scan``) and told of each new one (``note``); it keeps the newest
``capacity`` ids; an id older than those is looked for in the log itself
(``find``, rare: it takes more than ``capacity`` handovers to get there).

Boundary: reads the log only (the writer is ``handover_log``); stdlib only; the
loop's thread uses it (not thread-safe). A read error becomes ``HomeError``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HomeError
from .handover_entries import (
    ANSWERED,
    COMPLETED,
    FAILED,
    PHASE_END,
    PHASE_START,
    REQUESTED,
    SWITCHED,
    UNCHANGED,
    parse_entry,
)

__all__ = ["CAPACITY", "Recorded", "RequestIndex", "Seen", "replay"]

#: request ids the index keeps in memory (about 200 bytes each)
CAPACITY = 10_000
#: the phases a reply at the switch reports the times of
_ANSWER_PHASES = ("build", "incarnate", "validate", "switch")
#: only lines of these events carry a request id worth indexing (cheap byte test first)
_MARKS = (b'"event":"requested"', b'"event":"unchanged"')


@dataclass(frozen=True)
class Seen:
    """Where the record of one request begins."""

    request: str
    kind: str
    handover: str
    offset: int


@dataclass(frozen=True)
class Recorded:
    """A reply as first given: ``ok`` and the body the desk turns into the reply
    (``desk.Desk.handover_answer``: the result, or ``HandoverFailed`` from the
    failure's ``handover``, ``phase`` and ``reason``)."""

    kind: str
    ok: bool
    body: dict[str, Any]


def _read_error(path: Path, exc: OSError) -> HomeError:
    return HomeError(f"cannot read the handover log {path}: {exc.strerror or exc}")


def _request_lines(path: Path, stop: int | None = None) -> Iterator[Seen]:
    """Every recorded request in file order (lines starting before byte ``stop``)."""
    try:
        with path.open("rb") as f:
            offset = 0
            for line in f:
                if (stop is not None and offset >= stop) or not line.endswith(b"\n"):
                    return  # far enough, or a torn fragment (no entry)
                if any(mark in line for mark in _MARKS):
                    entry = parse_entry(line[:-1])
                    request = entry["data"].get("request") if entry else None
                    if entry and isinstance(request, str) and request:
                        kind = str(entry["data"].get("kind") or "evolve")
                        yield Seen(request, kind, entry["handover"], offset)
                offset += len(line)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _read_error(path, exc) from exc


def _entries_of(path: Path, seen: Seen) -> list[dict[str, Any]]:
    """The entries of ``seen``'s handover from its offset until its ``completed`` (or the end)."""
    found: list[dict[str, Any]] = []
    try:
        with path.open("rb") as f:
            f.seek(seen.offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn fragment
                entry = parse_entry(line[:-1])
                if entry is None or entry["handover"] != seen.handover:
                    continue
                found.append(entry)
                if entry["event"] in (COMPLETED, UNCHANGED):
                    break
    except OSError as exc:
        raise _read_error(path, exc) from exc
    return found


def replay(kind: str, entries: list[dict[str, Any]]) -> Recorded:
    """The reply one request got, from its handover's entries (see the module docstring)."""
    if not entries:
        raise ValueError("no entries to rebuild a reply from")
    hid = entries[0]["handover"]
    first: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    phase = None
    for e in entries:
        first.setdefault(e["event"], e)
        if e["event"] in (PHASE_START, PHASE_END):
            phase = e["data"].get("phase")
        if e["event"] == PHASE_END:
            ends.setdefault(str(e["data"].get("phase")), e["data"])
    if UNCHANGED in first:
        data = first[UNCHANGED]["data"]
        return Recorded(kind, True, {"outcome": "unchanged", "env": data.get("env"),
                                     "message": data.get("message")})
    answered = first.get(ANSWERED, {}).get("data", {})
    if answered.get("ok") is True or (not answered and SWITCHED in first):
        total = answered.get("total")
        if total is None:  # the supervisor died between the switch and its answer
            total = round(first[SWITCHED]["ts"] - entries[0]["ts"], 4)
        return Recorded(kind, True, {
            "handover": hid, "outcome": "switched", "phase": "switch",
            "env_before": first.get(REQUESTED, {}).get("data", {}).get("env_before"),
            "env_after": ends.get("build", {}).get("env"),
            "timings": {p: ends[p].get("duration") for p in _ANSWER_PHASES if p in ends},
            "validation": ends.get("validate", {}).get("validation"),
            "total": total,
        })
    if FAILED in first:
        data = first[FAILED]["data"]
        return Recorded(kind, False, {"handover": hid, "phase": data.get("phase"),
                                      "reason": data.get("reason")})
    done = first.get(COMPLETED, {}).get("data")
    if done is not None:
        why = done.get("reason") or done.get("outcome")
        return Recorded(kind, False, {
            "handover": hid, "phase": done.get("failed_phase") or phase or "build",
            "reason": f"interrupted: the supervisor stopped during the handover ({why})"})
    return Recorded(kind, False, {"handover": hid, "phase": phase or "build",
                                  "reason": "the handover log does not say how it ended"})


class RequestIndex:
    """Request id -> where its record begins in the log, for the newest ``capacity`` ids."""

    def __init__(self, path: str | os.PathLike[str], *, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("the request index needs a capacity of at least 1")
        self.path = Path(path)
        self.capacity = capacity
        self._seen: OrderedDict[str, Seen] = OrderedDict()
        #: ids pushed out of memory: a miss must then ask the log
        self.evicted = 0

    @classmethod
    def scan(cls, path: str | os.PathLike[str], *, capacity: int = CAPACITY) -> RequestIndex:
        """The index of every request the log records (one pass over it)."""
        index = cls(path, capacity=capacity)
        for seen in _request_lines(index.path):
            index._keep(seen)
        return index

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, request: str, kind: str, handover: str, offset: int) -> None:
        """A request whose record was just written at byte ``offset``."""
        self._keep(Seen(request, kind, handover, offset))

    def _keep(self, seen: Seen) -> None:
        self._seen.pop(seen.request, None)
        self._seen[seen.request] = seen
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
            self.evicted += 1

    def find(self, request: str) -> Seen | None:
        """Where ``request`` was recorded; None: never seen."""
        seen = self._seen.get(request)
        if seen is not None or not self.evicted:
            return seen
        oldest = next(iter(self._seen.values())).offset
        for older in _request_lines(self.path, stop=oldest):
            if older.request == request:
                seen = older  # the last record of that id wins, as in memory
        return seen

    def recorded(self, seen: Seen) -> Recorded:
        """The reply ``seen``'s request got, rebuilt from the log."""
        entries = _entries_of(self.path, seen)
        if not entries:
            raise HomeError(f"the handover log {self.path} has no entries at byte {seen.offset} "
                            f"for request {seen.request!r} (handover {seen.handover})")
        return replay(seen.kind, entries)
