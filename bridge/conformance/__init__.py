"""A conformance suite any implementation of the batos protocol can run against a live server.

``python -m bridge.conformance ENDPOINT`` (``--help``, ``--list``), or from Python
``run(Options(endpoint))``: a list of ``Result`` (name, spec section, pass/fail/skip,
reason). It speaks the wire itself (raw ZMQ DEALER, REQ and SUB sockets, msgpack
bytes), not through ``bridge.Client``, and holds the server to docs/protocol.md as the
suite reads it (``shapes``), not to ``bridge.messages``.

    registry        a check, its verdicts (``Failed``, ``Skipped``), ``Result``
    wire            the raw sockets and bytes; ``Conn.probe`` (a message, then a fence)
    shapes          the documented reply, error and event shapes
    events          the SUB streams, opened before the first check
    context         ``Options`` and one run's ``Context`` with its helpers
    check_requests  every request kind's reply (evolve/rollback: only refusals)
    check_frames    envelopes of 0-4 frames echoed, more answered, REQ clients
    check_errors    the frontend's errors and the id each carries
    check_image     the image's errors, a failed message changes nothing
    check_once      exactly once by resend and by joining
    check_handover  a real evolve and rollback, joined and resent (``--evolve-requirement``)
    check_events    the events the run saw, per topic; the handovers' own
    runner, cli     one run; the command line

Boundary: imports only the standard library, pyzmq, ormsgpack and this package; it
changes no environment unless ``--evolve-requirement`` is given, and adds only objects
named ``conformance_<run>_<label>`` to the image.
"""

from __future__ import annotations

from .context import Options
from .registry import CHECKS, FAIL, PASS, SKIP, Check, Result
from .runner import ordered, run

__all__ = ["CHECKS", "FAIL", "PASS", "SKIP", "Check", "Options", "Result", "ordered", "run"]
