"""``ping``: is the supervisor itself up? Answered even when degraded or stopping.

Request: ``PingRequest`` ``{"kind": "ping", "id"}``.

Reply: ``{"pong": true, "pid", "uptime", "state", "protocol"}``; it tells "the supervisor
is up" apart from "the image is served" (``state`` says which); ``protocol`` is the full
protocol version this supervisor speaks ("1.0"), so a client can learn the minor version.
"""

from __future__ import annotations

import os
import time

from bridge.messages import PROTOCOL

from .desk import Asked, Desk

__all__ = ["KIND", "handle"]

KIND = "ping"


def handle(desk: Desk, asked: Asked) -> None:
    desk.answer(asked, {
        "pong": True, "pid": os.getpid(), "uptime": round(time.time() - desk.started, 3),
        "state": desk.pool.state, "protocol": PROTOCOL,
    })
