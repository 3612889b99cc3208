"""The frontend answers every client message it is handed, once, on the right envelope.

Only the refusals are driven here (a fake desk with a recording ``reply``): what a
valid request does is the handlers' business (tests/unit/test_supervisor_parts.py), and
the same frames against a real supervisor are in tests/integration/test_wire_edges.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import ormsgpack
import pytest

from bridge.codec import encode
from bridge.messages import Reply
from supervisor.frontend import MAX_ENVELOPE, Frontend

IDENTITY = b"\x00client"


class Replies:
    def __init__(self) -> None:
        self.sent: list[tuple[tuple[bytes, ...], dict[str, Any]]] = []

    def reply(self, envelope: tuple[bytes, ...], reply: Reply | bytes) -> None:
        self.sent.append((envelope, ormsgpack.unpackb(
            reply if isinstance(reply, bytes) else encode(reply))))


@pytest.fixture
def front() -> tuple[Frontend, Replies]:
    replies = Replies()
    desk = SimpleNamespace(sockets=replies, config=SimpleNamespace(max_frame=4096))
    return Frontend(desk), replies  # type: ignore[arg-type]


def one(replies: Replies) -> tuple[tuple[bytes, ...], dict[str, Any]]:
    assert len(replies.sent) == 1, replies.sent
    return replies.sent[0]


@pytest.mark.parametrize("extra", [MAX_ENVELOPE + 1, MAX_ENVELOPE + 3])
def test_too_many_frames_are_answered_malformed_frame_not_dropped(front, extra):
    frontend, replies = front
    routing = [b"e%d" % i for i in range(extra)]
    payload = encode({"v": 1, "kind": "ping", "id": "p"})
    frontend.receive(1, [IDENTITY, *routing, payload], 0.0)
    envelope, reply = one(replies)
    assert envelope == (b"\x01", IDENTITY, *routing[:MAX_ENVELOPE])
    assert reply == {"v": 1, "id": "", "ok": False, "error": {
        "type": "MalformedFrame", "where": "supervisor",
        "message": f"too many frames: {extra + 1}; at most {MAX_ENVELOPE} before the payload"}}


def test_a_message_without_a_payload_is_answered_too(front):
    frontend, replies = front
    frontend.receive(0, [IDENTITY], 0.0)
    envelope, reply = one(replies)
    assert envelope == (b"\x00", IDENTITY)
    assert reply["error"]["type"] == "MalformedFrame"
    frontend.receive(0, [], 0.0)  # nothing to answer to: no identity
    assert len(replies.sent) == 1


@pytest.mark.parametrize(("payload", "kind", "rid"), [
    (b"\xc1", "MalformedFrame", ""),
    (b"x" * 4097, "FrameTooLarge", ""),
    (encode({"kind": "ping", "id": "p1"}), "UnsupportedVersion", "p1"),
    (encode({"v": 2, "kind": "ping", "id": "p1"}), "UnsupportedVersion", "p1"),
    (ormsgpack.packb({"v": 1, "kind": "send", "id": "p1", "target": "t", "selector": "s",
                      "args": [{1: 2}]}, option=ormsgpack.OPT_NON_STR_KEYS),
     "InvalidValue", "p1"),
    (encode({"v": 1, "kind": "send", "id": "p1"}), "InvalidMessage", "p1"),
    (encode({"v": 1, "kind": "ping", "id": ""}), "InvalidMessage", ""),
])
def test_a_refused_payload_is_answered_once_with_its_id_on_its_envelope(front, payload, kind, rid):
    frontend, replies = front
    for routing in ([], [b""], [b"a", b"b", b"c", b"d"]):
        replies.sent.clear()
        frontend.receive(0, [IDENTITY, *routing, payload], 0.0)
        envelope, reply = one(replies)
        assert envelope == (b"\x00", IDENTITY, *routing)
        assert (reply["error"]["type"], reply["id"]) == (kind, rid)
        assert "result" not in reply
