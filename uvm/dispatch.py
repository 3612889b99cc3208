"""Dispatch: one message inside the current cycle, the same for live messages and trials.

``dispatch(receiver, selector, args)`` looks the selector up through
delegation and runs what it finds: a method with the receiver and the
arguments, a data slot's value, or, when nothing answers, the receiver's
``doesNotUnderstand:`` with ``{"selector", "arguments"}``. A quarantined
method (``uvm.quarantine``) answers ``Quarantined`` and runs nothing.
Whatever method code raises becomes ``MethodFailed`` (``BaseException``
included; the message capped at ``MAX_ERROR_CHARS``), a ``MemoryError``
``BudgetExceeded``; the kernel's own signals (``NeedsSynthesis``,
``OverBudget``) and ``ConflictError`` pass through.

``run_message`` is dispatch under the message's budget (``uvm.budget``),
with the result turned into plain data and held to the reply size limit: the
one path both ``Kernel`` and the crucible's trial worker run, so a trial is
the live path. It runs the message in a copy of the caller's contextvars
context (``contextvars.copy_context().run``) that starts with a fresh decimal
context and random generator (``uvm.message_scope.enter_message``): whatever
the message's code sets there, directly or through a function another method
handed out, is dropped when the run returns, by C code, so also when the
budget's signal stops the message. It needs a current cycle
(``uvm.registry.using_cycle``) and runs on the caller's thread; it neither
commits nor aborts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

import ormsgpack
from ZODB.POSException import ConflictError

from . import budget
from . import quarantine as _quarantine
from .budget import MAX_REPLY_BYTES, Limits, OverBudget, memory_exceeded
from .errors import (
    BadArguments,
    DoesNotUnderstand,
    ImageError,
    MethodFailed,
    NeedsSynthesis,
    ReplyTooLarge,
    UnserializableResult,
    UVMError,
    cap_message,
)
from .message_scope import enter_message
from .methods import Method, check_arity
from .obj import UvmObject, find_slot
from .registry import Cycle
from .registry import current as _current
from .selectors import slot_name
from .values import to_plain

__all__ = ["DNU", "dispatch", "run_message"]

DNU = "doesNotUnderstand"


def run_message(receiver: UvmObject, selector: str, args: Sequence[Any], *, limits: Limits,
                request_id: str | None = None, max_reply_bytes: int = MAX_REPLY_BYTES) -> Any:
    """``dispatch`` under ``limits``; answers the plain result (see the module docstring)."""
    slot = budget.enter(limits, request_id)  # budget.scope, inlined: this is the hot path
    try:
        result = _copy_context().run(_scoped, receiver, selector, args, max_reply_bytes)
        budget.leave(slot)
    except BaseException as exc:
        budget.fail(slot, type(exc))  # BudgetExceeded if the watchdog stopped it
        raise
    return result


_copy_context = contextvars.copy_context


def _scoped(receiver: UvmObject, selector: str, args: Sequence[Any], max_reply_bytes: int) -> Any:
    """The message inside its own contextvars context (``run_message``)."""
    enter_message()
    result = to_plain(dispatch(receiver, selector, args))
    _reply_size(result, max_reply_bytes)
    return result


def dispatch(receiver: UvmObject, selector: str, args: Sequence[Any]) -> Any:
    """Send one message inside the current cycle: lookup, run, or doesNotUnderstand:."""
    try:
        slot = slot_name(selector)
    except ValueError as exc:
        raise BadArguments(str(exc)) from None
    try:
        _holder, value = find_slot(receiver, slot)
    except DoesNotUnderstand:
        if slot == DNU:
            raise
        try:
            _holder, handler = find_slot(receiver, DNU)
        except DoesNotUnderstand:
            raise DoesNotUnderstand(
                f"{selector!r} is not understood and the receiver has no doesNotUnderstand: "
                "method either", selector=selector, receiver=receiver._uuid,
            ) from None
        cycle = _current_cycle()
        if cycle is not None:
            cycle.not_understood = (receiver._uuid, selector)
        return _call(handler, DNU, receiver, [{"selector": selector, "arguments": list(args)}])
    if isinstance(value, Method):
        _quarantine.check(value, _holder, selector)
    return _call(value, selector, receiver, args)


def _current_cycle() -> Cycle | None:
    try:
        return _current()
    except ImageError:
        return None


def _call(value: Any, selector: str, receiver: UvmObject, args: Sequence[Any]) -> Any:
    if not isinstance(value, Method):
        if args:
            raise BadArguments(
                f"{selector!r} is a data slot and takes no arguments; to change it send "
                "setSlot:value:"
            )
        return value
    func = value.function()
    check_arity(func, len(args), selector)
    try:
        return func(receiver, *args)
    except (UVMError, ConflictError, NeedsSynthesis, OverBudget):
        raise
    except RecursionError as exc:
        raise MethodFailed(f"{selector!r} recursed too deeply") from exc
    except MemoryError:
        raise memory_exceeded() from None
    except BaseException as exc:  # noqa: BLE001 - method code's SystemExit & co. are failures
        raise MethodFailed(cap_message(
            f"{selector!r} raised {type(exc).__name__}: {_describe(exc)}")) from None


def _describe(exc: BaseException) -> str:
    try:
        return cap_message(str(exc))
    except (NeedsSynthesis, OverBudget):
        raise
    except BaseException as inner:  # noqa: BLE001 - an exception whose str() fails
        return f"<unprintable: {type(inner).__name__}>"


def _reply_size(result: Any, limit: int) -> None:
    """Raise ``ReplyTooLarge`` if ``result`` (plain) encodes to more than ``limit`` bytes."""
    if result is None or isinstance(result, bool | int | float):
        return
    if isinstance(result, str | bytes) and len(result) * 4 < limit:
        return
    try:
        size = len(ormsgpack.packb(result, option=ormsgpack.OPT_NON_STR_KEYS))
    except (TypeError, ValueError, ormsgpack.MsgpackEncodeError) as exc:
        raise UnserializableResult(f"the result cannot be sent as a reply: {exc}") from None
    if size > limit:
        raise ReplyTooLarge(
            f"the result takes {size} bytes; a reply may take {limit}: answer less (a summary, "
            "a page) and keep the rest in the image. Nothing of the message was applied"
        )
