"""The wire's edges against a real ``batos up``: what a client in another language meets.

One supervisor for the module, raw DEALER sockets (linger 0, every receive with a
deadline) and the frames a third-party client might send:

* W1: a reply carries ``result`` or ``error``, never both keys, whoever built it: the
  supervisor (ping, a refusal) or the incarnation (a forwarded send, its error);
* W2, W3: a missing or wrong ``v`` is ``UnsupportedVersion`` and echoes the id; a frame
  whose id is invalid is answered with id "";
* W4: a map with an integer key, or a msgpack extension value, is ``InvalidValue``
  naming the path, with the id;
* W5: 0-4 frames before the payload come back unchanged on the reply (a valid ping, a
  forwarded send, a refusal); 5 or more are answered ``MalformedFrame`` with id "" on
  the first four, never dropped; the supervisor serves on afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
import zmq

from bridge.codec import encode
from supervisor.frontend import MAX_ENVELOPE
from tests.integration.supervisor_fixtures import Supervisor, Supervisors

pytestmark = pytest.mark.integration

REPLY_TIMEOUT_MS = 10_000
SEND = {"v": 1, "kind": "send", "target": "genesis", "selector": "printString"}


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    factory = Supervisors(Path(tmp_path_factory.mktemp("wire-edges")))
    try:
        yield factory.start()
    finally:
        factory.close_all()


@pytest.fixture
def dealer(sup: Supervisor) -> Iterator[zmq.Socket[bytes]]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(sup.endpoint)
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def packed(value: Any) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def ask(sock: zmq.Socket[bytes], payload: bytes, *envelope: bytes) -> tuple[list[bytes], dict[str, Any]]:
    """Send one message; answer its one reply (routing frames, the decoded map)."""
    sock.send_multipart([*envelope, payload])
    assert sock.poll(REPLY_TIMEOUT_MS), f"no reply within {REPLY_TIMEOUT_MS} ms"
    frames = sock.recv_multipart()
    assert not sock.poll(0), "more than one reply"
    reply = ormsgpack.unpackb(frames[-1])
    assert set(reply) in ({"v", "id", "ok", "result"}, {"v", "id", "ok", "error"}), reply
    return frames[:-1], reply


def test_every_reply_carries_result_or_error_never_both(dealer):
    _, pong = ask(dealer, packed({"v": 1, "kind": "ping", "id": "w1-ping"}))
    assert pong["ok"] is True
    assert pong["result"]["pong"] is True
    _, sent = ask(dealer, packed({**SEND, "id": "w1-send"}))  # answered by the incarnation
    assert sent["ok"] is True
    assert sent["result"].startswith("<genesis")
    _, dnu = ask(dealer, packed({**SEND, "id": "w1-dnu", "selector": "noSuchSelectorHere"}))
    assert dnu["ok"] is False
    assert dnu["error"]["type"] in {"DoesNotUnderstand", "NoMind"}  # genesis asks its mind
    assert dnu["error"]["where"] != "supervisor"  # the incarnation's own reply
    _, refused = ask(dealer, packed({**SEND, "id": "w1-bad", "target": ""}))
    assert (refused["ok"], refused["error"]["type"]) == (False, "InvalidMessage")


@pytest.mark.parametrize(("message", "kind", "rid", "says"), [
    ({"kind": "ping", "id": "w3-nov"}, "UnsupportedVersion", "w3-nov",
     "has no protocol version field 'v'"),
    ({"v": 2, "kind": "ping", "id": "w3-v2"}, "UnsupportedVersion", "w3-v2",
     "has protocol version 2"),
    ({"v": "1", "kind": "ping", "id": "w3-str"}, "UnsupportedVersion", "w3-str",
     "has protocol version '1'"),
    ({"v": 2, "kind": "ping", "id": "x" * 129}, "UnsupportedVersion", "", "has protocol version 2"),
    ({"v": 1, "kind": "ping", "id": ""}, "InvalidMessage", "", "field 'ping.id'"),
    ({"v": 1, "kind": "ping"}, "InvalidMessage", "", "field 'ping.id'"),
    ({"v": 1, "kind": "pong", "id": "w2-kind"}, "InvalidMessage", "w2-kind", "pong"),
    ({**SEND, "id": "w4-int", "args": [{1: 2}]}, "InvalidValue", "w4-int",
     "args[0]: map key 1 is not a string"),
    ({**SEND, "id": "w4-ext", "args": [1, ormsgpack.Ext(5, b"\x01")]}, "InvalidValue", "w4-ext",
     "args[1]: msgpack extension type 5 is not supported"),
    ({**SEND, "id": "w4-top", 7: "x"}, "InvalidValue", "w4-top", "map key 7 is not a string"),
])
def test_a_refusal_names_the_problem_and_echoes_a_valid_id(dealer, message, kind, rid, says):
    _, reply = ask(dealer, packed(message))
    assert reply["ok"] is False
    assert (reply["error"]["type"], reply["id"], reply["error"]["where"]) == (
        kind, rid, "supervisor")
    assert says in reply["error"]["message"]


def test_frames_that_are_not_a_message_map_are_answered_with_an_empty_id(dealer):
    for payload, kind in ((b"\xc1", "MalformedFrame"), (packed([1, 2]), "MalformedFrame"),
                          (b"\x91" + b"\x00" * (1 << 20), "FrameTooLarge")):
        _, reply = ask(dealer, payload)
        assert (reply["error"]["type"], reply["id"]) == (kind, "")


@pytest.mark.parametrize("count", range(MAX_ENVELOPE + 1))
def test_up_to_four_frames_before_the_payload_come_back_unchanged(dealer, count):
    envelope = [b"", b"\x00\xff", b"route", b"x" * 40][:count]
    rid = f"w5-{count}"
    frames, pong = ask(dealer, encode({"v": 1, "kind": "ping", "id": rid}), *envelope)
    assert (frames, pong["id"], pong["ok"]) == (envelope, rid, True)
    frames, sent = ask(dealer, encode({**SEND, "id": rid + "-send"}), *envelope)
    assert (frames, sent["id"], sent["ok"]) == (envelope, rid + "-send", True)
    frames, refused = ask(dealer, encode({"v": 9, "kind": "ping", "id": rid}), *envelope)
    assert (frames, refused["id"], refused["error"]["type"]) == (envelope, rid,
                                                                  "UnsupportedVersion")


@pytest.mark.parametrize("count", [MAX_ENVELOPE + 1, MAX_ENVELOPE + 4])
def test_more_frames_are_answered_malformed_frame_not_dropped(sup, dealer, count):
    envelope = [b"f%d" % i for i in range(count)]
    frames, reply = ask(dealer, encode({"v": 1, "kind": "ping", "id": "w5-many"}), *envelope)
    assert frames == envelope[:MAX_ENVELOPE]
    assert (reply["id"], reply["error"]["type"]) == ("", "MalformedFrame")
    assert reply["error"]["message"] == (
        f"too many frames: {count + 1}; at most {MAX_ENVELOPE} before the payload")
    _, pong = ask(dealer, encode({"v": 1, "kind": "ping", "id": "w5-after"}))
    assert pong["result"]["state"] == "serving"
    sup.check_running()
