"""The incarnation's frame loop and a Quarantine: the mark is committed before the next
frame is read, so a request for the same method queued behind it runs nothing.

The incarnation's own ``_serve`` (its main socket's frame loop; requests run on its main
executor through ``uvm.lanes.Serving``), a real kernel on a real image, and ``BudgetLink``; the ZMQ socket is replaced at our own seam by a list of frames (the
same loop against a real supervisor: tests/integration/test_poison.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import ormsgpack
import pytest

from bridge.codec import encode
from bridge.messages import Quarantine, SendRequest
from uvm.budget_link import BudgetLink
from uvm.incarnation import Incarnation
from uvm.lanes import Serving

CRASH = "def crash(self):\n    self.ran = True\n    return 'ran'\n"


class FrameSocket:
    """The backend socket's two calls: frames in, in order; frames out, recorded."""

    def __init__(self, frames: list[list[bytes]]) -> None:
        self.incoming = list(frames)
        self.sent: list[list[bytes]] = []
        self.drained = asyncio.Event()

    async def recv_multipart(self) -> list[bytes]:
        if not self.incoming:
            self.drained.set()
            await asyncio.Event().wait()  # nothing more: the test cancels the loop
        return self.incoming.pop(0)

    async def send_multipart(self, frames: list[bytes]) -> None:
        self.sent.append(frames)


def replies(sock: FrameSocket) -> dict[str, Any]:
    return {f[1].decode(): ormsgpack.unpackb(f[2]) for f in sock.sent if f[0] == b"R"}


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_a_request_queued_behind_a_quarantine_meets_the_mark(kernel, monkeypatch, delay):
    """``delay``: the quarantine's commit is slow (a busy storage); the request behind it
    must still not run, whatever the thread timing."""
    kernel.send("genesis", "defineMethod:source:", ["crash", CRASH])
    commits: list[float] = []
    real = kernel.quarantine

    def slow_quarantine(*args: Any, **kwargs: Any) -> Any:
        assert threading.current_thread() is not threading.main_thread()
        time.sleep(delay)
        try:
            return real(*args, **kwargs)
        finally:
            commits.append(time.monotonic())

    monkeypatch.setattr(kernel, "quarantine", slow_quarantine)
    frames = [
        [b"C", encode(Quarantine(request="r-dead", target="genesis", selector="crash",
                                 reason="killed inc-1 and inc-2"))],
        [b"Q", encode(SendRequest(id="r-next", target="genesis", selector="crash"))],
    ]

    async def serve() -> dict[str, Any]:
        inc = Incarnation(backend="ipc:///nowhere", zeo="/nowhere", ident="inc-3", env_id="e")
        inc._loop = asyncio.get_running_loop()
        inc.sock = sock = FrameSocket(frames)
        inc.link = BudgetLink(inc, kernel)
        inc.serving = Serving(kernel, inc.ident)
        serving = asyncio.create_task(inc._serve())
        await asyncio.wait_for(sock.drained.wait(), 30)
        while inc._tasks or inc.link._tasks:  # the request's task, the list's refresh
            await asyncio.wait(inc._tasks | inc.link._tasks, timeout=30)
        serving.cancel()
        inc._pool.shutdown()
        return replies(sock)

    answered = asyncio.run(serve())
    assert set(answered) == {"r-next"}
    error = answered["r-next"]["error"]
    assert answered["r-next"]["ok"] is False
    assert error["type"] == "Quarantined", error
    assert "killed inc-1 and inc-2" in error["message"]
    assert "ran" not in kernel.send("genesis", "slotNames")
    assert len(commits) == 1
    assert [r["request"] for r in kernel.quarantined()] == ["r-dead"]


def test_a_quarantine_that_cannot_be_applied_does_not_end_the_frame_loop(kernel):
    frames = [
        [b"C", encode(Quarantine(request="r-dead", target="nobody", selector="crash"))],
        [b"Q", encode(SendRequest(id="r-next", target="genesis", selector="uuid"))],
    ]

    async def serve() -> dict[str, Any]:
        inc = Incarnation(backend="ipc:///nowhere", zeo="/nowhere", ident="inc-3", env_id="e")
        inc._loop = asyncio.get_running_loop()
        inc.sock = sock = FrameSocket(frames)
        inc.link = BudgetLink(inc, kernel)
        inc.serving = Serving(kernel, inc.ident)
        serving = asyncio.create_task(inc._serve())
        await asyncio.wait_for(sock.drained.wait(), 30)
        while inc._tasks:
            await asyncio.wait(inc._tasks, timeout=30)
        assert not serving.done()
        serving.cancel()
        inc._pool.shutdown()
        return replies(sock)

    answered = asyncio.run(serve())
    assert answered["r-next"]["ok"] is True
    assert kernel.quarantined() == []
