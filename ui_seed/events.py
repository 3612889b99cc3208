"""The supervisor's event stream for the UI: a SUB socket read on its own thread.

The supervisor publishes events on an ipc PUB socket (docs/protocol.md,
``status`` names it), so only a UI on the supervisor's machine can subscribe;
a remote UI refreshes by asking ``status`` instead. ``EventSubscriber`` owns
its socket and its thread (ZMQ sockets stay in the thread that made them) and
hands each decoded event to ``on_event`` from that thread: the callback must
pass it on to the UI thread itself (``Session`` does, through ``deliver``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import zmq

from bridge.codec import unpack

__all__ = ["EventSubscriber", "reachable"]

log = logging.getLogger("batos.ui")

POLL_MS = 200


def reachable(address: str) -> bool:
    """Whether this machine can subscribe: an ipc socket file that exists, or tcp."""
    if address.startswith("ipc://"):
        return os.path.exists(address[len("ipc://"):])
    return address.startswith("tcp://")


class EventSubscriber:
    def __init__(self, address: str, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.address = address
        self.on_event = on_event
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="batos-ui-events", daemon=True)
        self.thread.start()

    def close(self, wait: float = 2.0) -> None:
        self.stopping.set()
        self.thread.join(wait)

    def _run(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            sock.connect(self.address)
            while not self.stopping.is_set():
                if not sock.poll(POLL_MS):
                    continue
                frames = sock.recv_multipart()
                try:
                    event = unpack(frames[-1])
                except Exception as exc:  # a garbled event is dropped, the stream goes on
                    log.warning("undecodable event on %s: %s", self.address, exc)
                    continue
                if isinstance(event, dict):
                    self.on_event(event)
        except zmq.ZMQError as exc:
            log.warning("event stream %s closed: %s", self.address, exc)
        finally:
            sock.close(linger=0)
            context.term()
