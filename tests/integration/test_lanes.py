"""An incarnation's lanes against a hand-driven backend: a real ZEO server, a real
``batos.root.incarnation`` process (``--unconfined``, two lanes), and a ROUTER in the
test standing in for the supervisor.

Checked: each lane says ``Attach`` before the incarnation's ``Ready`` (``lanes=2``); a
request sent to a lane is answered from that lane's identity with a tid frame; a bad
request on a lane is answered, not dropped; a request on main is still answered; a
``Quarantine`` on a lane is applied before that lane's next request; ``after`` newer
than the incarnation has heard of is caught up to; ``Stop`` lets the lanes serve what
they already hold, then ``Bye`` and exit 0. Every receive has a deadline; the process
and the sockets are torn down by fixtures, even on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
import zmq

from bridge.codec import decode_control, encode
from bridge.messages import Attach, Bye, Heartbeat, Quarantine, Ready, SendRequest, Stop
from lexicon.frames import CONTROL, REPLY, REQUEST
from tests.integration.zeo_fixtures import (
    kill_and_reap,
    zeo_address_fixture,  # noqa: F401
)
from uvm import Kernel, open_db

ROOT = Path(__file__).resolve().parents[2]
LANES = 2
DEADLINE = 60.0
CRASH = "def crash(self):\n    self.ran = True\n    return 'ran'\n"
SPIN = "def spin(self, k):\n    t = 0\n    for i in range(k):\n        t = t + i\n    return t\n"


class Backend:
    """The supervisor's ROUTER, driven by hand: every message received is kept in order
    as ``(identity, frames)``; ``expect`` waits for one that matches, with a deadline."""

    def __init__(self, folder: Path) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.endpoint = f"ipc://{folder}/be.sock"
        self.router.bind(self.endpoint)
        self.seen: list[tuple[str, list[bytes]]] = []

    def close(self) -> None:
        self.router.close(linger=0)
        self.ctx.term()

    def send(self, identity: str, *frames: bytes) -> None:
        self.router.send_multipart([identity.encode(), *frames])

    def expect(self, match: Callable[[str, list[bytes]], bool],
               timeout: float = DEADLINE) -> tuple[str, list[bytes]]:
        """The first message not yet taken that ``match``es, waiting for more until the
        deadline; taken messages are removed from ``seen``'s unclaimed rest."""
        deadline = time.monotonic() + timeout
        scanned = 0
        while True:
            for i in range(scanned, len(self.seen)):
                if match(*self.seen[i]):
                    return self.seen.pop(i)
            scanned = len(self.seen)
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [(who, f[0]) for who, f in self.seen]
                raise AssertionError(f"no matching backend message within {timeout}s; "
                                     f"unclaimed: {kinds[-20:]}")
            if self.router.poll(int(left * 1000) + 1):
                frames = self.router.recv_multipart()
                self.seen.append((frames[0].decode(), frames[1:]))

    def control(self, kind: type[Any], who: str | None = None,
                timeout: float = DEADLINE) -> tuple[str, Any]:
        def match(identity: str, frames: list[bytes]) -> bool:
            return (frames[0] == CONTROL and (who is None or identity == who)
                    and isinstance(decode_control(frames[1]), kind))

        identity, frames = self.expect(match, timeout)
        return identity, decode_control(frames[1])

    def reply(self, rid: str, timeout: float = DEADLINE) -> tuple[str, list[bytes]]:
        return self.expect(lambda _who, f: f[0] == REPLY and f[1] == rid.encode(), timeout)


class Incarnation:
    def __init__(self, proc: subprocess.Popen[Any], ident: str, log: Path) -> None:
        self.proc, self.ident, self.log = proc, ident, log

    def lane(self, k: int) -> str:
        return f"{self.ident}#{k}"


@pytest.fixture
def backend() -> Iterator[Backend]:
    folder = Path(tempfile.mkdtemp(prefix="batos-lanes-"))  # short: ipc paths max ~107 bytes
    router = Backend(folder)
    try:
        yield router
    finally:
        router.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def incarnation(zeo_address: str, backend: Backend, tmp_path: Path) -> Iterator[Incarnation]:
    ident = f"inc-1-{os.getpid()}"
    log = tmp_path / "incarnation.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batos.root.incarnation", "--backend", backend.endpoint,
             "--zeo", zeo_address, "--id", ident, "--workers", str(LANES), "--unconfined",
             "--heartbeat", "0.2"],
            cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Incarnation(proc, ident, log)
    finally:
        kill_and_reap(proc, grace=10.0)


@pytest.fixture
def ready(incarnation: Incarnation, backend: Backend) -> Incarnation:
    """The incarnation once it said Ready."""
    backend.control(Ready, incarnation.ident)
    return incarnation


@pytest.fixture
def image(zeo_address: str) -> Iterator[Kernel]:
    """A second client of the same ZEO server: the test's own kernel on the image."""
    db = open_db(zeo=zeo_address, server_sync=False)
    try:
        yield Kernel(db)
    finally:
        db.close()


def request(selector: str, args: list[Any] | None = None, target: str = "genesis") -> tuple[str, bytes]:
    rid = f"t-{uuid.uuid4()}"
    return rid, encode(SendRequest(id=rid, target=target, selector=selector, args=args or []))


def answer(frames: list[bytes]) -> dict[str, Any]:
    return ormsgpack.unpackb(frames[2])


def test_each_lane_attaches_before_ready(incarnation: Incarnation, backend: Backend) -> None:
    _who, ready_message = backend.control(Ready, incarnation.ident)
    assert ready_message.lanes == LANES
    attached = [(who, decode_control(f[1])) for who, f in backend.seen
                if f[0] == CONTROL and who != incarnation.ident]
    # ``expect`` reads one message at a time until Ready: what it left unclaimed in
    # ``seen`` was received before Ready
    assert sorted(who for who, _ in attached) == [incarnation.lane(k) for k in range(LANES)]
    for who, message in attached:
        assert isinstance(message, Attach)
        assert message.incarnation == incarnation.ident
        assert who == incarnation.lane(message.lane)


def test_a_request_on_a_lane_is_answered_on_that_lane_with_a_tid(ready: Incarnation,
                                                                 backend: Backend) -> None:
    for k in range(LANES):
        rid, payload = request("printString")
        backend.send(ready.lane(k), REQUEST, payload)
        who, frames = backend.reply(rid)
        assert who == ready.lane(k)
        assert len(frames) == 4
        assert answer(frames)["ok"] is True
        assert len(frames[3]) == 8


def test_a_bad_request_on_a_lane_is_answered(ready: Incarnation, backend: Backend) -> None:
    missing = ormsgpack.packb({"v": 1, "kind": "send", "id": "bad-1", "target": "genesis"})
    backend.send(ready.lane(1), REQUEST, missing)
    who, frames = backend.reply("bad-1")
    assert who == ready.lane(1)
    error = answer(frames)["error"]
    assert (error["type"], error["where"]) == ("InvalidMessage", ready.ident)
    assert "selector" in error["message"]
    backend.send(ready.lane(0), REQUEST, b"\xc1 not msgpack")
    who, frames = backend.reply("")
    assert who == ready.lane(0)
    assert answer(frames)["error"]["type"] == "MalformedFrame"


def test_a_request_on_main_is_still_answered(ready: Incarnation, backend: Backend) -> None:
    rid, payload = request("printString")
    backend.send(ready.ident, REQUEST, payload)
    who, frames = backend.reply(rid)
    assert who == ready.ident
    assert answer(frames)["ok"] is True
    assert len(frames) == 4
    assert len(frames[3]) == 8


def test_a_quarantine_on_a_lane_holds_before_its_next_request(
        ready: Incarnation, backend: Backend, image: Kernel) -> None:
    image.send("genesis", "defineMethod:source:", ["crash", CRASH])
    rid, payload = request("crash")
    quarantine = encode(Quarantine(request="r-dead", target="genesis", selector="crash",
                                   reason="killed inc-0"))
    backend.send(ready.lane(0), CONTROL, quarantine)
    backend.send(ready.lane(0), REQUEST, payload)  # back to back: the mark must be there
    _who, frames = backend.reply(rid)
    error = answer(frames)["error"]
    assert error["type"] == "Quarantined", error
    assert "killed inc-0" in error["message"]
    assert "ran" not in image.send("genesis", "slotNames")

    def listed(_who: str, frames: list[bytes]) -> bool:
        message = decode_control(frames[1]) if frames[0] == CONTROL else None
        return isinstance(message, Heartbeat) and any(
            q.request == "r-dead" for q in message.quarantined or ())

    backend.expect(listed)  # the loop was nudged: the heartbeat reports it


def test_a_request_after_a_newer_transaction_sees_it(ready: Incarnation, backend: Backend,
                                                     image: Kernel) -> None:
    rid, payload = request("printString")
    backend.send(ready.lane(1), REQUEST, payload)
    _who, frames = backend.reply(rid)
    before = frames[3]
    token = uuid.uuid4().hex
    image.send("genesis", "setSlot:value:", ["fresh", token])
    written = image.seen()
    assert written is not None
    assert written > before
    rid, payload = request("fresh")
    backend.send(ready.lane(1), REQUEST, payload, written)
    _who, frames = backend.reply(rid)
    assert answer(frames) == {"v": 1, "id": rid, "ok": True, "result": token}
    assert frames[3] >= written


def test_stop_serves_what_the_lanes_hold_then_bye(ready: Incarnation, backend: Backend,
                                                  image: Kernel) -> None:
    image.send("genesis", "defineMethod:source:", ["spin:", SPIN])
    sent = []
    for i in range(12):
        rid, payload = request("spin:", [20_000])
        backend.send(ready.lane(i % LANES), REQUEST, payload)
        sent.append(rid)
    backend.send(ready.ident, CONTROL, encode(Stop(reason="test")))
    _who, bye = backend.control(Bye, ready.ident)
    assert bye.reason == "stopped"
    assert ready.proc.wait(timeout=DEADLINE) == 0, ready.log.read_text()[-3000:]
    for rid in sent:  # all answered: before Bye, or on the lanes' sockets' way out
        _who, frames = backend.reply(rid, timeout=5.0)
        assert answer(frames)["result"] == sum(range(20_000))
