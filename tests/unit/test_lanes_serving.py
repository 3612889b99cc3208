"""``uvm.lanes.Serving``: what a lane (and the main socket) does with one request frame.

A real kernel on a real image, behind a recording seam of our own (``Recording``: the
kernel's ``send`` and ``seen``, passing through): the request is decoded once, a frame
that does not validate is answered with the incarnation as ``where``, ``after`` and the
lane's shard reach the kernel, the reply carries ``seen()`` as its tid frame (none when
unknown), and a result msgpack cannot carry or a signal escaping the kernel is answered.
The same over real sockets and a real process: tests/integration/test_lanes.py.
"""

from __future__ import annotations

from typing import Any

import ormsgpack

from bridge.codec import encode
from bridge.messages import DescribeRequest, PingRequest, SendRequest
from lexicon.frames import REPLY, REQUEST
from uvm.lanes import Serving, after_frame

TID = b"\x03\xf0\x00\x00\x00\x00\x00\x07"


class Recording:
    """The kernel's two calls a lane makes, recorded, then passed to the real kernel."""

    def __init__(self, kernel: Any, *, seen: bytes | None = TID,
                 raises: BaseException | None = None) -> None:
        self.kernel = kernel
        self.calls: list[dict[str, Any]] = []
        self._seen = seen
        self.raises = raises

    def send(self, target: Any, selector: str, args: Any = (), **kwargs: Any) -> Any:
        self.calls.append({"target": target, "selector": selector, **kwargs})
        if self.raises is not None:
            raise self.raises
        return self.kernel.send(target, selector, args, **kwargs)

    def seen(self) -> bytes | None:
        return self._seen


def reply(frames: list[bytes]) -> dict[str, Any]:
    assert frames[0] == REPLY
    return ormsgpack.unpackb(frames[2])


def test_a_send_runs_with_its_after_and_shard_and_answers_the_tid(kernel):
    fake = Recording(kernel)
    serving = Serving(fake, "inc-7-1")
    payload = encode(SendRequest(id="r-1", target="genesis", selector="printString"))
    frames = serving.answer([REQUEST, payload, TID], "1")
    assert frames[1] == b"r-1"
    assert frames[3] == TID
    assert reply(frames)["ok"] is True
    assert fake.calls == [{"target": "genesis", "selector": "printString", "author": None,
                           "request_id": "r-1", "after": TID, "shard": "1"}]
    assert (serving.served, serving.busy) == (1, 0)


def test_no_after_frame_or_a_wrong_size_is_none_and_no_tid_is_left_out(kernel):
    fake = Recording(kernel, seen=None)
    serving = Serving(fake, "inc-7-1")
    payload = encode(DescribeRequest(id="r-2"))
    assert after_frame([REQUEST, payload]) is None
    assert after_frame([REQUEST, payload, b"\x01\x02"]) is None
    frames = serving.answer([REQUEST, payload, b"\x01\x02"], "main")
    assert len(frames) == 3
    assert reply(frames)["result"]["names"]
    assert fake.calls[0]["after"] is None
    assert fake.calls[0]["shard"] == "main"


def test_a_frame_that_does_not_validate_is_answered_not_dropped(kernel):
    fake = Recording(kernel)
    serving = Serving(fake, "inc-7-1")
    bad = ormsgpack.packb({"v": 1, "kind": "send", "id": "r-3", "target": "genesis",
                           "selector": "x", "args": "not a list"})
    frames = serving.answer([REQUEST, bad], "0")
    assert frames[1] == b"r-3"
    error = reply(frames)["error"]
    assert (error["type"], error["where"]) == ("InvalidMessage", "inc-7-1")
    assert "args" in error["message"]
    frames = serving.answer([REQUEST, b"\xc1"], "0")
    assert frames[1] == b""
    assert reply(frames)["error"]["type"] == "MalformedFrame"
    assert fake.calls == []
    assert serving.served == 2


def test_a_kind_the_incarnation_does_not_answer_is_an_error_reply(kernel):
    serving = Serving(Recording(kernel), "inc-7-1")
    frames = serving.answer([REQUEST, encode(PingRequest(id="r-4"))], "0")
    error = reply(frames)["error"]
    assert error["type"] == "UVMError"
    assert "'ping'" in error["message"]


def test_a_result_msgpack_cannot_carry_is_answered_unserializable(kernel):
    class Strange:
        pass

    class Odd(Recording):
        def send(self, *args: Any, **kwargs: Any) -> Any:
            return {"value": Strange()}

    serving = Serving(Odd(kernel), "inc-7-1")
    frames = serving.answer([REQUEST, encode(SendRequest(id="r-5", target="genesis",
                                                         selector="printString"))], "0")
    assert reply(frames)["error"]["type"] == "UnserializableResult"
    assert frames[3] == TID


def test_a_signal_escaping_the_kernel_is_answered_and_the_lane_lives(kernel):
    serving = Serving(Recording(kernel, raises=KeyboardInterrupt()), "inc-7-1")
    frames = serving.answer([REQUEST, encode(SendRequest(id="r-6", target="genesis",
                                                         selector="printString"))], "0")
    error = reply(frames)["error"]
    assert error["type"] == "ImageError"
    assert "KeyboardInterrupt" in error["message"]
    assert serving.busy == 0


def test_the_inquiry_loop_is_touched_by_each_request(kernel):
    touched = []

    class Inquiry:
        def touch(self) -> None:
            touched.append(1)

    serving = Serving(Recording(kernel), "inc-7-1", inquiry=Inquiry())
    serving.answer([REQUEST, encode(DescribeRequest(id="r-7"))], "0")
    assert touched == [1]


def test_a_frame_over_the_codecs_default_size_is_decoded_the_supervisor_judged_it(kernel):
    """An operator's max_frame may exceed the codec's default (1 MiB): a request the
    supervisor forwarded is never refused for its size here (its reply would carry id ""
    and never reach the client)."""
    big = "x" * (1 << 20)
    payload = encode(SendRequest(id="r-big", target="genesis", selector="printString",
                                 args=[big]))
    assert len(payload) > 1 << 20
    request, error = Serving(Recording(kernel), "inc-7-1").decode(payload)
    assert error is None
    assert request.id == "r-big"
