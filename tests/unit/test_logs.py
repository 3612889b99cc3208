"""JSON-line logging: valid JSON in the file and the stream, extras kept, nothing crashes.

The ``root_logging`` fixture saves and restores the root logger's handlers
and level, and closes the handlers ``configure_logging`` installed, so no
test leaks a handler (or an open file) into the next.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.logs import LOG_FILE, JsonFormatter, configure_logging

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(saved_level)
        logging.captureWarnings(False)


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_records_with_extras_reach_file_and_stream(tmp_path: Path, root_logging):
    stream = io.StringIO()
    configure_logging(tmp_path / "logs", stream=stream)
    log = logging.getLogger("supervisor.test")
    log.info("incarnation %s started", "u1", extra={"pid": 4242, "tags": ["a", "b"]})
    log.debug("not at INFO")
    for handler in ours(root_logging):
        handler.flush()

    from_file = lines((tmp_path / "logs" / LOG_FILE).read_text())
    from_stream = lines(stream.getvalue())
    assert from_file == from_stream
    [entry] = from_file
    assert TS.fullmatch(entry["ts"])
    assert entry["level"] == "INFO"
    assert entry["logger"] == "supervisor.test"
    assert entry["msg"] == "incarnation u1 started"
    assert entry["pid"] == 4242
    assert entry["tags"] == ["a", "b"]


def test_exception_text_goes_under_exc(root_logging):
    stream = io.StringIO()
    configure_logging(None, stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("supervisor.test").exception("it broke")
    [entry] = lines(stream.getvalue())
    assert entry["level"] == "ERROR"
    assert entry["msg"] == "it broke"
    assert "ValueError: boom" in entry["exc"]
    assert "Traceback" in entry["exc"]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_unserializable_extras_are_reprd_never_crash(root_logging):
    stream = io.StringIO()
    configure_logging(None, stream=stream)
    loop: list = []
    loop.append(loop)
    logging.getLogger("supervisor.test").warning("odd values\nsecond line", extra={
        "obj": Opaque(), "path": Path("/x"), "nan": math.nan, "loop": loop,
        "tuple_keys": {(1, 2): "v"}, "broken": BrokenRepr(), "bytes": b"\x00",
        "level": "shadowed",
    })
    text = stream.getvalue()
    assert text.count("\n") == 1, "one record is one line"
    [entry] = lines(text)
    assert entry["msg"] == "odd values\nsecond line"
    assert entry["obj"] == "<Opaque thing>"
    assert entry["path"] == repr(Path("/x"))
    assert entry["nan"] == "nan"
    assert entry["loop"] == "[[...]]"
    assert entry["tuple_keys"] == "{(1, 2): 'v'}"
    assert entry["broken"].startswith("<unrepresentable BrokenRepr")
    assert entry["bytes"] == "b'\\x00'"
    assert entry["level"] == "WARNING"
    assert entry["level_"] == "shadowed"


def test_bad_format_args_keep_the_record():
    # Formatted directly: pytest's own capture handler would raise on this record.
    record = logging.LogRecord("supervisor.test", logging.ERROR, __file__, 1,
                               "%d items", ("many",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert "%d items" in entry["msg"]
    assert "many" in entry["msg"]


def test_configuring_twice_does_not_double_handlers(tmp_path, root_logging):
    first, second = io.StringIO(), io.StringIO()
    configure_logging(tmp_path, stream=first)
    configure_logging(tmp_path, stream=second, level="DEBUG")
    assert len(ours(root_logging)) == 2  # one stream, one file
    logging.getLogger("supervisor.test").debug("once")
    for handler in ours(root_logging):
        handler.flush()
    assert first.getvalue() == ""
    assert [e["msg"] for e in lines(second.getvalue())] == ["once"]
    assert [e["msg"] for e in lines((tmp_path / LOG_FILE).read_text())] == ["once"]


def test_other_handlers_are_left_alone(root_logging):
    foreign = logging.NullHandler()
    root_logging.addHandler(foreign)
    configure_logging(None, stream=io.StringIO())
    configure_logging(None, stream=io.StringIO())
    assert foreign in root_logging.handlers


def test_unknown_level_is_a_config_error(root_logging):
    with pytest.raises(ConfigError, match="LOUD"):
        configure_logging(None, level="LOUD", stream=io.StringIO())
