"""Recorded minds: answer from a JSONL file, and write one from a real mind.

For deterministic tests and offline demos. Each line of the file is one
exchange, in one of two forms:

- recorded (what ``Recorder`` writes)::

    {"request": {"messages": [...], "schema": {...} | null, "model": str | null},
     "key": "<request_key>", "answer": {"text": ..., "parsed": ..., "model": ...,
     "structured": ..., "usage": {...}}}

- hand-written, matched by substrings of the messages::

    {"match": ["substring", ...], "answer": {"text": "..."}, "times": 1}

A line may carry ``"error": {"type": "BadAnswer", "message": "..."}`` instead
of (or beside) an answer: replaying it raises that ``WeaverError``, so error
paths replay too. Lookup: the first line whose key equals the request's key
(computed from its ``request`` when present, so a hand-edited request still
matches); else the first ``match`` line whose substrings all occur in the
messages' contents. A line with ``times: n`` is used at most n times
(default: without limit).

``request_key`` replaces UUIDs, 32-hex ids, ISO timestamps and float unix
times by placeholders before hashing, so a recording made against one image
replays against another. The ``model`` in the key is the name the caller
passed to ``chat`` (``None`` for the backend's default), so the same calling
code replays whatever backend recorded it.

Threads: both classes may be shared; a lock guards the file and the counters.
The replay file is re-read when its size or mtime changes, so a test may
append lines while a backend is in use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from weaver import errors
from weaver.chat import Answer, ChatBackend, check_messages, parse_with_schema
from weaver.errors import BadAnswer, BadMindConfig, ReplayMiss, WeaverError

__all__ = ["Recorder", "ReplayBackend", "normalize_text", "request_key"]

_VOLATILE = [
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
     "<uuid>"),
    (re.compile(r"\b[0-9a-fA-F]{32}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"),
     "<time>"),
    (re.compile(r"\b1\d{9}\.\d+\b"), "<time>"),
]


def normalize_text(text: str) -> str:
    """``text`` with UUIDs, hex ids and timestamps replaced by placeholders."""
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def request_key(messages: list[dict[str, str]], schema: dict | None, model: str | None) -> str:
    """A digest of the normalized request: equal for requests that differ only in ids/times."""
    request = {"messages": check_messages(messages), "schema": schema, "model": model}
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(normalize_text(canonical).encode("utf-8")).hexdigest()


def _contents(messages: list[dict[str, str]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def _last_user(messages: list[dict[str, str]], n: int = 80) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            flat = " ".join(str(message.get("content", "")).split())
            return flat[:n] + ("..." if len(flat) > n else "")
    return ""


@dataclass(frozen=True)
class _Entry:
    line: int
    raw: str
    key: str | None
    match: tuple[str, ...] | None
    times: int | None
    answer: dict
    error: dict | None


def _entry(path: Path, line_no: int, raw: str) -> _Entry:
    where = f"{path}:{line_no}"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadMindConfig(f"{where} is not a JSON line: {exc}") from exc
    if not isinstance(data, dict):
        raise BadMindConfig(f"{where} must be a JSON object")
    answer = data.get("answer", {})
    error = data.get("error")
    if not isinstance(answer, dict) or not isinstance(answer.get("text", ""), str):
        raise BadMindConfig(f"{where}: 'answer' must be an object with a 'text' string")
    if error is None and "text" not in answer:
        raise BadMindConfig(f"{where} needs an 'answer' with 'text' (or an 'error')")
    if error is not None and not (isinstance(error, dict) and isinstance(error.get("type"), str)):
        raise BadMindConfig(f"{where}: 'error' must be an object with a 'type' string")
    key = match = None
    if isinstance(data.get("request"), dict):
        request = data["request"]
        try:
            key = request_key(request["messages"], request.get("schema"), request.get("model"))
        except (KeyError, ValueError) as exc:
            raise BadMindConfig(f"{where}: 'request' needs a valid 'messages' list") from exc
    elif isinstance(data.get("key"), str):
        key = data["key"]
    elif isinstance(data.get("match"), list) and all(isinstance(s, str) for s in data["match"]):
        match = tuple(data["match"])
    else:
        raise BadMindConfig(f"{where} needs a 'request', a 'key' or a 'match' list of strings")
    times = data.get("times")
    if times is not None and (not isinstance(times, int) or times < 0):
        raise BadMindConfig(f"{where}: 'times' must be a non-negative integer")
    return _Entry(line_no, raw, key, match, times, answer, error)


class ReplayBackend:
    """A ``ChatBackend`` answering from a JSONL file of exchanges (see the module docstring)."""

    def __init__(self, path: str | Path, *, model: str = "replay") -> None:
        self.path = Path(path).expanduser()
        self.model = model
        if not self.path.is_file():
            raise BadMindConfig(
                f"replay file {self.path} does not exist; record one with "
                f"BATOS_MIND_RECORD={self.path} and a real server (BATOS_MIND_URL, "
                "BATOS_MIND_MODEL), or write lines like "
                '{"match": ["substring"], "answer": {"text": "..."}}'
            )
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: list[_Entry] = []
        self._used: dict[tuple[int, str], int] = {}
        with self._lock:
            self._refresh()

    def __repr__(self) -> str:
        return f"ReplayBackend({str(self.path)!r})"

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BadMindConfig(f"cannot read replay file {self.path}: {exc}") from exc
        self._entries = [
            _entry(self.path, number, raw)
            for number, raw in enumerate(lines, start=1)
            if raw.strip()
        ]
        self._stamp = stamp

    def _find(self, key: str, contents: str) -> _Entry | None:
        def usable(entry: _Entry) -> bool:
            return entry.times is None or self._used.get((entry.line, entry.raw), 0) < entry.times

        for entry in self._entries:
            if entry.key == key and usable(entry):
                return entry
        for entry in self._entries:
            if entry.match is not None and usable(entry):
                if all(part in contents for part in entry.match):
                    return entry
        return None

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict | None = None,
        schema_name: str = "answer",
        max_tokens: int = 1024,
        temperature: float = 0.0,
        model: str | None = None,
    ) -> Answer:
        started = time.monotonic()
        messages = check_messages(messages)
        key = request_key(messages, schema, model)
        with self._lock:
            self._refresh()
            entry = self._find(key, _contents(messages))
            if entry is None:
                raise ReplayMiss(
                    f"replay file {self.path} has no answer for the request whose last user "
                    f"message starts {_last_user(messages)!r} (key {key[:16]}); record one "
                    f"with BATOS_MIND_RECORD={self.path} and a real server (BATOS_MIND_URL, "
                    "BATOS_MIND_MODEL), or add a line "
                    '{"match": ["<substring of the prompt>"], "answer": {"text": "..."}}'
                )
            counter = (entry.line, entry.raw)
            self._used[counter] = self._used.get(counter, 0) + 1
        answer = entry.answer
        text = answer.get("text", "")
        if entry.error is not None:
            raise _replayed_error(entry.error, text, f"{self.path}:{entry.line}")
        parsed = None
        if schema is not None:
            parsed = answer["parsed"] if "parsed" in answer else parse_with_schema(text, schema)
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        return Answer(
            text=text,
            parsed=parsed,
            model=str(answer.get("model") or model or self.model),
            structured=bool(answer.get("structured", False)) and schema is not None,
            elapsed=time.monotonic() - started,
            usage={k: int(v) for k, v in usage.items() if isinstance(v, int)},
        )

    def close(self) -> None:
        """Nothing to release: the file is opened only while it is read."""


def _replayed_error(error: dict, text: str, where: str) -> WeaverError:
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, WeaverError)):
        cls = WeaverError
    message = str(error.get("message") or f"recorded {error.get('type')} (from {where})")
    if issubclass(cls, BadAnswer):
        return cls(message, text=text)
    return cls(message)


class Recorder:
    """A ``ChatBackend`` that asks ``backend`` and appends every exchange to ``path``.

    Answers are appended as the recorded form a ``ReplayBackend`` reads;
    ``BadAnswer`` (a bad answer is part of what was said) is appended as an
    ``error`` line and re-raised. Transport errors (the mind was not there) are
    not recorded. Each line is one ``write`` on a file opened for appending, so
    lines never interleave; ``fsync=True`` also forces each to disk.
    """

    def __init__(self, backend: ChatBackend, path: str | Path, *, fsync: bool = False) -> None:
        self.backend = backend
        self.path = Path(path).expanduser()
        self.fsync = fsync
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch(exist_ok=True)
        except OSError as exc:
            raise BadMindConfig(f"cannot write the record file {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Recorder({self.backend!r}, {str(self.path)!r})"

    @property
    def model(self) -> str:
        return self.backend.model

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict | None = None,
        schema_name: str = "answer",
        max_tokens: int = 1024,
        temperature: float = 0.0,
        model: str | None = None,
    ) -> Answer:
        messages = check_messages(messages)
        line: dict[str, Any] = {
            "request": {"messages": messages, "schema": schema, "model": model},
            "key": request_key(messages, schema, model),
        }
        try:
            answer = self.backend.chat(
                messages,
                schema=schema,
                schema_name=schema_name,
                max_tokens=max_tokens,
                temperature=temperature,
                model=model,
            )
        except BadAnswer as exc:
            line["answer"] = {"text": exc.text}
            line["error"] = {"type": type(exc).__name__, "message": str(exc)}
            self._append(line)
            raise
        line["answer"] = {
            "text": answer.text,
            "parsed": answer.parsed,
            "model": answer.model,
            "structured": answer.structured,
            "usage": answer.usage,
        }
        line["elapsed"] = round(answer.elapsed, 4)
        self._append(line)
        return answer

    def _append(self, line: dict[str, Any]) -> None:
        line["recorded_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self.backend.close()
