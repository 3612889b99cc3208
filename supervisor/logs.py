"""The supervisor's logs: one JSON object per line, to stderr and to a rotating file.

``configure_logging`` installs ``JsonFormatter`` handlers on the root logger,
so the supervisor's own records and those of its libraries (ZEO, pyzmq) come
out the same way. Each line is one object::

    {"ts": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "supervisor",
     "msg": "incarnation started", "pid": 4242}

``ts`` is ISO-8601 UTC with milliseconds; every ``extra={...}`` field sits
beside the fixed ones (an extra that reuses a fixed name is kept with a
trailing ``_``); an exception's traceback is under ``exc``, a stack under
``stack``. Under systemd, stderr goes to the journal; the file in
``log_dir/supervisor.log`` (10 MB x 5) is for machines without one.

Boundary: a log call never raises because of what it carries. A value JSON
cannot hold is written as its ``repr()``; NaN and infinities too, since they
are not JSON. Only the supervisor process writes ``supervisor.log``: rotation
is not safe across processes, so workers log to their own stderr, which the
supervisor captures.

Thread boundary: handlers are the standard library's, safe to use from any
thread; call ``configure_logging`` once at start-up, from the main thread.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import IO, Any

from supervisor.errors import ConfigError, HomeError

__all__ = ["LOG_FILE", "JsonFormatter", "configure_logging"]

LOG_FILE = "supervisor.log"
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}
_FIXED = ("ts", "level", "logger", "msg", "exc", "stack")
_MARK = "_batos_json_handler"


def _jsonable(value: Any) -> Any:
    """``value`` if it encodes as strict JSON, else its ``repr()``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _safe_repr(value)
    return value


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not lose the record
        return f"<unrepresentable {type(value).__name__}: {exc!r}>"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep what we have rather than drop the record
            message = f"{_safe_repr(record.msg)} % {_safe_repr(record.args)}"
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": message,
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            name = f"{key}_" if key in _FIXED else key
            entry[name] = _jsonable(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, allow_nan=False)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ConfigError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    return number


def configure_logging(
    log_dir: Path | None,
    *,
    level: str | int = "INFO",
    stream: IO[str] | None = None,
) -> None:
    """Send every log record, as JSON lines, to ``stream`` and ``log_dir/supervisor.log``.

    ``stream`` defaults to the current ``sys.stderr``; ``log_dir=None`` logs
    to the stream only. Calling again replaces the handlers this function
    installed before (handlers others added are left alone). Python
    warnings are routed into logging too.
    """
    root = logging.getLogger()
    numeric = _level(level)
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr if stream is None else stream)]
    if log_dir is not None:
        try:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            handlers.append(logging.handlers.RotatingFileHandler(
                Path(log_dir) / LOG_FILE, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT,
                encoding="utf-8",
            ))
        except OSError as exc:
            raise HomeError(f"cannot write logs in {log_dir}: {exc.strerror or exc}") from exc

    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        setattr(handler, _MARK, True)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
