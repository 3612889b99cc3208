"""Frames and envelopes (docs/protocol.md, "Frames"; W5): no message goes unanswered.

A client message on the frontend is ``[identity (the ROUTER adds it), *envelope,
payload]``: the last frame is the payload, the 0-4 frames before it the envelope,
echoed back unchanged before the reply. More than 4 envelope frames is answered
``MalformedFrame`` with id "" on the first 4 of them, never dropped. Each probe is
followed by a fence ping (``Conn.probe``), so a missing or a second reply shows.
"""

from __future__ import annotations

from .context import Context
from .registry import Failed, check, require
from .shapes import expect_error, expect_ok, short
from .wire import Received, pack, request

#: envelope frames a client may put before the payload
MAX_ENVELOPE = 4


def _frames(count: int) -> list[bytes]:
    """``count`` distinct envelope frames: an empty one (what REQ adds), binary, text."""
    pool = [b"", b"\x00\x01\xfe\xff", b"conformance-envelope", b"\x80" * 40, b"e5", b"e6",
            b"e7", b"e8", b"e9"]
    return pool[:count]


def _one(seen: list[Received], what: str) -> Received:
    if len(seen) != 1:
        raise Failed(f"{what}: expected exactly one reply, got {len(seen)}: "
                     f"{[short(s.frames, 120) for s in seen]}")
    return seen[0]


@check("envelope-echo", "1.2 Frames")
def envelope_echo(ctx: Context) -> str:
    """0 to 4 envelope frames before the payload come back unchanged before one reply."""
    conn = ctx.wire.dealer()
    for count in range(MAX_ENVELOPE + 1):
        envelope = _frames(count)
        message = request("ping")
        got = _one(conn.probe(pack(message), envelope), f"ping after {count} envelope frame(s)")
        require(got.envelope == envelope, f"{count} envelope frame(s): sent {envelope!r}, "
                f"got back {got.envelope!r}")
        expect_ok(got.reply, message["id"], f"ping after {count} envelope frame(s)")
    return f"0-{MAX_ENVELOPE} envelope frames echoed"


@check("envelope-too-many", "1.2 Frames")
def envelope_too_many(ctx: Context) -> str:
    """More than 4 envelope frames: ``MalformedFrame`` ("too many frames"), id "", sent back
    on the first 4 envelope frames (never silence)."""
    conn = ctx.wire.dealer()
    for count in (MAX_ENVELOPE + 1, MAX_ENVELOPE + 2, MAX_ENVELOPE + 5):
        envelope = _frames(count)
        what = f"ping after {count} envelope frames"
        got = _one(conn.probe(pack(request("ping")), envelope), what)
        require(got.envelope == envelope[:MAX_ENVELOPE], f"{what}: the reply comes back on the "
                f"first {MAX_ENVELOPE} envelope frames {envelope[:MAX_ENVELOPE]!r}, got "
                f"{got.envelope!r}")
        expect_error(got.reply, "MalformedFrame", rid="", what=what, mentions=("too many frames",),
                     where="supervisor")
    return "MalformedFrame for 5, 6 and 9 envelope frames"


@check("req-socket", "1.2 Frames")
def req_socket(ctx: Context) -> str:
    """A REQ client (its empty delimiter is the envelope) gets its replies, turn by turn."""
    conn = ctx.wire.req()
    for turn in range(3):
        message = request("ping")
        conn.send(message)
        got = conn.recv()
        if got is None:
            raise Failed(f"REQ turn {turn}: no reply within {conn.timeout:g}s (silence)")
        require(len(got.frames) == 1, f"REQ turn {turn}: a REQ socket gets one frame, got "
                f"{got.frames!r}")
        expect_ok(got.reply, message["id"], f"REQ turn {turn}")
    return "3 turns"

