"""``batos logs``: the last lines of the supervisor's JSON log, readable or raw, from the
rotated files too, and ``--follow`` across appends and a rotation (a thread that
follows while the test writes, waiting on what it printed, never a sleep), and a
truncation.
Ctrl-C on a real ``batos logs --follow`` is in ``tests/integration/test_cli_logs.py``.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import pytest

from batos import logs
from tests.conftest import wait_until


def record(n: int, **extra: object) -> str:
    return json.dumps({"ts": f"2026-01-02T03:04:{n:02d}.000Z", "level": "INFO",
                       "logger": "batos.supervisor", "msg": f"line {n}", **extra})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    p = argparse.ArgumentParser(prog="batos")
    logs.add_commands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["logs", *argv])
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_log_is_where_batos_up_writes_it(home):
    assert logs.log_path(str(home)) == home.resolve() / "logs" / "supervisor.log"


def test_the_last_n_lines_readable(home, capsys):
    write(home / "logs" / "supervisor.log", *(record(i) for i in range(30)),
          record(30, pid=7, incarnation="inc-1", note="two words", data={"a": 1}))
    code, out, err = run(capsys, "--home", str(home))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 20
    assert lines[0] == "2026-01-02 03:04:11.000Z  INFO    batos.supervisor: line 11"
    assert lines[-1] == ('2026-01-02 03:04:30.000Z  INFO    batos.supervisor: line 30  pid=7 '
                         'incarnation=inc-1 note="two words" data={"a": 1}')
    code, out, _ = run(capsys, "--home", str(home), "-n", "3")
    messages = [line.split(": ", 1)[1].split("  ")[0] for line in out.splitlines()]
    assert messages == ["line 28", "line 29", "line 30"]
    assert run(capsys, "--home", str(home), "-n", "0")[1] == ""


def test_json_prints_the_lines_as_written_and_wraps_what_is_not_json(home, capsys):
    write(home / "logs" / "supervisor.log", record(1), "not json at all", record(2))
    code, out, _ = run(capsys, "--home", str(home), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [json.loads(record(1)), {"unparsed": "not json at all"}, json.loads(record(2))]


def test_a_traceback_is_indented_below_its_line():
    text = logs.format_record(json.dumps({"ts": "t", "level": "ERROR", "logger": "x", "msg": "boom",
                                          "exc": "Traceback:\n  File y\nValueError: 1"}))
    assert text.splitlines() == ["t  ERROR   x: boom", "    Traceback:", "      File y",
                                 "    ValueError: 1"]
    assert logs.format_record("plain text") == "plain text"


def test_the_last_lines_reach_into_the_rotated_files(home):
    path = home / "logs" / "supervisor.log"
    write(path.with_name("supervisor.log.2"), record(1), record(2))
    write(path.with_name("supervisor.log.1"), record(3), record(4))
    write(path, record(5))
    shown = [json.loads(line)["msg"] for line in logs.last_lines(path, 4)]
    assert shown == ["line 2", "line 3", "line 4", "line 5"]
    assert len(logs.last_lines(path, 100)) == 5


def test_a_missing_log_is_one_error(tmp_path, capsys):
    code, out, err = run(capsys, "--home", str(tmp_path))
    assert (code, out) == (1, "")
    assert err.startswith("batos logs: NoLog: no supervisor log at ")
    code, out, err = run(capsys, "--home", str(tmp_path), "--json")
    assert json.loads(err)["error"]["type"] == "NoLog"


def test_follow_prints_appended_lines_and_follows_a_rotation(home):
    path = home / "logs" / "supervisor.log"
    write(path, record(1))
    seen: list[str] = []
    stop = threading.Event()
    tail = logs.LogTail(path)
    follower = threading.Thread(target=logs.follow, args=(tail, seen.append, stop),
                                kwargs={"interval": 0.01}, daemon=True)
    follower.start()
    try:
        write(path, record(2))
        with path.open("a") as f:
            f.write(record(3)[:10])  # half a line: not shown until it is whole
        wait_until(lambda: len(seen) == 1, 5)
        with path.open("a") as f:
            f.write(record(3)[10:] + "\n")
        wait_until(lambda: len(seen) == 2, 5)

        write(path, record(4))  # then rotated the way RotatingFileHandler does
        path.rename(path.with_name("supervisor.log.1"))
        write(path, record(5))
        wait_until(lambda: len(seen) == 4, 5)
    finally:
        stop.set()
        follower.join(5)
        tail.close()
    assert [json.loads(line)["msg"] for line in seen] == [f"line {n}" for n in range(2, 6)]


def test_a_log_truncated_in_place_is_read_again_from_its_start(home):
    """As ``tail`` does: a file shorter than what was read was truncated."""
    path = home / "logs" / "supervisor.log"
    write(path, record(1), record(2))
    tail = logs.LogTail(path, from_end=False)
    try:
        assert len(tail.lines()) == 2
        path.write_text("")
        assert tail.lines() == []
        assert tail.position == 0
        write(path, record(3))
        assert [json.loads(line)["msg"] for line in tail.lines()] == ["line 3"]
    finally:
        tail.close()


def test_follow_waits_for_a_log_that_does_not_exist_yet(home):
    path = home / "logs" / "supervisor.log"
    seen: list[str] = []
    stop = threading.Event()
    tail = logs.LogTail(path)
    assert tail.position is None
    follower = threading.Thread(target=logs.follow, args=(tail, seen.append, stop),
                                kwargs={"interval": 0.01}, daemon=True)
    follower.start()
    try:
        write(path, record(1), record(2))
        wait_until(lambda: len(seen) == 2, 5)
    finally:
        stop.set()
        follower.join(5)
        tail.close()
