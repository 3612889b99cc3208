"""The handover log's writer: append-only JSON lines, hash-chained, fsynced per entry.

``HandoverLog`` appends entries to ``<home>/logs/handovers.jsonl`` (``LOG_FILE``;
the format and the events are in ``handover_entries``). ``append`` returns only
after ``os.fsync``: that is the durability point. The handover writes an
``intent.*`` entry before each irreversible step and the outcome after it, so
after a crash at any point the log alone tells what state was reached
(``handover_report.interrupted`` reads it back). Opening the log continues the
chain from its last line and repairs a torn last line (an append that never
returned), keeping the fragment in a ``.torn-<ts>`` file beside it.

The readers live apart: ``handover_chain`` (``verify``, ``head``: the hash
chain), ``handover_report`` (``summarize``, ``interrupted``, ``report``) and
``handover_requests`` (the request ids it records: a resent evolve's reply);
callers import them where they live.

Boundary: stdlib only; one writer process (the supervisor, whose home lock
keeps a second one off), thread-safe within it. ``append`` blocks for one
fsync (milliseconds on an SSD); a handover writes a few dozen entries, so
calling it from the supervisor's loop is acceptable. Write errors become
``HomeError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from .handover_entries import (
    EVENTS,
    PHASE_END,
    PHASE_START,
    PHASES,
    ZERO_HASH,
    digest,
    parse_entry,
    read_lines,
)

__all__ = ["LOG_FILE", "HandoverLog", "new_handover_id"]

log = logging.getLogger("batos.supervisor.handovers")

LOG_FILE = "handovers.jsonl"


def new_handover_id() -> str:
    """A sortable, unique id: ``h-<UTC yyyymmdd-hhmmss>-<6 hex>``."""
    return f"h-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


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
        entry = parse_entry(last)
        if entry is None:  # newline-terminated but not an entry: verify() reports it; never erased
            log.warning("handover log: the last line is not a valid entry; see batos handovers "
                        "--verify", extra={"path": str(self.path)})
            seq = len(read_lines(self.path)[0])
        else:
            seq = entry["seq"] + 1
        return seq, digest(last), size

    @property
    def head(self) -> tuple[int, str]:
        """(seq, sha256) of the last entry; (-1, ZERO_HASH) when empty. Publish it as an anchor."""
        with self._lock:
            return self._seq - 1, self._prev

    @property
    def size(self) -> int:
        """Bytes written so far: the offset the next entry will start at (the request
        index, ``handover_requests``, remembers where a handover's entries begin)."""
        with self._lock:
            return self._size

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
            self._seq, self._prev = self._seq + 1, digest(line)
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
