"""The conformance suite's own parts, without a supervisor: the shapes it holds replies and
events to, its table of checks, its command line, and its verdicts against a fake
frontend that behaves as protocol 1.0 says or as the server did before it (both keys
in a reply, id "" on UnsupportedVersion, six frames dropped), so a regression of W1,
W2 or W5 is shown to fail the suite. The fake is a ROUTER on an ipc socket in the test's
folder, answered by a thread the fixture stops; every receive has a deadline.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
import zmq

from bridge.conformance import FAIL, PASS, SKIP, Options, ordered, run
from bridge.conformance.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, main
from bridge.conformance.registry import Failed, select
from bridge.conformance.shapes import event_problems, expect_error, expect_ok, reply_problems


def _ok(result: Any, rid: str = "r1") -> dict[str, Any]:
    return {"v": 1, "id": rid, "ok": True, "result": result}


def _err(type_: str, message: str = "m", rid: str = "r1",
         where: str = "supervisor") -> dict[str, Any]:
    error = {"type": type_, "message": message, "where": where}
    return {"v": 1, "id": rid, "ok": False, "error": error}


# --- shapes -----------------------------------------------------------------------------


def test_a_reply_has_one_of_result_or_error() -> None:
    assert reply_problems(_ok(None)) == []
    assert reply_problems(_err("Busy")) == []
    both = {**_ok(1), "error": None}
    assert any("exactly the keys" in p for p in reply_problems(both))
    old_error = {**_err("Busy"), "result": None}
    assert any("extra: ['result']" in p for p in reply_problems(old_error))
    assert any("v: 1" in p for p in reply_problems({**_ok(1), "v": 2}))
    assert any("'ok' is a boolean" in p for p in reply_problems({**_ok(1), "ok": 1}))
    assert any("error.where" in p for p in reply_problems(
        {**_err("Busy"), "error": {"type": "Busy", "message": "m", "where": None}}))
    assert reply_problems([1]) == ["a reply is a msgpack map, got list: [1]"]


def test_expect_error_names_what_differs() -> None:
    assert expect_error(_err("Busy", "handover h-1 runs"), "Busy", rid="r1", mentions=("h-1",))
    with pytest.raises(Failed, match="expected UnsupportedVersion, got InvalidMessage"):
        expect_error(_err("InvalidMessage"), "UnsupportedVersion", rid="r1")
    with pytest.raises(Failed, match="carries id ''; expected 'r1'"):
        expect_error(_err("UnsupportedVersion", rid=""), "UnsupportedVersion", rid="r1")
    with pytest.raises(Failed, match="does not name"):
        expect_error(_err("InvalidValue", "bad"), "InvalidValue", rid="r1", mentions=("args[0]",))
    with pytest.raises(Failed, match="where is 'inc-1'"):
        expect_error(_err("Busy", where="inc-1"), "Busy", rid="r1", where="supervisor")
    with pytest.raises(Failed, match="expected Busy, got ok"):
        expect_error(_ok(1), "Busy", rid="r1")
    assert expect_ok(_ok({"a": 1}), "r1") == {"a": 1}
    with pytest.raises(Failed, match="answered Busy"):
        expect_ok(_err("Busy"), "r1")


def _event(kind: str, data: dict[str, Any], topic: bytes | None = None) -> list[bytes]:
    body = {"v": 1, "kind": kind, "ts": 1_700_000_000.5, "data": data}
    return [topic if topic is not None else kind.split(".")[0].encode(), ormsgpack.packb(body)]


def test_events_are_judged_by_topic_shape_and_data() -> None:
    good = {"handover": "h-1", "request": "r", "phase": "build"}
    assert event_problems(_event("handover.phase", good))[1] == []
    assert event_problems(_event("handover.brand_new", {}))[1] == []  # a compatible addition
    assert event_problems(_event("gossip.x", {}))[1] == []  # so is a new topic (protocol.md 2)
    assert event_problems(_event("image.inquiry.start", {"incarnation": "inc-1"}))[1] == []
    recovered = {"handover": "h", "request": "", "outcome": "interrupted", "after_restart": True,
                 "failed_phase": "validate", "reason": "the supervisor died in it"}
    assert event_problems(_event("handover.completed", recovered))[1] == []
    problems = {
        "topic frame": _event("handover.phase", good, topic=b"handovers"),
        "lacks ['request']": _event("handover.phase", {"handover": "h", "phase": "build"}),
        "phase is one of": _event("handover.phase", {**good, "phase": "warp"}),
        "outcome is one of": _event("handover.completed", {"handover": "h", "request": "",
                                                           "outcome": "ok"}),
        "names failed_phase": _event("handover.completed", {"handover": "h", "request": "",
                                                            "outcome": "failed"}),
        "lacks ['incarnation']": _event("image.x", {}),
        "lacks ['reason']": _event("handover.rolled_back", {"handover": "h", "request": "",
                                                            "to": None}),
        "two frames": [b"handover"],
    }
    for words, frames in problems.items():
        assert any(words in p for p in event_problems(frames)[1]), words


# --- the table of checks and the command line --------------------------------------------


def test_every_check_has_a_section_and_a_summary_and_runs_in_order() -> None:
    checks = ordered()
    names = [c.name for c in checks]
    assert len(names) == len(set(names))
    assert names[0] == "reachable"
    assert all(n.startswith("events-") for n in names[names.index("events-subscribe"):])
    for chk in checks:
        assert chk.section[0].isdigit(), chk  # a section number of docs/protocol.md
        assert chk.summary, chk
    assert [c.name for c in select(checks, ["once-"])] == ["once-resend", "once-concurrent",
                                                           "once-clone"]
    assert [c.name for c in select(checks, ["busy", "ping"])] == ["ping", "busy"]


def test_list_prints_every_check_without_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list", "--json"]) == EXIT_OK
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [c["name"] for c in listed] == [c.name for c in ordered()]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["tcp://127.0.0.1:1", "--only", "no-such-check"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
    capsys.readouterr()


def test_a_silent_endpoint_exits_3_and_skips_the_rest(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"ipc://{tmp_path}/nobody.sock"
    assert main([endpoint, "--json", "--timeout", "0.2", "--only", "ping", "--only", "once-*"]) \
        == EXIT_UNREACHABLE
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["name"] == "reachable"
    assert lines[0]["outcome"] == FAIL
    assert "silence" in lines[0]["reason"]
    assert {line["outcome"] for line in lines[1:-1]} == {SKIP}
    assert lines[-1]["summary"]["failed"] == 1


# --- verdicts against a fake frontend -----------------------------------------------------

Answer = Callable[[list[bytes]], list[list[bytes]]]


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value)


def frontend(*, both_keys: bool = False, echo_version_id: bool = True,
             drop_six: bool = False) -> Answer:
    """A tiny frontend: ping, status, version and envelope rules as protocol 1.0 says,
    or with one of the old server's faults."""
    def reply(body: dict[str, Any]) -> bytes:
        if both_keys:
            body = {"result": None, "error": None, **body}
        return _pack(body)

    def answer(frames: list[bytes]) -> list[list[bytes]]:
        envelope, payload = frames[:-1], frames[-1]
        if len(envelope) > 4:
            if drop_six:
                return []
            return [[*envelope[:4], reply(_err("MalformedFrame", f"too many frames: "
                                              f"{len(frames)}; at most 4 before the payload", ""))]]
        try:
            data = ormsgpack.unpackb(payload)
        except ormsgpack.MsgpackDecodeError:
            return [[*envelope, reply(_err("MalformedFrame", "not msgpack", ""))]]
        rid = data.get("id") if isinstance(data, dict) else ""
        if not isinstance(data, dict) or data.get("v") != 1:
            found = "missing" if not isinstance(data, dict) or "v" not in data else repr(data["v"])
            echoed = rid if echo_version_id and isinstance(rid, str) else ""
            return [[*envelope, reply(_err("UnsupportedVersion", f"v {found}; this side speaks 1",
                                           echoed))]]
        if data.get("kind") == "ping":
            result = {"pong": True, "pid": 1, "uptime": 0.5, "state": "serving",
                      "protocol": "1.0"}
            return [[*envelope, reply(_ok(result, rid))]]
        if data.get("kind") == "status":
            return [[*envelope, reply(_ok({"state": "serving"}, rid))]]
        return [[*envelope, reply(_err("InvalidMessage", "field 'kind': unknown", rid))]]
    return answer


class Fake:
    """A ROUTER on ``address`` answered by ``answer`` in a thread, until ``close``."""

    def __init__(self, address: str, answer: Answer) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(address)
        self.answer = answer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(20):
                identity, *frames = self.sock.recv_multipart()
                for out in self.answer(frames):
                    self.sock.send_multipart([identity, *out])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[Answer], str]]:
    started: list[Fake] = []

    def start(answer: Answer) -> str:
        address = f"ipc://{tmp_path}/fe-{len(started)}.sock"
        started.append(Fake(address, answer))
        return address
    try:
        yield start
    finally:
        for server in started:
            server.close()


CHOSEN = ("reachable", "ping", "unsupported-version", "envelope-echo", "envelope-too-many",
          "req-socket")


def _verdicts(endpoint: str) -> dict[str, Any]:
    results = run(Options(endpoint, timeout=2.0, only=CHOSEN))
    return {r.name: r for r in results}


def test_a_frontend_as_specified_passes(fake: Callable[[Answer], str]) -> None:
    verdicts = _verdicts(fake(frontend()))
    outcomes = {name: verdicts[name].outcome for name in CHOSEN}
    assert outcomes == dict.fromkeys(CHOSEN, PASS), verdicts


def test_replies_with_both_keys_fail_w1(fake: Callable[[Answer], str]) -> None:
    verdicts = _verdicts(fake(frontend(both_keys=True)))
    assert verdicts["reachable"].outcome == PASS  # it answers: the shape is ping's to judge
    assert verdicts["ping"].outcome == FAIL
    assert "exactly the keys" in verdicts["ping"].reason


def test_an_unechoed_version_error_fails_w2(fake: Callable[[Answer], str]) -> None:
    verdict = _verdicts(fake(frontend(echo_version_id=False)))["unsupported-version"]
    assert verdict.outcome == FAIL
    assert "carries id ''" in verdict.reason


def test_a_dropped_message_fails_w5(fake: Callable[[Answer], str]) -> None:
    verdict = _verdicts(fake(frontend(drop_six=True)))["envelope-too-many"]
    assert verdict.outcome == FAIL
    assert "expected exactly one reply, got 0" in verdict.reason


def test_a_second_reply_is_seen(fake: Callable[[Answer], str]) -> None:
    proper = frontend()

    def twice(frames: list[bytes]) -> list[list[bytes]]:
        answers = proper(frames)
        return answers * 2 if len(frames) > 1 else answers
    verdict = _verdicts(fake(twice))["envelope-echo"]
    assert verdict.outcome == FAIL
    assert "got 2" in verdict.reason


def test_the_command_line_prints_a_table_and_exits_1_on_a_failure(
        fake: Callable[[Answer], str], capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = fake(frontend(both_keys=True))
    assert main([endpoint, "--only", "ping", "--timeout", "2"]) == EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["CHECK", "SECTION", "RESULT", "REASON"]
    assert out[1].split()[:4] == ["ping", "3.4", "ping", "FAIL"]
    assert "exactly the keys" in out[1]
    assert out[-1].startswith("0 passed, 1 failed, 0 skipped")
    assert main([fake(frontend()), "--only", "ping", "--json"]) == EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("outcome") for line in lines[:-1]] == [PASS]
    assert lines[-1]["summary"]["passed"] == 1
