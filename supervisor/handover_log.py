"""The handover audit log: append-only JSON lines, hash-chained, fsynced per entry.

``<home>/logs/handovers.jsonl`` holds one entry per line, keys sorted, no spaces::

    {"data":{...},"event":"phase.end","handover":"h-20250131-120000-a1b2c3",
     "prev":"<sha256 hex of the previous line>","seq":7,"ts":1738324800.5}

``seq`` counts lines from 0 across the whole file; ``prev`` is the sha256 of
the previous line's exact bytes (newline excluded), 64 zeros for the first.
``HandoverLog.append`` returns only after ``os.fsync``: that is the durability
point. The handover writes an ``intent.*`` entry before each irreversible step
and the outcome after it, so after a crash at any point the log alone tells
what state was reached.

Events (``data`` keys by convention; readers tolerate missing ones):

    requested        kind (evolve|rollback), who (client key name or local user),
                     add [pkg], remove [pkg], env_before {id, python, packages}
    phase.start      phase (one of PHASES)
    phase.end        phase, duration, then the phase's details: build: env {id, python,
                     packages}; validate: validation; drain: drained; ok=False, error
    intent.switch    old, new (incarnation ids), env_before, env_after (env ids)
    switched         old, new, in_flight_on_old
    intent.rollback  reason, to          rolled_back   reason, to
    intent.retire    old                 retired       old
    failed           phase, reason
    completed        outcome (OUTCOMES), total, phases {phase: s}, served, in_flight,
                     drained, env_before, env_after (with versions), validation,
                     failed_phase, reason, after_restart (finished by a restarted supervisor)
    recovered        written by a restarted supervisor: found (``interrupted()``), action

Recovery (``interrupted``) looks at the last handover only; if it has no
``completed`` entry the supervisor died inside it. Rules, first match wins:

    intent.rollback or rolled_back     -> revert: a rollback had been decided
    failed (phase other than retire)   -> revert: the new env did not prove itself
    no intent.switch                   -> revert: the old env was active; the candidate
                                          died with the supervisor
    intent.switch, no switched         -> revert: the switch is one in-memory assignment in
                                          the dead process; both envs passed validation on
                                          this image, so reverting is safe
    switched (retired or not)          -> finish: the new env passed validation and was
                                          serving; keep it, write completed (after_restart)

Recovery is idempotent: a supervisor that dies while recovering decides the
same again, since ``recovered`` alone changes nothing; ``completed`` closes it.

Integrity limit: an edit to line k is caught by line k+1's ``prev``, so the
last entry is protected only by an external anchor: publish ``head()`` (e.g.
in the supervisor's status) and pass it to ``verify(path, anchor=...)``.
Anyone able to rewrite the whole file can re-chain it; the anchor catches that.

``report`` is what ``batos handovers --json`` prints and the UI gets over the bridge.

Boundary: stdlib only; one writer process (the supervisor, whose home lock
keeps a second one off), thread-safe within it. ``append`` blocks for one
fsync (milliseconds on an SSD); a handover writes a few dozen entries, so
calling it from the supervisor's loop is acceptable. Readers (``verify``,
``summarize``, ``interrupted``) only read, so the CLI uses them with the
supervisor stopped. Write errors become ``HomeError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import HomeError
from .files import fsync_dir

__all__ = [
    "COMPLETED", "EVENTS", "FAILED", "INTENT_RETIRE", "INTENT_ROLLBACK", "INTENT_SWITCH",
    "LOG_FILE", "OUTCOMES", "PHASES", "PHASE_END", "PHASE_START", "RECOVERED", "REQUESTED",
    "RETIRED", "ROLLED_BACK", "SWITCHED", "ZERO_HASH", "HandoverLog", "VerifyResult", "head",
    "interrupted", "new_handover_id", "read_entries", "report", "summarize", "verify",
]

log = logging.getLogger("batos.supervisor.handovers")

LOG_FILE = "handovers.jsonl"
ZERO_HASH = "0" * 64
REQUESTED, PHASE_START, PHASE_END = "requested", "phase.start", "phase.end"
INTENT_SWITCH, SWITCHED = "intent.switch", "switched"
INTENT_ROLLBACK, ROLLED_BACK = "intent.rollback", "rolled_back"
INTENT_RETIRE, RETIRED = "intent.retire", "retired"
FAILED, COMPLETED, RECOVERED = "failed", "completed", "recovered"
EVENTS = frozenset({REQUESTED, PHASE_START, PHASE_END, INTENT_SWITCH, SWITCHED, INTENT_ROLLBACK,
                    ROLLED_BACK, INTENT_RETIRE, RETIRED, FAILED, COMPLETED, RECOVERED})
PHASES = ("build", "incarnate", "validate", "switch", "drain", "probation", "retire")
OUTCOMES = ("completed", "failed", "rolled_back", "interrupted")
_KEYS = frozenset({"seq", "ts", "handover", "event", "data", "prev"})


def new_handover_id() -> str:
    """A sortable, unique id: ``h-<UTC yyyymmdd-hhmmss>-<6 hex>``."""
    return f"h-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _plain(value: Any) -> Any:
    """``value`` as strict JSON data; what JSON cannot hold becomes a string, never an error."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if callable(getattr(value, "model_dump", None)):  # pydantic, without importing it
        return _plain(value.model_dump(mode="json"))
    return repr(value)


def _parse(line: bytes) -> dict[str, Any] | None:
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


class HandoverLog:
    """The writer. Opening reads the tail to continue the chain and repairs a torn last line."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self._error("open", exc) from exc
        done = False
        try:
            if created:
                fsync_dir(self.path.parent)
            self._seq, self._prev, self._size = self._read_tail(fd)
            done = True
        except OSError as exc:
            raise self._error("open", exc) from exc
        finally:
            if not done:
                os.close(fd)
        self._fd: int | None = fd

    def _error(self, doing: str, exc: OSError) -> HomeError:
        return HomeError(f"cannot {doing} the handover log {self.path}: {exc.strerror or exc}")

    def _read_tail(self, fd: int) -> tuple[int, str, int]:
        size = os.fstat(fd).st_size
        pos, buf = size, b""
        while pos > 0:  # back from the end until the last complete line is whole
            step = min(65536, pos)
            pos -= step
            buf = os.pread(fd, step, pos) + buf
            end = buf.rfind(b"\n")
            if end != -1 and (pos == 0 or buf.rfind(b"\n", 0, end) != -1):
                break
        end = buf.rfind(b"\n")
        torn = buf[end + 1:]
        if torn:  # one write puts the newline last: no newline means append never returned
            copy = self.path.with_name(f"{self.path.name}.torn-{self._clock():.6f}")
            copy.write_bytes(torn)
            with open(copy, "rb") as f:
                os.fsync(f.fileno())
            fsync_dir(self.path.parent)
            size -= len(torn)
            os.ftruncate(fd, size)
            os.fsync(fd)
            log.warning("handover log: removed a torn last line (%d bytes, kept in %s)",
                        len(torn), copy, extra={"path": str(self.path)})
        if end == -1:
            return 0, ZERO_HASH, size
        last = buf[buf.rfind(b"\n", 0, end) + 1:end]
        entry = _parse(last)
        if entry is None:  # newline-terminated but not an entry: verify() reports it; never erased
            log.warning("handover log: the last line is not a valid entry; see batos handovers "
                        "--verify", extra={"path": str(self.path)})
            seq = len(_read_lines(self.path)[0])
        else:
            seq = entry["seq"] + 1
        return seq, _digest(last), size

    @property
    def head(self) -> tuple[int, str]:
        """(seq, sha256) of the last entry; (-1, ZERO_HASH) when empty. Publish it as an anchor."""
        with self._lock:
            return self._seq - 1, self._prev

    def append(self, handover: str, event: str, **data: Any) -> dict[str, Any]:
        """Write one entry and fsync it; return the entry as written. Raises HomeError if not durable."""
        if event not in EVENTS:
            raise ValueError(f"unknown handover event {event!r}; use one of {sorted(EVENTS)}")
        if event in (PHASE_START, PHASE_END) and data.get("phase") not in PHASES:
            raise ValueError(f"{event} needs phase= one of {PHASES}, not {data.get('phase')!r}")
        if not isinstance(handover, str) or not handover:
            raise ValueError("a handover id is a non-empty string")
        with self._lock:
            if self._fd is None:
                raise HomeError(f"the handover log {self.path} is closed")
            entry = {"seq": self._seq, "ts": self._clock(), "handover": handover, "event": event,
                     "data": _plain(data), "prev": self._prev}
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
            try:
                _write_all(self._fd, line + b"\n")
                os.fsync(self._fd)
            except OSError as exc:
                self._undo()
                raise self._error("write", exc) from exc
            self._seq, self._prev = self._seq + 1, _digest(line)
            self._size += len(line) + 1
            return entry

    def _undo(self) -> None:
        """Cut a failed append back off, so the next one does not follow a torn line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError:  # state unknown: refuse further appends; reopening re-reads the tail
            log.exception("handover log: cannot undo a failed append; closing it")
            os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def phase(self, handover: str, name: str) -> Iterator[dict[str, Any]]:
        """``phase.start``, then ``phase.end`` with duration, ok and the details the body added."""
        self.append(handover, PHASE_START, phase=name)
        details: dict[str, Any] = {}
        started = time.monotonic()
        try:
            yield details
        except Exception as exc:
            self.append(handover, PHASE_END, **{**details, "phase": name, "ok": False,
                        "duration": time.monotonic() - started, "error": f"{type(exc).__name__}: {exc}"})
            raise
        self.append(handover, PHASE_END, **{**details, "phase": name, "ok": True,
                    "duration": time.monotonic() - started})

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> HandoverLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_lines(path: str | os.PathLike[str]) -> tuple[list[bytes], bytes]:
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
    lines, _ = _read_lines(path)
    return [e for e in map(_parse, lines) if e is not None]


def head(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(seq, sha256 hex) of the last complete line; (-1, ZERO_HASH) for an empty or missing log."""
    lines, _ = _read_lines(path)
    if not lines:
        return -1, ZERO_HASH
    entry = _parse(lines[-1])
    return (entry["seq"] if entry else len(lines) - 1), _digest(lines[-1])


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    first_bad: int | None = None  # 1-based line number
    bad_seq: int | None = None  # the seq that line holds, when it parses
    reason: str = ""  # "line L (seq S): what is wrong", or a summary when ok
    torn: bool = False  # a torn last fragment (crash mid-append), repaired at the next open
    head_seq: int = -1
    head_hash: str = ZERO_HASH


def verify(path: str | os.PathLike[str], *, anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Check the chain; name the first entry edited, removed or reordered.

    ``anchor`` is a (seq, sha256 or its prefix) published earlier by ``head()``:
    it extends the check to the last entry and to entries cut off the end.
    """
    lines, torn = _read_lines(path)
    entries = [_parse(line) for line in lines]
    hashes = [_digest(line) for line in lines]
    n = len(lines)

    def bad(i: int, what: str) -> VerifyResult:  # i: 0-based index of the bad line
        seq = entries[i]["seq"] if entries[i] else None
        label = f"seq {seq}" if seq is not None else f"expected seq {i}"
        return VerifyResult(False, n, i + 1, seq, f"line {i + 1} ({label}): {what}", bool(torn))

    for i, entry in enumerate(entries):
        if entry is None:
            return bad(i, "not a valid entry (edited or corrupt)")
        expected_prev = hashes[i - 1] if i else ZERO_HASH
        linked, in_order = entry["prev"] == expected_prev, entry["seq"] == i
        if linked and in_order:
            continue
        if linked:
            return bad(i, f"edited: seq should be {i}, though its prev still links")
        if in_order:
            if i == 0:
                return bad(0, "edited: the first entry's prev is not 64 zeros")
            return bad(i - 1, f"edited: its hash no longer matches the prev of line {i + 1}")
        later = [j for j in range(i + 1, n) if entries[j] and entries[j]["seq"] == i]
        if later:
            return bad(i, f"out of order: seq {i} belongs here and is at line {later[0] + 1}")
        if entry["seq"] > i:
            return bad(i, f"entries removed before it: seq {i}..{entry['seq'] - 1} missing")
        return bad(i, f"out of order or duplicated: seq {i} belongs here")
    if anchor is not None:
        seq, digest = anchor
        if len(digest) < 12:
            raise ValueError("an anchor's hash needs at least 12 hex digits")
        if seq >= n:
            return VerifyResult(False, n, n + 1, None, f"line {n + 1} (seq {n}): removed: the log "
                                f"ends at seq {n - 1} but the published head is seq {seq}", bool(torn))
        if seq >= 0 and not hashes[seq].startswith(digest.lower()):
            return bad(seq, "edited or replaced: its hash does not match the published head")
    head_seq, head_hash = (n - 1, hashes[-1]) if n else (-1, ZERO_HASH)
    note = f"; a torn last fragment of {len(torn)} bytes (repaired at the next open)" if torn else ""
    return VerifyResult(True, n, None, None, f"chain ok: {n} entries{note}", bool(torn),
                        head_seq, head_hash)


def _env_id(env: Any) -> str | None:
    return env.get("id") if isinstance(env, dict) else env


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list | tuple) else [value]


def _built_env(entries: list[dict[str, Any]]) -> Any:
    """The env the build phase reported (``env``; ``env_after`` accepted too)."""
    for e in entries:
        if e["event"] == PHASE_END and e["data"].get("phase") == "build":
            return e["data"].get("env") or e["data"].get("env_after")
    return None


def _grouped(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in read_entries(path):
        groups.setdefault(entry["handover"], []).append(entry)
    return groups


def _row(hid: str, entries: list[dict[str, Any]], last: bool) -> dict[str, Any]:
    first = {}
    for e in entries:
        first.setdefault(e["event"], e["data"])
    asked, done, fail = first.get(REQUESTED, {}), first.get(COMPLETED), first.get(FAILED, {})
    phases: dict[str, float] = {}
    starts: dict[str, float] = {}
    for e in entries:
        name = e["data"].get("phase")
        if e["event"] == PHASE_START:
            starts[name] = e["ts"]
        elif e["event"] == PHASE_END:
            phases[name] = e["data"].get("duration", e["ts"] - starts.get(name, e["ts"]))
    done = done or {}
    phases.update(done.get("phases") or {})
    switch = first.get(INTENT_SWITCH, {})
    rollback = first.get(INTENT_ROLLBACK) or first.get(ROLLED_BACK) or {}
    return {
        "handover": hid, "kind": asked.get("kind", "evolve"), "started": entries[0]["ts"],
        "who": asked.get("who", done.get("who")),
        "add": _as_list(asked.get("add", done.get("add"))),
        "remove": _as_list(asked.get("remove", done.get("remove"))),
        "outcome": done.get("outcome", "in progress" if last else "interrupted"),
        "after_restart": bool(done.get("after_restart")),
        "total": done.get("total", entries[-1]["ts"] - entries[0]["ts"]),
        "phases": {p: phases[p] for p in (*PHASES, *sorted(set(phases) - set(PHASES))) if p in phases},
        "served": done.get("served"), "in_flight": done.get("in_flight"), "drained": done.get("drained"),
        "env_before": done.get("env_before") or asked.get("env_before") or switch.get("env_before"),
        "env_after": done.get("env_after") or _built_env(entries) or switch.get("env_after"),
        "validation": done.get("validation"),
        "failed_phase": fail.get("phase") or rollback.get("phase") or done.get("failed_phase"),
        "reason": fail.get("reason") or rollback.get("reason") or done.get("reason"),
    }


def summarize(path: str | os.PathLike[str], last: int | None = None) -> list[dict[str, Any]]:
    """One row per handover, oldest first; ``last`` keeps the newest N (see the module docstring)."""
    groups = _grouped(path)
    ids = list(groups)
    rows = [_row(hid, groups[hid], hid == ids[-1]) for hid in ids]
    return rows[-last:] if last else rows


def interrupted(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last handover if it has no ``completed`` entry, with the recovery decision; else None."""
    groups = _grouped(path)
    if not groups:
        return None
    hid, entries = list(groups.items())[-1]
    seen = {e["event"]: e["data"] for e in entries}  # the last of each event
    if COMPLETED in seen:
        return None
    phase, phase_ended = None, False
    for e in entries:
        if e["event"] in (PHASE_START, PHASE_END):
            phase, phase_ended = e["data"].get("phase"), e["event"] == PHASE_END
    fail = seen.get(FAILED)
    if INTENT_ROLLBACK in seen or ROLLED_BACK in seen:
        action, why = "revert", "a rollback had been decided"
    elif fail is not None and fail.get("phase") != "retire":
        action, why = "revert", f"failed in {fail.get('phase')}: {fail.get('reason')}"
    elif INTENT_SWITCH not in seen:
        action, why = "revert", "never switched: the old env was serving"
    elif SWITCHED not in seen:
        action, why = "revert", "the switch was not recorded as done: nothing was routed by it"
    else:
        action, why = "finish", "switched: the new env passed validation and was serving"
    switch = seen.get(INTENT_SWITCH, {})
    before = _env_id(switch.get("env_before")) or _env_id(seen.get(REQUESTED, {}).get("env_before"))
    after = _env_id(switch.get("env_after")) or _env_id(_built_env(entries))
    return {
        "handover": hid, "seq": entries[-1]["seq"], "last_event": entries[-1]["event"],
        "phase": phase, "phase_ended": phase_ended,
        "intent_switch": INTENT_SWITCH in seen, "switched": SWITCHED in seen,
        "intent_rollback": INTENT_ROLLBACK in seen, "rolled_back": ROLLED_BACK in seen,
        "retired": RETIRED in seen, "failed": fail,
        "action": action, "why": why, "env_before": before, "env_after": after,
        "keep_env": after if action == "finish" else before,
        "old_incarnation": switch.get("old"), "new_incarnation": switch.get("new"),
    }


def report(path: str | os.PathLike[str], *, last: int | None = None, check: bool = True,
           anchor: tuple[int, str] | None = None) -> dict[str, Any]:
    """Plain data for ``batos handovers --json`` and the bridge's reply: rows, and the chain check."""
    checked = dataclasses.asdict(verify(path, anchor=anchor)) if check or anchor else None
    return {"handovers": summarize(path, last), "verify": checked}
