"""An incarnation's control frames from the supervisor: what ``Stop``, ``Quarantine``
and ``Validate`` do.

``on_control(incarnation, frame)`` is called by ``uvm.incarnation.Incarnation``'s frame
loop, in the event loop, for each ``[CONTROL, control]`` frame (docs/protocol.md):

    Stop        stop taking requests (``Incarnation.stop``); those in flight finish
    Quarantine  keep a method that killed an incarnation from running
                (``uvm.budget_link.BudgetLink.apply_quarantine``): answered as a
                coroutine that the frame loop awaits before it reads the next frame,
                so the next request already sees it (each lane gets the same
                Quarantine and applies it itself: ``uvm.lanes``)
    Validate    a handover's candidate proves itself on the image
                (``uvm.validation.validate_image``, in a thread) and answers
                ``Validated`` with the record

A frame that does not decode is logged and dropped; other control messages are not
the incarnation's and are ignored. The incarnation is duck-typed (no import of
``uvm.incarnation``): it has ``ident``, ``db``, ``image``, ``budget``, ``link``,
``stop()``, ``track(coroutine)`` and the coroutine ``_control(message)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bridge.codec import decode_control
from bridge.errors import ProtocolError
from bridge.messages import Quarantine, Stop, Validate, Validated

from .image import catch_up
from .validation import validate_image

__all__ = ["on_control", "validate"]

log = logging.getLogger("batos.incarnation")


def on_control(incarnation: Any, frame: bytes) -> Coroutine[Any, Any, Any] | None:
    """Act on a control frame (module docstring); a ``Quarantine`` answers the coroutine
    that applies it, which the frame loop awaits before it reads the next frame."""
    try:
        message = decode_control(frame)
    except ProtocolError as exc:
        log.warning("bad control frame: %s", exc)
        return None
    if isinstance(message, Stop):
        log.info("stop requested: %s", message.reason)
        incarnation.stop()
    elif isinstance(message, Quarantine) and incarnation.link is not None:
        return incarnation.link.apply_quarantine(message)
    elif isinstance(message, Validate):
        incarnation.track(validate(incarnation, message))
    return None


def _validate_image(incarnation: Any, message: Validate) -> dict[str, Any]:
    # The walk reads through the incarnation's own database, at one snapshot, as every
    # other read does (uvm.record_feed: over ZEO, pipelined loads on its own client),
    # never the file behind the ZEO server's back.
    return validate_image(incarnation.db, packages=message.packages,
                          removed_modules=message.removed_modules, limits=incarnation.budget)


async def validate(incarnation: Any, message: Validate) -> None:
    """Prove ``incarnation`` against the image (a handover's validate phase); answer
    ``Validated`` with the record (a crash in the checks is a failed record)."""
    try:
        # the incarnation's storage has no server_sync: every commit before this counts
        await asyncio.to_thread(catch_up, incarnation.db, None)
        record = await asyncio.to_thread(_validate_image, incarnation, message)
    except Exception as exc:
        log.exception("validation crashed")
        record = {"ok": False, "failures": [f"validation raised {type(exc).__name__}: {exc}"]}
    log.info("validation for %s: ok=%s", message.handover, record.get("ok"))
    await incarnation._control(Validated(incarnation=incarnation.ident,
                                         handover=message.handover,
                                         ok=bool(record.get("ok")), record=record))
