"""``batos send/evolve/rollback/status/ping`` without a supervisor: their parsers, the
short status, the handover summary, which events are a request's, and ``follow``
against a fake client that publishes on a real event socket (``progress.follow``'s
``connect`` seam); errors in the one format, with and without ``--json``.

The handover progress against a real ``batos up`` is in
``tests/integration/test_cli_progress.py``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from batos import client, progress, status_view
from bridge.codec import encode
from bridge.messages import ErrorInfo, Event, EvolveRequest, Reply

COMMANDS = ("send", "evolve", "rollback", "status", "ping")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="batos")
    client.add_commands(p.add_subparsers(dest="command", required=True))
    return p


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


# --- the parsers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_json_an_example_and_its_name(name):
    sub = parser()._subparsers._group_actions[0].choices[name]  # noqa: SLF001
    assert f"batos {name}" in sub.epilog
    assert sub.epilog.startswith("example")
    args = sub.parse_args(["--json"] + (["t", "s"] if name == "send" else []))
    assert args.json is True
    assert args.command_name == name
    assert args.retries == 2


def test_handover_commands_wait_long_and_take_an_id():
    args = parse("evolve", "--add", "six", "--id", "abc")
    assert (args.timeout, args.request_id) == (900.0, "abc")
    assert parse("rollback").timeout == 900.0
    assert parse("status").timeout == 10.0


# --- errors: one line, or one JSON line -------------------------------------------------


def unreachable(*argv: str) -> list[str]:
    return [*argv, "--endpoint", "tcp://127.0.0.1:9", "--timeout", "0.05", "--retries", "0"]


@pytest.mark.parametrize("argv", [["ping"], ["status"], ["send", "genesis", "printString"],
                                  ["evolve", "--add", "six"], ["rollback"]])
def test_an_unreachable_supervisor_exits_3_in_the_one_format(capsys, argv):
    args = parse(*unreachable(*argv))
    assert args.func(args) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"batos {argv[0]}: Timeout: no reply from tcp://127.0.0.1:9")
    assert len(captured.err.splitlines()) == 1

    args = parse(*unreachable(*argv), "--json")
    assert args.func(args) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["error"]["type"] == "Timeout"


@pytest.mark.parametrize(("argv", "message"), [
    (["evolve"], "nothing to change: give --add and/or --remove"),
    (["evolve", "--add", "six", "--probation", "99999"], "probation: "),
    (["rollback", "--env", "x" * 65], "env_id: "),
])
def test_arguments_no_request_can_carry_exit_2(capsys, argv, message):
    args = parse(*argv)
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"batos {argv[0]}: UsageError: {message}")
    args = parse(*argv, "--json")
    assert args.func(args) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["type"] == "UsageError"
    assert error["message"].startswith(message)


# --- status, short ----------------------------------------------------------------------


STATUS = {
    "state": "serving", "reason": "",
    "supervisor": {"pid": 41, "uptime": 3725.2, "home": "/srv/batos",
                   "endpoints": ["tcp://127.0.0.1:7719", "ipc:///run/fe.sock"],
                   "events": "ipc:///run/ev.sock", "curve": False},
    "active": "inc-2-41",
    "incarnations": [
        {"id": "inc-1-41", "role": "old", "state": "ready", "pid": 50, "env_id": "aaaa1111bbbb2222",
         "uptime": 600.0, "served": 12, "busy": 1, "packages": {"six": "1.16.0"}},
        {"id": "inc-2-41", "role": "active", "state": "ready", "pid": 60,
         "env_id": "cccc3333dddd4444", "uptime": 5.5, "served": 3, "busy": 0, "packages": {},
         "lanes": 4, "attached": [0, 1, 3]},
    ],
    "env": {"id": "cccc3333dddd4444", "python": "3.11.7", "path": "/envs/c",
            "spec": {}, "packages": {"six": "1.17.0", "zodb": "6.0"}},
    "routing": {"inflight": 1, "pending": 0},
    "poisoned": [{"request": "r1"}], "quarantined": {"count": 2, "methods": []},
    "restarts": {"recent": 1, "total": 4, "degraded": False},
    "zeo": {"pid": 45, "address": "/run/zeo.sock", "restarts": 0},
    "handover": {"id": "h-12ab", "kind": "evolve", "phase": "probation", "who": "ann@box",
                 "elapsed": 75.0},
    "served": 15, "handover_log": {"path": "/srv/batos/logs/handovers.jsonl",
                                   "head": [7, "f" * 64]},
    "confinement": {"mode": "auto"}, "vllm": None,
}


def test_the_short_status_says_what_matters_in_a_few_lines():
    text = status_view.short_status(STATUS)
    lines = text.splitlines()
    assert len(lines) <= 16
    assert lines[0] == "state:       serving"
    assert "pid 41, up 1h 02m, home /srv/batos" in text
    assert "env:         cccc3333dddd4444 (2 packages)" in text
    header = next(line for line in lines if "SERVED" in line).split()
    assert header == ["ID", "ROLE", "STATE", "PID", "ENV", "SERVED", "BUSY", "LANES", "UP"]
    active = next(line for line in lines if "inc-2-41*" in line).split()
    assert active == ["inc-2-41*", "active", "ready", "60", "cccc3333dddd4444", "3", "0", "3/4",
                      "5s"]
    old = next(line for line in lines if "inc-1-41 " in line).split()
    assert old[1:3] == ["old", "ready"]
    assert old[7] == "?"  # an incarnation listed without lanes (an older supervisor)
    no_lanes = {**STATUS["incarnations"][1], "lanes": 0, "attached": []}
    row = next(line for line in status_view.short_status(
        {**STATUS, "incarnations": [no_lanes]}).splitlines() if "inc-2-41*" in line)
    assert row.split()[7] == "-"  # no lanes: requests go to its main socket
    assert "restarts:    1 recent, 4 total" in text
    assert "handover:    h-12ab (evolve) in phase probation for 1m 15s, asked by ann@box" in text
    assert f"handover log: seq 7, sha256 {'f' * 16}" in text
    assert "poisoned:    1 recent" in text
    assert "quarantined: 2 method(s)" in text
    assert "endpoints:   tcp://127.0.0.1:7719, ipc:///run/fe.sock; events ipc:///run/ev.sock" in text
    assert "six" not in text  # packages are for --verbose


def test_the_short_status_of_a_degraded_supervisor_says_why():
    state = {**STATUS, "state": "degraded", "reason": "crashed 5 times in 60s", "env": None,
             "incarnations": [], "handover": None, "poisoned": [], "quarantined": None,
             "restarts": {"recent": 5, "total": 5, "degraded": True},
             "handover_log": {"head": [-1, "0" * 64]}}
    text = status_view.short_status(state)
    assert text.splitlines()[0] == "state:       degraded (crashed 5 times in 60s)"
    for line in ("env:         none", "incarnations: none", "handover:    none running",
                 "restarts:    5 recent, 5 total, DEGRADED", "handover log: empty"):
        assert line in text
    assert "poisoned" not in text
    assert "quarantined" not in text
    assert status_view.short_status({}).startswith("state:       ?")  # older fields: '?'


@pytest.mark.parametrize(("seconds", "shown"), [(0.25, "0.2s"), (42, "42s"), (183, "3m 03s"),
                                                (7500, "2h 05m"), (273600, "3d 04h"), (None, "?")])
def test_durations(seconds, shown):
    assert status_view.duration(seconds) == shown


# --- the handover summary ---------------------------------------------------------------


SWITCHED = {
    "handover": "h-1a2b3c", "outcome": "switched", "phase": "switch",
    "env_before": {"id": "aaaa1111bbbb2222", "packages": {"six": "1.16.0", "old": "1.0",
                                                          "zodb": "6.0"}},
    "env_after": {"id": "cccc3333dddd4444", "packages": {"six": "1.17.0", "greetlib": "1.0",
                                                         "zodb": "6.0"}},
    "timings": {"build": 2.04, "incarnate": 1.5, "validate": 3.25, "switch": 0.01},
    "validation": {"ok": True, "objects": 1234, "methods": 56,
                   "imports": {"greetlib": "ok", "six": "ok"}, "checks": {"a": "ok", "b": "ok"},
                   "warnings": ["probe x answered differently"]},
    "total": 6.8,
}


def test_package_changes_are_added_removed_and_changed_with_versions():
    before, after = SWITCHED["env_before"]["packages"], SWITCHED["env_after"]["packages"]
    assert progress.package_changes(before, after) == [
        ("+", "greetlib", None, "1.0"), ("-", "old", "1.0", None), ("~", "six", "1.16.0", "1.17.0")]
    assert progress.package_changes(None, None) == []


def test_the_summary_is_a_few_lines_not_two_package_lists():
    text = progress.summary("evolve", SWITCHED, 9.0)
    lines = text.splitlines()
    assert lines[0] == ("switched: evolve h-1a2b3c in 6.8s (build 2.0s, incarnate 1.5s, "
                        "validate 3.2s, switch 0.0s)")
    assert lines[1] == "env aaaa1111bbbb -> cccc3333dddd"
    assert lines[2:5] == ["  + greetlib 1.0", "  - old 1.0", "  ~ six 1.16.0 -> 1.17.0"]
    assert lines[5] == "validated: 1234 objects, 56 methods, 2/2 modules import, 2/2 self-checks ok"
    assert lines[6] == "  warning: probe x answered differently"
    assert "zodb" not in text
    unchanged = {"outcome": "unchanged", "env": {"id": "aaaa1111bbbb2222"},
                 "message": "the incarnation already runs this spec"}
    assert progress.summary("evolve", unchanged, 0.1) == (
        "unchanged: the incarnation already runs this spec (env aaaa1111bbbb)")


# --- which events are ours --------------------------------------------------------------


def phase(name: str, handover: str, request: str | None = None) -> dict[str, Any]:
    data = {"handover": handover, "phase": name}
    if request is not None:
        data["request"] = request
    return {"kind": "handover.phase", "ts": 0.0, "data": data}


def test_events_are_ours_by_request_id():
    follower = progress.Follower("r-mine")
    assert not follower.ours(phase("build", "h-other", "r-other"))
    assert follower.ours(phase("build", "h-mine", "r-mine"))
    assert follower.handover == "h-mine"
    assert not follower.ours({"kind": "incarnation.ready", "ts": 0, "data": {}})


def test_without_request_ids_the_first_handover_built_after_sending_is_ours():
    follower = progress.Follower("r-mine")
    assert not follower.ours(phase("validate", "h-before"))  # began before we sent
    assert follower.ours(phase("build", "h-mine"))
    assert follower.ours(phase("incarnate", "h-mine"))
    assert follower.ours({"kind": "handover.switched", "ts": 0, "data": {"new": "inc-2"}})
    assert not follower.ours(phase("build", "h-later"))


# --- follow: a fake client, a real event socket -----------------------------------------


class FakeClient:
    """Answers ``reply`` to the request, after publishing ``events`` (each naming the
    request) through ``publish``."""

    def __init__(self, publish: Any, events: list[tuple[str, dict[str, Any]]], reply: Any) -> None:
        self.publish, self.events, self.reply = publish, events, reply
        self.sent: list[Any] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, message: Any) -> Any:
        self.sent.append(message)
        for kind, data in self.events:
            data = {"handover": "h-1a2b3c", "request": message.id, **data}
            self.publish([kind.split(".")[0].encode(), encode(Event(kind=kind, ts=time.time(),
                                                                    data=data))])
        return self.reply(message)


@pytest.fixture
def pub(tmp_path: Path):
    """An XPUB event socket; the first publish waits for the subscription to ``handover``
    (so a test sees exactly what a subscriber connected before the request would)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, not only a topic's first
    address = f"ipc://{tmp_path / 'ev.sock'}"
    sock.bind(address)
    lock = threading.Lock()

    def publish(frames: list[bytes]) -> None:
        with lock:  # the request thread publishes; the fixture's thread closes
            while sock.poll(0):
                sock.recv()
            sock.send_multipart(frames)

    def subscribed() -> None:
        deadline = time.monotonic() + 5
        with lock:
            while (left := deadline - time.monotonic()) > 0 and sock.poll(int(left * 1000) + 1):
                if sock.recv() == b"\x01handover":
                    return
        raise AssertionError("no subscription to 'handover' within 5s")
    yield address, publish, subscribed
    sock.close(linger=0)
    ctx.term()


EVENTS = [("handover.phase", {"phase": p}) for p in ("build", "incarnate", "validate", "switch")]
EVENTS.append(("handover.switched", {"old": "inc-1", "new": "inc-2", "env_id": "cccc3333dddd4444"}))


#: what the supervisor sends right after the switch, before the reply may be read
AFTER = [("handover.phase", {"phase": "drain"})]


def run_follow(capsys, pub, *flags: str, reply: Any, events=EVENTS + AFTER) -> tuple[int, str, str]:
    address, publish, subscribed = pub
    args = parse("evolve", "--add", "greetlib==1.0", *flags)
    message = EvolveRequest(id="r-mine", add=["greetlib==1.0"])
    fake = FakeClient(publish, events, reply)

    def connect() -> FakeClient:
        subscribed()  # the subscriber is connected before the request is sent
        return fake
    code = progress.follow(args, message, connect, address)
    assert [m.id for m in fake.sent] == ["r-mine"]
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(message: Any) -> Reply:
    return Reply(id=message.id, ok=True, result=SWITCHED)


def failed(message: Any) -> Reply:
    return Reply(id=message.id, ok=False, error=ErrorInfo(
        type="HandoverFailed", message="validate: boomlib refuses (handover h-1a2b3c)",
        where="supervisor"))


def test_follow_shows_each_phase_on_stderr_then_the_summary(capsys, pub):
    code, out, err = run_follow(capsys, pub, reply=ok)
    assert code == 0
    lines = err.splitlines()
    shown = [line.split("] ", 1)[1].split()[0] for line in lines]
    assert shown == ["build", "incarnate", "validate", "switch", "switched"]
    assert all(line.startswith("[") and "s] " in line for line in lines)
    assert "(build took " in lines[1]
    assert out.splitlines()[0].startswith("switched: evolve h-1a2b3c in 6.8s")


def test_follow_with_json_streams_events_then_the_reply(capsys, pub):
    code, out, err = run_follow(capsys, pub, "--json", reply=ok)
    assert code == 0
    assert err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in rows[:-1]] == [k for k, _ in EVENTS]
    assert all(r["data"]["request"] == "r-mine" for r in rows[:-1])
    assert rows[-1] == {"v": 1, "id": "r-mine", "ok": True, "result": SWITCHED}


def test_a_failed_handover_shows_its_phases_and_one_error(capsys, pub):
    events = [*EVENTS[:3], ("handover.completed", {"outcome": "failed", "failed_phase": "validate",
                                                   "reason": "boomlib refuses"})]
    code, out, err = run_follow(capsys, pub, reply=failed, events=events)
    assert code == 1
    assert out == ""
    *phases, last = err.splitlines()
    assert phases[-1].endswith("completed: failed in validate: boomlib refuses")
    assert last == "batos evolve: HandoverFailed: validate: boomlib refuses (handover h-1a2b3c)"

    code, out, err = run_follow(capsys, pub, "--json", reply=failed, events=events)
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[-1]["ok"] is False
    assert rows[-1]["error"]["type"] == "HandoverFailed"
    assert "result" not in rows[-1]
    error = json.loads(err)["error"]
    assert (error["type"], error["where"], error["id"]) == ("HandoverFailed", "supervisor", "r-mine")


def test_without_the_event_stream_it_says_so_once_and_waits_for_the_reply(capsys, tmp_path):
    args = parse("evolve", "--add", "greetlib==1.0")
    message = EvolveRequest(id="r-mine", add=["greetlib==1.0"])

    class Quiet:
        def __enter__(self) -> Quiet:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def request(self, message: Any) -> Reply:
            return ok(message)
    gone = f"ipc://{tmp_path / 'elsewhere' / 'ev.sock'}"
    assert progress.follow(args, message, Quiet, gone) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"batos evolve: no progress to show: its event stream {gone} is not "
                            "on this machine; waiting for the reply\n")
    assert captured.out.startswith("switched: evolve h-1a2b3c")
    assert isinstance(progress.EventFeed.open(None), str)
