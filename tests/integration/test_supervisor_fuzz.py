"""Hostile and broken clients cannot disturb the supervisor.

Hypothesis drives a raw DEALER (linger 0) against a real supervisor with
``max_frame = 65536``: random bytes, truncated msgpack, msgpack of the wrong shape,
maps with wrong or missing fields, a wrong or missing ``v``, unknown kinds, huge
strings, non-string map keys, extension values, extra envelope frames, too many frames,
frames over ``max_frame``. The oracle is the codec itself: for each payload the test
computes the error the supervisor must answer (``MalformedFrame``, ``InvalidMessage``,
``InvalidValue``, ``UnsupportedVersion``, ``FrameTooLarge``) and the id it must carry
(``ProtocolError.request_id``: the frame's id whenever it had a valid one). Every
message gets exactly one reply, in the wire form (``result`` or ``error``, never both):
too many frames before the payload get ``MalformedFrame`` with id "" on the first four.
Each case is followed by a ``ping`` sentinel on the same socket, so "exactly one" is
checked without waiting for a silence.

Afterwards the supervisor is alive, answers ``ping`` and a real ``send``, and its log
holds the warnings. A frame past ZMQ's own limit (4 x ``max_frame``) only drops that
connection; a client that goes away with a request in flight costs nothing either;
a REQ client works (its delimiter frame comes back).
"""

from __future__ import annotations

from typing import Any

import ormsgpack
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge import new_request_id
from bridge.codec import decode_reply, encode, peek_id, unpack, validate_request
from bridge.errors import ProtocolError
from bridge.messages import PingRequest, SendRequest
from supervisor.frontend import MAX_ENVELOPE
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    Supervisor,
    Supervisors,
    make_recorders,
    spin_count,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

MAX_FRAME = 65536
PROTOCOL_ERRORS = {"MalformedFrame", "InvalidMessage", "InvalidValue", "UnsupportedVersion",
                   "FrameTooLarge"}
REPLY_TIMEOUT_MS = 5000

_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
            | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# what the protocol does not carry: a map key that is not a string, an extension value
_strange = st.recursive(
    _scalars | st.builds(ormsgpack.Ext, st.integers(0, 127), st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=4) | st.integers(-5, 5) | st.none() | st.booleans(), inner,
        max_size=3), max_leaves=8)
_maps = st.fixed_dictionaries({}, optional={
    "v": st.sampled_from([1, 1, 1, 0, 2, -1, "1", None, 1.5]),
    "kind": st.sampled_from(["send", "describe", "status", "ping", "evolve", "", "SEND", 7]),
    "id": st.sampled_from(["fuzz-id", "", "x" * 129, 5, None]) | st.text(min_size=1, max_size=12),
    # harmless on purpose: a valid fuzzed send only reads the image
    "target": st.sampled_from(["genesis", "no-such-object", "", 3]),
    "selector": st.sampled_from(["printString", "slotNames", "noSuchSelector", "", None]),
    "args": st.sampled_from([[], [1], "notalist", {"a": 1}]) | st.lists(_strange, max_size=3),
    "author": st.sampled_from([None, "fuzz", "a" * 65]),
}).flatmap(lambda base: st.dictionaries(st.text(max_size=6), _values, max_size=2).map(
    lambda extra: {**extra, **base}))
_huge = st.integers(200, 60_000).flatmap(lambda n: st.sampled_from([
    {"v": 1, "kind": "send", "id": "x" * n, "target": "genesis", "selector": "printString"},
    {"v": 1, "kind": "send", "id": "huge", "target": "t" * n, "selector": "printString"},
    {"v": 1, "kind": "ping", "id": "huge", "pad": "p" * n},
]))


def _pack(value: Any) -> bytes:
    return encode(value)


_valid = encode(SendRequest(id="fuzz-valid", target="genesis", selector="printString", args=[1]))
payloads = st.one_of(
    st.binary(max_size=300),
    st.integers(0, len(_valid) - 1).map(lambda n: _valid[:n]),
    _values.map(_pack),
    _maps.map(_pack),
    _huge.map(_pack),
    st.integers(MAX_FRAME + 1, 3 * MAX_FRAME).map(lambda n: b"\x91" + b"\x00" * (n - 1)),
)
# extra frames before the payload; one message in eight has too many (5-9: MalformedFrame)
_envelopes = st.tuples(st.lists(st.binary(max_size=16), max_size=4),
                       st.sampled_from([0] * 7 + [5])).map(lambda e: e[0] + [b"pad"] * e[1])
messages = st.tuples(_envelopes, payloads)


def expected_error(payload: bytes) -> tuple[str, str] | None:
    """(error type, reply id) the supervisor must answer, or None for a valid request."""
    try:
        validate_request(unpack(payload, max_size=MAX_FRAME))
    except ProtocolError as exc:
        return type(exc).__name__, exc.request_id
    return None


def wire_form(frames: list[bytes]) -> set[str]:
    """The reply's keys as they came: result or error, never both."""
    keys = set(ormsgpack.unpackb(frames[-1]))
    assert keys in ({"v", "id", "ok", "result"}, {"v", "id", "ok", "error"}), keys
    return keys


def receive(sock: zmq.Socket[bytes]) -> list[bytes]:
    assert sock.poll(REPLY_TIMEOUT_MS), f"no reply within {REPLY_TIMEOUT_MS} ms"
    return sock.recv_multipart()


def ping_sentinel(sock: zmq.Socket[bytes]) -> str:
    sentinel = new_request_id()
    sock.send(encode(PingRequest(id=sentinel)))
    return sentinel


@pytest.fixture
def fuzz_supervisor(supervisors: Supervisors) -> Supervisor:
    return supervisors.start(config={"max_frame": MAX_FRAME})


@pytest.fixture
def dealer(fuzz_supervisor: Supervisor) -> Any:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(fuzz_supervisor.endpoint)
    try:
        yield sock
    finally:
        sock.close(linger=0)
        ctx.term()


def test_malformed_frames_get_error_replies(fuzz_supervisor: Supervisor,
                                            dealer: zmq.Socket[bytes]) -> None:
    counts = {"errors": 0, "too_many": 0, "valid": 0}
    types: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(message=messages)
    @example(message=([], b"\xc1"))  # each kind of answer at least once
    @example(message=([], _pack({"v": 2, "kind": "ping", "id": "a"})))
    @example(message=([b""], _pack({"v": 1, "kind": "evolve", "id": "a"})))
    @example(message=([b"x"], b"\x91" + b"\x00" * MAX_FRAME))
    @example(message=([b"e"] * 5, b""))
    @example(message=([], _valid))
    @example(message=([], _pack({"kind": "ping", "id": "no-v"})))
    @example(message=([], _pack({"v": 1, "kind": "send", "id": "k", "target": "genesis",
                                 "selector": "printString", "args": [{1: 2}]})))
    @example(message=([b""], _pack({"v": 1, "kind": "send", "id": "x", "target": "genesis",
                                    "selector": "printString", "args": [ormsgpack.Ext(5, b"")]})))
    def check(message: tuple[list[bytes], bytes]) -> None:
        envelope, payload = message
        dealer.send_multipart([*envelope, payload])
        sentinel = ping_sentinel(dealer)
        expected = expected_error(payload)
        replies = []
        while True:
            frames = receive(dealer)
            reply = decode_reply(frames[-1])
            if reply.id == sentinel and not frames[:-1]:
                break
            replies.append((frames, reply))
        for frames, _reply in replies:
            wire_form(frames)
        if len(envelope) > MAX_ENVELOPE:  # answered at once, on the first four, never dropped
            assert len(replies) == 1, replies
            frames, reply = replies[0]
            assert frames[:-1] == envelope[:MAX_ENVELOPE]
            assert reply.error is not None
            assert (reply.error.type, reply.id) == ("MalformedFrame", "")
            assert reply.error.message.startswith("too many frames")
            counts["too_many"] += 1
            return
        if expected is None:  # a valid request: answered (forwarded ones after the sentinel)
            if not replies:
                replies.append((frames := receive(dealer), decode_reply(frames[-1])))
            assert replies[0][1].id == peek_id(unpack(payload, max_size=MAX_FRAME))
            counts["valid"] += 1
            return
        assert len(replies) == 1, replies
        frames, reply = replies[0]
        assert frames[:-1] == envelope  # the envelope comes back as sent
        assert reply.ok is False
        assert reply.error is not None
        assert (reply.error.type, reply.id) == expected
        assert reply.error.type in PROTOCOL_ERRORS
        assert reply.error.where == "supervisor"
        counts["errors"] += 1
        types.add(reply.error.type)

    check()
    assert counts["errors"] > 100, counts
    assert types == PROTOCOL_ERRORS
    assert counts["too_many"] > 0
    assert counts["valid"] > 0
    sup = fuzz_supervisor
    sup.check_running()
    assert sup.client.ping()["state"] == "serving"
    assert sup.client.send("genesis", "printString").startswith("<genesis")
    warnings = [r for r in sup.log_records() if r["level"] == "WARNING"]
    assert any("bad frame" in r["msg"] for r in warnings)
    assert any("invalid request" in r["msg"] for r in warnings)
    assert any("too many frames" in r["msg"] for r in warnings)


def test_a_frame_over_zmqs_limit_drops_only_that_connection(fuzz_supervisor: Supervisor,
                                                            dealer: zmq.Socket[bytes]) -> None:
    dealer.send(b"\x00" * (4 * MAX_FRAME + 1))  # over MAXMSGSIZE: libzmq drops the peer

    def answered() -> bool:
        sentinel = ping_sentinel(dealer)
        while dealer.poll(200):
            if decode_reply(dealer.recv_multipart()[-1]).id == sentinel:
                return True
        return False
    wait_until(answered, timeout=20, interval=0)  # the DEALER reconnects by itself
    fuzz_supervisor.check_running()
    assert fuzz_supervisor.client.ping()["state"] == "serving"


def test_a_client_gone_mid_request_does_not_disturb_it(fuzz_supervisor: Supervisor,
                                                       dealer: zmq.Socket[bytes]) -> None:
    sup = fuzz_supervisor
    make_recorders(sup.client, ["worker"])
    count = spin_count(sup.client, "worker", 1.0)
    dealer.send(encode(SendRequest(id="gone", target="worker", selector="spin:", args=[count])))
    wait_until(lambda: sup.status()["routing"]["inflight"] == 1, timeout=10)
    dealer.close(linger=0)
    wait_until(lambda: sup.status()["routing"]["inflight"] == 0, timeout=30)
    sup.check_running()
    assert sup.client.ping()["state"] == "serving"
    assert sup.client.send("worker", "spin:", 10) == 45
    assert any(r["msg"].startswith("reply not delivered") for r in sup.log_records())


def test_a_req_client_gets_its_delimiter_back(fuzz_supervisor: Supervisor) -> None:
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(fuzz_supervisor.endpoint)
        req.send(encode(PingRequest(id="req-ping")))
        assert req.poll(REPLY_TIMEOUT_MS)
        reply = decode_reply(req.recv())
        assert reply.ok
        assert reply.id == "req-ping"
        assert reply.result["pong"] is True
    finally:
        req.close(linger=0)
        ctx.term()
