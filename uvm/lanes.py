"""An incarnation's request lanes: each request received, run and answered on one thread.

``Lanes`` opens N lane DEALERs beside the incarnation's main socket, each owned by one
plain thread (``batos-lane-k``, identity ``f"{ident}#{k}"``). A lane connects, says
``[CONTROL, Attach(incarnation, lane=k)]``, then loops: ``recv_multipart`` -> decode
and validate the request once -> ``Kernel.send`` on this same thread -> ``send_multipart``
the reply on its own socket. No event loop, queue or executor on the way: the one thread
crossing a message pays is ZMQ's own I/O thread.

``Serving`` is what a lane and the main socket's fallback path share: ``decode`` (a
request that does not validate is answered ``Reply(ok=False)`` with ``where`` = the
incarnation, never dropped), ``run`` (the message, its reply encoded, an unencodable
result answered ``UnserializableResult``) and the counters a ``Heartbeat`` reports.

Frames (docs/protocol.md, "Backend"): in, ``[REQUEST, request]`` or ``[REQUEST, request,
after]`` (``after``: 8 bytes, the newest transaction id the supervisor has seen; the
kernel catches up to it, ``uvm.image.catch_up``), or ``[CONTROL, control]``; out,
``[REPLY, id, reply, tid]`` (``tid``: 8 bytes, ``Kernel.seen()``, left out when
unknown). A ``Quarantine`` on a lane is applied on the lane's thread (``on_quarantine``:
a committed, idempotent kernel write) before the lane reads its next frame, so a request
the supervisor sent after it never runs the method; other control messages are the main
socket's and are ignored here.

Stop: ``stop()`` (any thread) makes each lane serve what is already in its socket, then
close it and end; ``join`` waits for them. A lane's receive wakes every ``POLL`` seconds
to see the stop (a receive timeout: nothing is added per message). A lane that fails
outside a message (its socket) calls ``on_failure`` and ends; the incarnation then stops.

Threads: everything here runs on the lane's own thread except ``start``, ``stop``,
``join`` and the counters' readers; the counters take a lock. Nothing here touches
ZODB except through ``Kernel.send`` (the calling thread's own connection).
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from typing import Any

import zmq

from bridge.codec import MAX_FRAME, decode_control, decode_request, encode
from bridge.errors import ProtocolError
from bridge.messages import Attach, ErrorInfo, Quarantine, Reply
from lexicon.frames import CONTROL, REPLY, REQUEST

from .errors import ImageError, UVMError

__all__ = ["POLL", "Lanes", "Serving", "after_frame", "shard_for"]

log = logging.getLogger("batos.incarnation")

#: how often (seconds) an idle lane looks whether it is asked to stop
POLL = 0.1


def shard_for(target: str, lanes: int) -> str:
    """The reply record's shard of a request for ``target`` (``uvm.replies``): the lane the
    supervisor routes it to (``zlib.crc32(target) % lanes``, ``supervisor.routing``),
    whichever socket carried it, so a resend meets its first run's record in one shard;
    ``"main"`` for an incarnation without lanes."""
    return str(zlib.crc32(target.encode()) % lanes) if lanes > 0 else "main"


def after_frame(frames: list[bytes]) -> bytes | None:
    """The ``after`` transaction id of ``[REQUEST, request, after]`` (8 bytes), else None."""
    if len(frames) > 2 and len(frames[2]) == 8:
        return frames[2]
    return None


class Serving:
    """Decode, run and answer one request on the calling thread (module docstring)."""

    def __init__(self, kernel: Any, ident: str, *, inquiry: Any = None) -> None:
        self.kernel = kernel
        self.ident = ident
        #: the inquiry loop's handle (``touch()``: a client asked), or None
        self.inquiry = inquiry
        self._lock = threading.Lock()
        #: requests answered, and messages running now (all threads)
        self.served = 0
        self.busy = 0

    def decode(self, frame: bytes) -> tuple[Any, list[bytes] | None]:
        """``(request, None)``, or ``(None, the error reply's frames)`` for a frame that
        is not a valid request."""
        try:
            # the supervisor enforced its own max_frame (which may be over the codec's
            # default): a frame it forwarded is never refused here for its size
            return decode_request(frame, max_size=max(len(frame), MAX_FRAME)), None
        except ProtocolError as exc:
            log.warning("bad request from the supervisor: %s", exc)
            with self._lock:
                self.served += 1
            return None, self._frames(exc.request_id, self._error(
                exc.request_id, type(exc).__name__, str(exc)))

    def answer(self, frames: list[bytes], shard: str, lanes: int = 0) -> list[bytes]:
        """The reply frames to ``[REQUEST, request(, after)]``, run on this thread; with
        ``lanes``, the record goes to the target's shard (``shard_for``) whichever lane
        carried it (the supervisor passes a lane held up by a long request over)."""
        request, error = self.decode(frames[1])
        if error is not None:
            return error
        if lanes:
            shard = shard_for(getattr(request, "target", ""), lanes)
        return self.run(request, after_frame(frames), shard)

    def run(self, request: Any, after: bytes | None, shard: str) -> list[bytes]:
        """Run a decoded request on this thread; its reply frames."""
        if self.inquiry is not None:
            self.inquiry.touch()  # a client asked: not idle
        with self._lock:
            self.busy += 1
        try:
            reply = self._reply(request, after, shard)
        finally:
            with self._lock:
                self.busy -= 1
                self.served += 1
        return self._frames(request.id, reply)

    def _reply(self, request: Any, after: bytes | None, shard: str) -> Reply:
        try:
            if request.kind == "send":
                result = self.kernel.send(request.target, request.selector, request.args,
                                          author=request.author, request_id=request.id,
                                          after=after, shard=shard)
            elif request.kind == "describe":
                result = self.kernel.send(request.target, "describe", [], after=after,
                                          shard=shard)
            else:
                raise UVMError(f"an incarnation does not answer {request.kind!r} requests")
            return Reply(id=request.id, ok=True, result=result)
        except UVMError as exc:
            return self._error(request.id, type(exc).__name__, str(exc))
        except Exception as exc:
            log.exception("request %s failed unexpectedly", request.id)
            return self._error(request.id, "InternalError", f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # noqa: BLE001 - a lane never dies of a message
            error = ImageError(f"the kernel let {type(exc).__name__} escape; the message "
                               "was aborted")
            return self._error(request.id, type(error).__name__, str(error))

    def _error(self, rid: str, kind: str, message: str) -> Reply:
        return Reply(id=rid, ok=False, error=ErrorInfo(type=kind, message=message,
                                                       where=self.ident))

    def _frames(self, rid: str, reply: Reply) -> list[bytes]:
        try:
            payload = encode(reply)
        except ProtocolError as exc:
            payload = encode(self._error(rid, "UnserializableResult", str(exc)))
        tid = self.kernel.seen()
        if tid is None:
            return [REPLY, rid.encode(), payload]
        return [REPLY, rid.encode(), payload, tid]


class Lanes:
    """N lane threads (module docstring). ``on_quarantine(message)`` marks a method,
    committed, on the calling lane's thread; ``on_failure()`` is called (on the failed
    lane's thread) when a lane ends other than by ``stop``."""

    def __init__(self, serving: Serving, *, context: zmq.Context[Any], backend: str,
                 count: int, linger: int, on_quarantine: Callable[[Quarantine], None],
                 on_failure: Callable[[], None]) -> None:
        self.serving = serving
        self.context = context
        self.backend = backend
        self.count = count
        self.linger = linger
        self.on_quarantine = on_quarantine
        self.on_failure = on_failure
        self._stopping = threading.Event()
        self._attached = threading.Semaphore(0)  # one release per lane: attached, or failed
        self._failed: list[int] = []
        self._threads: list[threading.Thread] = []

    def start(self, timeout: float) -> None:
        """Start the lanes; returns once each has connected and said ``Attach`` (raises
        ``ImageError`` if one failed, or has not attached within ``timeout`` seconds)."""
        for k in range(self.count):
            thread = threading.Thread(target=self._lane, args=(k,), name=f"batos-lane-{k}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        for _ in range(self.count):
            if not self._attached.acquire(timeout=timeout) or self._failed:
                self.stop()
                why = (f"lane(s) {self._failed} could not attach (the log says why)"
                       if self._failed else f"a lane did not attach within {timeout}s")
                raise ImageError(f"{why}: backend {self.backend}")

    def stop(self) -> None:
        """Serve what is already in each lane's socket, then end (any thread)."""
        self._stopping.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    # --- a lane's own thread ------------------------------------------------------------

    def _lane(self, k: int) -> None:
        ident = self.serving.ident
        sock = self.context.socket(zmq.DEALER)
        attached = False
        try:
            sock.setsockopt(zmq.LINGER, self.linger)
            sock.setsockopt(zmq.IDENTITY, f"{ident}#{k}".encode())
            sock.setsockopt(zmq.RCVTIMEO, int(POLL * 1000))
            sock.connect(self.backend)
            sock.send_multipart([CONTROL, encode(Attach(incarnation=ident, lane=k))])
            attached = True
            self._attached.release()
            shard = str(k)
            while not self._stopping.is_set():
                try:
                    frames = sock.recv_multipart()
                except zmq.Again:
                    continue
                self._take(sock, frames, shard)
            while True:  # stopping: what is already here is served
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._take(sock, frames, shard)
        except BaseException:  # noqa: BLE001 - the incarnation stops: logged
            log.critical("lane %d failed; the incarnation stops", k, exc_info=True)
            if not attached:
                self._failed.append(k)
                self._attached.release()
            elif not self._stopping.is_set():
                self.on_failure()
        finally:
            sock.close()

    def _take(self, sock: zmq.Socket[Any], frames: list[bytes], shard: str) -> None:
        tag = frames[0] if frames else b""
        if tag == REQUEST and len(frames) >= 2:
            sock.send_multipart(self.serving.answer(frames, shard, self.count))
        elif tag == CONTROL and len(frames) >= 2:
            self._control(frames[1])
        else:
            log.warning("unexpected frames on lane %s (%d)", shard, len(frames))

    def _control(self, frame: bytes) -> None:
        try:
            message = decode_control(frame)
        except ProtocolError as exc:
            log.warning("bad control frame on a lane: %s", exc)
            return
        if isinstance(message, Quarantine):
            self.on_quarantine(message)  # committed before the next frame is read
