"""The client commands and ``batos logs`` from other processes against a real ``batos up``.

* ``batos status`` is short by default (state, env, the incarnations' table, restarts,
  handover, log head, endpoints); ``--verbose`` is everything as JSON with the image's
  entropy; ``--json`` the reply with ``image`` beside it;
* ``ping``, ``send``, ``status`` with ``--json`` print one reply that parses; an error
  reply is one line (``batos send: <Type>: ...``) or one JSON line on stderr, exit 1;
* ``batos logs -n N`` prints the supervisor's last lines, ``--json`` each as written;
  ``--follow`` prints what the supervisor logs afterwards (its shutdown, here), each
  line once, and exits 0 on Ctrl-C (SIGINT).

The evolve's progress is in ``test_cli_progress.py`` (it needs a uv-mode supervisor).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    BATOS,
    Supervisor,
    Supervisors,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration


def batos(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATOS_ENDPOINT", "BATOS_HOME")}
    return subprocess.run([BATOS, *args], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture
def sup(supervisors: Supervisors) -> Supervisor:
    return supervisors.start()


def test_status_is_short_by_default_and_whole_with_verbose_or_json(sup: Supervisor) -> None:
    short = batos("status", "--endpoint", sup.endpoint)
    assert short.returncode == 0, short.stderr
    lines = short.stdout.splitlines()
    assert lines[0] == "state:       serving"
    assert len(lines) < 20
    state = sup.status()
    active = state["active"]
    row = next(line for line in lines if line.strip().startswith(f"{active}*")).split()
    inc = next(i for i in state["incarnations"] if i["id"] == active)
    assert row[1:5] == ["active", "ready", str(inc["pid"]), "current"]
    assert "restarts:    0 recent, 0 total" in short.stdout
    assert "handover:    none running" in short.stdout
    assert f"endpoints:   {sup.endpoint}" in short.stdout

    verbose = batos("status", "--endpoint", sup.endpoint, "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    everything = json.loads(verbose.stdout)
    assert everything["incarnations"][0]["packages"] == inc["packages"]
    assert 0 <= everything["image"]["cem"] <= 1

    reply = json.loads(batos("status", "--endpoint", sup.endpoint, "--json").stdout)
    assert (reply["ok"], reply["result"]["state"]) == (True, "serving")
    assert "error" not in reply
    assert set(reply["image"]) >= {"cem", "counts"}


def test_every_client_command_json_parses_and_errors_have_one_form(sup: Supervisor) -> None:
    for argv in (["ping"], ["status"], ["send", "genesis", "printString"]):
        done = batos(*argv, "--endpoint", sup.endpoint, "--json")
        assert done.returncode == 0, done.stderr
        (line,) = done.stdout.splitlines()
        reply = json.loads(line)
        assert reply["ok"] is True, reply
        assert set(reply) - {"image"} == {"v", "id", "ok", "result"}
    pong = batos("ping", "--endpoint", sup.endpoint)
    assert pong.stdout.startswith("pong: supervisor pid ")
    assert ", state serving (protocol 1." in pong.stdout

    refused = batos("send", "--endpoint", sup.endpoint, "nobody", "printString")
    assert (refused.returncode, refused.stdout) == (1, "")
    (line,) = refused.stderr.splitlines()
    assert line.startswith("batos send: ")
    kind = line.split(": ")[1]
    refused = batos("send", "--endpoint", sup.endpoint, "nobody", "printString", "--json")
    assert (refused.returncode, refused.stdout) == (1, "")
    error = json.loads(refused.stderr)["error"]
    assert error["type"] == kind
    assert error["message"]
    assert error["where"]


@contextlib.contextmanager
def following(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``batos logs --follow ARGS`` with its stdout lines collected by a thread."""
    proc = subprocess.Popen([BATOS, "logs", "--follow", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(10)
        proc.stderr.close()


def test_logs_prints_the_last_lines_and_follows_until_ctrl_c(sup: Supervisor) -> None:
    records = sup.log_records()
    last = batos("logs", "--home", str(sup.home), "-n", "3")
    assert last.returncode == 0, last.stderr
    lines = last.stdout.splitlines()
    assert len(lines) == 3
    for text, entry in zip(lines, records[-3:], strict=True):
        assert text.startswith(entry["ts"].replace("T", " "))
        assert f"{entry['logger']}: {entry['msg']}" in text
    raw = batos("logs", "--home", str(sup.home), "-n", "5", "--json")
    assert [json.loads(line) for line in raw.stdout.splitlines()] == sup.log_records()[-5:]

    before = len(sup.log_records())
    with following("--home", str(sup.home), "-n", "1") as (proc, seen):
        wait_until(lambda: seen, 30)  # the last line: it reads the log now
        assert sup.terminate() == 0  # the supervisor logs its shutdown
        wait_until(lambda: any("supervisor stopped" in line for line in seen), 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""
    after = sup.log_records()[before - 1:]
    assert len(seen) == len(after)  # the last line, then each new one once
    assert all(f"{entry['msg']}" in line for entry, line in zip(after, seen, strict=True))
