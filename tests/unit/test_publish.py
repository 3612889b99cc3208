"""Image events: ``Publish`` from an incarnation, re-published by the supervisor.

Both halves over real ZMQ sockets (ipc in the test's folder): ``Incarnation.publish``
from the loop and from a worker thread reaches a ROUTER as a ``Publish`` control
frame; the real ``Supervisor``'s backend handler turns such a frame into an event on its PUB
socket and drops forged kinds and oversized frames. The supervisor here is
constructed but not run (no ZEO, no child processes): its backend handler is
called with the frames a backend ROUTER receives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq
import zmq.asyncio

from bridge.codec import decode_control, encode, unpack
from bridge.errors import InvalidMessage
from bridge.messages import MAX_PUBLISH_BYTES, Publish
from lexicon.frames import CONTROL
from supervisor.config import Home, load_config
from supervisor.server import Supervisor
from tests.conftest import wait_until
from uvm import InvalidValue
from uvm.incarnation import Incarnation

# --- the schema -------------------------------------------------------------------------


def test_publish_round_trips_as_a_control_message():
    message = Publish(incarnation="inc-1", event="image.inquiry.step", data={"step": "train"})
    decoded = decode_control(encode(message))
    assert decoded == message


@pytest.mark.parametrize("event", [
    "supervisor.stopping", "incarnation.ready", "image.", "image", "images.x", "image. x",
    "image." + "x" * 200,
])
def test_only_image_event_kinds_are_valid(event):
    raw = {"v": 1, "kind": "publish", "incarnation": "inc-1", "event": event, "data": {}}
    with pytest.raises(InvalidMessage, match="event"):
        decode_control(encode(raw))


# --- the incarnation's side -------------------------------------------------------------


def test_incarnation_publishes_from_the_loop_and_from_worker_threads(tmp_path):
    address = f"ipc://{tmp_path / 'be.sock'}"

    async def scenario() -> list[Any]:
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        dealer = ctx.socket(zmq.DEALER)
        try:
            for sock in (router, dealer):
                sock.setsockopt(zmq.LINGER, 0)
            router.bind(address)
            dealer.setsockopt(zmq.IDENTITY, b"inc-test")
            dealer.connect(address)
            inc = Incarnation(backend=address, zeo="unused", ident="inc-test", env_id="e")
            inc._loop = asyncio.get_running_loop()
            inc.sock = dealer  # what run() sets once connected
            assert await inc.publish("image.inquiry.started", cycle=1) is True
            future = await asyncio.to_thread(inc.publish, "image.inquiry.step", step="train")
            assert await asyncio.wait_for(asyncio.wrap_future(future), 5) is True
            got = []
            for _ in range(2):
                frames = await asyncio.wait_for(router.recv_multipart(), 5)
                assert frames[:2] == [b"inc-test", b"C"]
                got.append(decode_control(frames[2]))
            return got
        finally:
            router.close(0)
            dealer.close(0)
            ctx.term()

    first, second = asyncio.run(scenario())
    assert first == Publish(incarnation="inc-test", event="image.inquiry.started",
                            data={"cycle": 1})
    assert second.event == "image.inquiry.step"
    assert second.data == {"step": "train"}


def test_publish_refuses_bad_kinds_and_big_data_and_drops_when_not_connected():
    inc = Incarnation(backend="ipc://unused", zeo="unused", ident="inc-test", env_id="e")
    with pytest.raises(InvalidValue, match="image."):
        inc.publish("supervisor.degraded", reason="forged")
    with pytest.raises(InvalidValue, match="limit"):
        inc.publish("image.big", blob="x" * (MAX_PUBLISH_BYTES + 1))
    with pytest.raises(InvalidValue, match="plain values"):
        inc.publish("image.odd", thing=object())
    assert inc.publish("image.early", n=1).result(timeout=1) is False


# --- the supervisor's side --------------------------------------------------------------


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[Supervisor, zmq.Socket[bytes]]]:
    home = Home.at(tmp_path / "home")
    home.prepare()
    sup = Supervisor(home, load_config(None, home.root))
    ctx = zmq.Context()
    events = sup.sockets.events = ctx.socket(zmq.PUB)
    sub = ctx.socket(zmq.SUB)
    try:
        events.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.LINGER, 0)
        address = f"ipc://{tmp_path / 'ev.sock'}"
        events.bind(address)
        sub.connect(address)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sup.pool.incarnations["inc-1"] = SimpleNamespace(id="inc-1", last_seen=0.0)  # type: ignore[assignment]
        yield sup, sub
    finally:
        sub.close(0)
        events.close(0)
        ctx.term()
        sup.hlog.close()
        sup.worker.shutdown(wait=True)


def frame(event: str, **data: Any) -> bytes:
    return encode({"v": 1, "kind": "publish", "incarnation": "inc-1", "event": event,
                   "data": data})


def next_event(sup: Supervisor, sub: zmq.Socket[bytes], payload: bytes) -> tuple[bytes, Any]:
    """Feed ``payload`` to the backend handler until the subscriber (joining late, as
    PUB/SUB subscribers do) receives an event; answers (topic, event)."""
    def delivered() -> Any:
        sup.backend.receive([b"inc-1", CONTROL, payload], time.monotonic())
        if sub.poll(50):
            return sub.recv_multipart()
        return None
    topic, body = wait_until(delivered, 10)
    return topic, unpack(body)


def test_the_supervisor_republishes_image_events_with_their_kind(supervisor):
    sup, sub = supervisor
    topic, event = next_event(sup, sub, frame("image.inquiry.step", step="dataset", kind="x"))
    assert topic == b"image"
    assert event["kind"] == "image.inquiry.step"
    assert event["data"] == {"step": "dataset", "kind": "x", "incarnation": "inc-1"}
    assert sup.pool.incarnations["inc-1"].last_seen > 0


def test_the_supervisor_drops_forged_kinds_and_oversized_events(supervisor):
    sup, sub = supervisor
    next_event(sup, sub, frame("image.ping"))  # joined
    while sub.poll(100):  # the joining attempts may have delivered more than one
        sub.recv_multipart()
    forged = frame("supervisor.degraded", reason="forged")
    oversized = frame("image.big", blob="x" * MAX_PUBLISH_BYTES)
    for payload in (forged, oversized):
        sup.backend.receive([b"inc-1", CONTROL, payload], time.monotonic())
    sup.backend.receive([b"inc-1", CONTROL, frame("image.after")], time.monotonic())
    assert sub.poll(5000)
    _topic, body = sub.recv_multipart()
    assert unpack(body)["kind"] == "image.after"  # nothing came before it
