"""The codec's answers to what a client may send, and the reply's wire form.

Frames are built with ormsgpack (``OPT_NON_STR_KEYS``, ``Ext``) or by hand where no
encoder writes them (a map as a map key). Each refusal names its type, its message and
the id it carries for the error reply (``ProtocolError.request_id``).
"""

from __future__ import annotations

from typing import Any

import ormsgpack
import pytest

from bridge import InvalidValue as ExportedInvalidValue
from bridge.codec import (
    SCAN_LIMIT,
    decode_reply,
    decode_request,
    encode,
    peek_id,
    unpack,
    validate_request,
)
from bridge.errors import (
    FrameTooLarge,
    InvalidMessage,
    InvalidValue,
    MalformedFrame,
    ProtocolError,
    UnsupportedVersion,
)
from bridge.messages import (
    SUPERVISOR_ERROR_TYPES,
    ErrorInfo,
    PingRequest,
    Reply,
    SendRequest,
)
from bridge.wire_values import Extension, first_problem, lenient, scan


def packed(value: Any) -> bytes:
    return ormsgpack.packb(value, option=ormsgpack.OPT_NON_STR_KEYS)


def refusal(frame: bytes, **kw: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        validate_request(unpack(frame, **kw))
    return info.value


SEND = {"v": 1, "kind": "send", "id": "r-1", "target": "genesis", "selector": "printString"}


# --- W4: values the wire does not carry ---------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    ([{1: 2}], "args[0]: map key 1 is not a string"),
    ([{"a": 1}, {None: 1}], "args[1]: map key nil is not a string"),
    ([{True: 1}], "args[0]: map key true is not a string"),
    ([{1.5: 1}], "args[0]: map key 1.5 is not a string"),
    ([{b"k": 1}], "args[0]: map key b'k' is not a string"),
    ([{(1, 2): 1}], "args[0]: map key [...] (an array) is not a string"),
    ([{"outer": [0, {"in ner": {7: 0}}]}], "args[0].outer[1]['in ner']: map key 7 is not a string"),
    ([0, ormsgpack.Ext(5, b"ab")], "args[1]: msgpack extension type 5 is not supported"),
    ([{"when": ormsgpack.Ext(99, b"\x00\x00\x00\x01")}],  # made the timestamp -1 below
     "args[0].when: msgpack extension type -1 (timestamp) is not supported"),
])
def test_a_value_the_wire_does_not_carry_is_invalid_value_naming_its_path(args, message):
    # ormsgpack writes no negative extension types: fixext 4 of type 99 becomes type -1
    exc = refusal(packed({**SEND, "args": args}).replace(b"\xd6\x63", b"\xd6\xff"))
    assert type(exc) is InvalidValue
    assert str(exc) == message
    assert exc.request_id == "r-1"


def test_a_non_string_key_at_the_top_is_named_without_a_path():
    exc = refusal(packed({**SEND, 3: "x"}))
    assert (type(exc), str(exc), exc.request_id) == (InvalidValue, "map key 3 is not a string",
                                                     "r-1")


def test_a_map_or_an_extension_as_a_map_key_is_found_in_the_bytes():
    # {"v": 1, "id": "x", "args": [{{1: 2}: 3}]}: no dict can hold it, so no encoder writes it
    frame = b"\x83\xa1v\x01\xa2id\xa1x\xa4args\x91\x81\x81\x01\x02\x03"
    exc = refusal(frame)
    assert (type(exc), str(exc), exc.request_id) == (
        InvalidValue, "args[0]: map key {...} (a map) is not a string", "x")
    ext_key = b"\x83\xa1v\x01\xa2id\xa1x\xa4args\x91\x81\xd4\x05\x00\x01"
    assert str(refusal(ext_key)) == "args[0]: map key of msgpack extension type 5 is not a string"
    # the id may come after the bad key; v is checked first
    late_id = b"\x83\xa1v\x01\xa4args\x91\x81\x81\x01\x02\x03\xa2id\xa1y"
    assert refusal(late_id).request_id == "y"
    no_v = b"\x82\xa2id\xa1x\xa4args\x91\x81\x81\x01\x02\x03"
    assert (type(refusal(no_v)), refusal(no_v).request_id) == (UnsupportedVersion, "x")
    truncated = b"\x83\xa1v\x01\xa2id\xa1x\xa4args\x91\x81\x81\x01"
    assert type(refusal(truncated)) is MalformedFrame


def test_a_map_as_a_key_in_a_large_frame_is_refused_without_reading_its_bytes():
    """Over ``SCAN_LIMIT`` the byte reader (Python) is not run: still ``InvalidValue``."""
    filler = b"\xc0" * (SCAN_LIMIT + 10)  # nils, then {{}: 1}
    frame = (b"\x83\xa1v\x01\xa2id\xa1x\xa4args\xdd" + (len(filler) + 1).to_bytes(4, "big")
             + filler + b"\x81\x80\x01")
    exc = refusal(frame)
    assert type(exc) is InvalidValue
    assert "not searched for where" in str(exc)


def test_invalid_value_is_a_protocol_error_the_package_exports():
    assert issubclass(InvalidValue, ProtocolError)
    assert ExportedInvalidValue is InvalidValue
    assert {"InvalidValue", "InvalidRequest"} <= SUPERVISOR_ERROR_TYPES


def test_the_value_walkers_agree():
    value = {"v": 1, "args": [[0]] * 1000 + [{"k": [1, 2, {5: 1}]}]}
    assert first_problem(lenient(packed(value))) == "args[1000].k[2]: map key 5 is not a string"
    assert first_problem(lenient(packed({"fine": [1, "x", b"y", None]}))) is None
    scanned = scan(packed(value))
    assert scanned is not None
    assert scanned.is_map
    assert scanned.fields == {"v": 1}
    assert scanned.problem == "args[1000].k[2]: map key 5 is not a string"
    assert scan(b"\xc1") is None
    assert scan(b"\x92\x01") is None  # truncated
    assert len({Extension(5, 2), Extension(5, 2)}) == 1
    # a 1 MiB frame with its extension at the very end
    body = b"\x00" * ((1 << 20) - 64)
    frame = (b"\x83\xa1v\x01\xa2id\xa1x\xa4args\xdd" + (len(body) + 1).to_bytes(4, "big")
             + body + b"\xd4\x05\x00")
    with pytest.raises(InvalidValue, match=rf"args\[{len(body)}\]: msgpack extension type 5"):
        unpack(frame)


# --- W3 and W2: the version, and the id every refusal carries ------------------------------


@pytest.mark.parametrize(("v", "found"), [
    (None, "has no protocol version field 'v'"),
    (2, "has protocol version 2, which is not spoken here"),
    (0, "has protocol version 0, which is not spoken here"),
    ("1", "has protocol version '1', which is not spoken here"),
    (1.0, "has protocol version 1.0, which is not spoken here"),
    (True, "has protocol version true, which is not spoken here"),
])
def test_a_missing_or_wrong_version_is_unsupported_version_with_the_id(v, found):
    message = {key: value for key, value in SEND.items() if key != "v"}
    if v is not None:
        message["v"] = v
    exc = refusal(packed(message))
    assert type(exc) is UnsupportedVersion
    assert str(exc) == f"the message {found}; this side speaks 1"
    assert exc.request_id == "r-1"


@pytest.mark.parametrize(("frame", "kind", "rid"), [
    (b"\xc1", MalformedFrame, ""),
    (packed([1, 2]), MalformedFrame, ""),
    (packed({**SEND, "id": ""}), InvalidMessage, ""),
    (packed({**SEND, "id": "x" * 129}), InvalidMessage, ""),
    (packed({**SEND, "id": 5, "v": 2}), UnsupportedVersion, ""),
    (packed({**SEND, "id": "x" * 128, "v": 2}), UnsupportedVersion, "x" * 128),
    (packed({**SEND, "kind": "nope"}), InvalidMessage, "r-1"),
    (packed({**SEND, "target": ""}), InvalidMessage, "r-1"),
    (packed({**SEND, "extra": 1}), InvalidMessage, "r-1"),
])
def test_each_refusal_carries_the_id_when_the_frame_had_a_valid_one(frame, kind, rid):
    exc = refusal(frame)
    assert type(exc) is kind
    assert exc.request_id == rid


def test_a_frame_over_the_limit_is_refused_before_it_is_read():
    frame = packed({**SEND, "args": ["x" * 100]})
    exc = refusal(frame, max_size=len(frame) - 1)
    assert (type(exc), exc.request_id) == (FrameTooLarge, "")


def test_a_valid_request_decodes():
    request = decode_request(encode(SendRequest(id="ok", target="genesis", selector="x:",
                                                args=[{"a": [1, b"b", None]}])))
    assert request.args == [{"a": [1, b"b", None]}]
    assert peek_id({"id": "ok"}) == "ok"


# --- W1: the reply's wire form --------------------------------------------------------------


def test_an_ok_reply_has_no_error_key_and_an_error_reply_no_result_key():
    ok = ormsgpack.unpackb(encode(Reply(id="a", ok=True, result=None)))
    assert ok == {"v": 1, "id": "a", "ok": True, "result": None}
    err = ormsgpack.unpackb(encode(Reply(id="a", ok=False, error=ErrorInfo(
        type="Busy", message="a handover runs", where="supervisor"))))
    assert err == {"v": 1, "id": "a", "ok": False,
                   "error": {"type": "Busy", "message": "a handover runs", "where": "supervisor"}}


def test_replies_of_either_form_decode():
    for wire in ({"v": 1, "id": "a", "ok": True, "result": [1]},
                 {"v": 1, "id": "a", "ok": True, "result": [1], "error": None}):
        reply = decode_reply(ormsgpack.packb(wire))
        assert (reply.ok, reply.result, reply.error) == (True, [1], None)
    error = {"type": "Busy", "message": "m", "where": "supervisor"}
    for wire in ({"v": 1, "id": "a", "ok": False, "error": error},
                 {"v": 1, "id": "a", "ok": False, "result": None, "error": error}):
        reply = decode_reply(ormsgpack.packb(wire))
        assert reply.error == ErrorInfo(**error)
    with pytest.raises(InvalidMessage):
        decode_reply(ormsgpack.packb({"v": 1, "id": "a", "ok": False}))
    with pytest.raises(InvalidMessage):
        decode_reply(ormsgpack.packb({"v": 1, "id": "a", "ok": True, "error": error}))


def test_other_messages_encode_as_before():
    assert ormsgpack.unpackb(encode(PingRequest(id="p"))) == {"v": 1, "kind": "ping", "id": "p"}
