"""Per-message state: each message's own decimal context and random generator.

The standard library keeps the decimal context per thread (a ``ContextVar``) and
the random generator per process. Method code must change neither: every
message runs in a fresh decimal context and with a ``random.Random`` of its own,
whatever its methods import, so ``decimal.setcontext``, ``getcontext().prec = 5``
and ``random.seed(1)`` are gone when the message ends, also when what made the
change is a function, generator or ``partial`` a method handed out.

* ``enter_message`` begins a message's scope; ``uvm.dispatch.run_message`` calls
  it first thing inside ``contextvars.copy_context().run``, and the end of that
  run (C code, so also when the budget's signal lands) ends the scope.
* ``MethodScope``: a method that imports ``decimal`` or ``random`` also runs in a
  scope of its own within the message (``uvm.method_policy`` wraps its body).
* ``getcontext``, ``setcontext``, ``localcontext`` and ``random_function`` are
  what ``uvm.capabilities`` grants: they refuse outside any scope, and a
  ``localcontext`` or method scope refuses to end in another message. What runs
  there is code left over from an earlier message: a generator in a reference
  cycle, closed by the garbage collector on whatever thread collects. A
  collection runs in no scope (a ``gc.callbacks`` hook), also inside a message,
  so a leftover's ``finally:`` cannot reach the message it lands in.

Threads: all state is in a ``ContextVar`` (each thread, each message its own) but
the collector's slot, written only by the hook. Imports nothing of the image.
"""

from __future__ import annotations

import contextvars
import decimal
import gc
import random
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "DECIMAL_SCOPE", "RANDOM_FUNCTIONS", "LocalContext", "MethodScope", "RandomScope",
    "enter_message", "fresh_decimal_context", "getcontext", "localcontext", "random_function",
    "setcontext",
]

# ``_SCOPE`` is the scope in effect: ``[generator, message]``, where ``generator`` is
# the scope's ``random.Random`` (made on first use) and ``message`` the message scope it
# belongs to (None: the scope is a message's own). It lives in a ``ContextVar`` and
# ``uvm.dispatch.run_message`` runs each message in a copy of the caller's context, so
# whatever a message sets (this, and the decimal context, a ContextVar in C's decimal
# too) is dropped when it ends, by C code no signal can interrupt half-way.

_SCOPE: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "batos_method_scope", default=None)
_getcontext = decimal.getcontext
_setcontext = decimal.setcontext
_localcontext = decimal.localcontext


def fresh_decimal_context() -> decimal.Context:
    """The context every scope starts from: Python's documented defaults, spelled out
    (``decimal.Context()`` would copy ``DefaultContext``, which is process-wide state)."""
    return decimal.Context(
        prec=28, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999, capitals=1,
        clamp=0, flags=[], traps=[decimal.InvalidOperation, decimal.DivisionByZero,
                                  decimal.Overflow],
    )


_PRISTINE = fresh_decimal_context()
_copy_pristine = _PRISTINE.copy


def enter_message() -> None:
    """Begin a message's scope: a fresh decimal context and random generator. Call it
    first thing inside ``contextvars.copy_context().run`` (``uvm.dispatch.run_message``):
    the copy is what ends the scope, so nothing here needs undoing."""
    _SCOPE.set([None, None])
    _setcontext(_copy_pristine())


#: phase -> the info dict of the collector's last callback for it, written by a C-level
#: callback (a dict's ``__setitem__``) that no pending asynchronous exception can
#: interrupt: a new dict every pass, so the last "stop" names the last pass that ended
_GC_SEEN: dict[str, Any] = {}
#: (thread, the last "stop" when it began) of the collection running now, else None
#: (see ``_collector``); stale once that pass's "stop" is seen, whatever happened to
#: the Python callback that would clear it
_COLLECTOR: list[tuple[int, Any] | None] = [None]
_get_ident = threading.get_ident


def _collector(phase: str, info: object) -> None:
    """A ``gc.callbacks`` hook: code the collector runs is in no scope. A generator
    method code left in a reference cycle runs its ``finally:`` wherever a collection
    happens, inside another message too; there the granted functions refuse and no method
    scope begins, so the leftover cannot change that message's context or seed its
    generator. Collections do not nest and run one at a time, so one slot holds the
    collecting pass. The hook only stores into that slot: a collection starts in the
    middle of whatever allocated, e.g. inside ``ContextVar.set``, where setting a
    ContextVar again would free the mapping that call is reading. The budget's watchdog
    may interrupt a long pass with an asynchronous exception that lands in a Python
    callback, so the end of a pass is read from ``_GC_SEEN`` (C, uninterruptible), and
    clearing the slot here is only a shortcut."""
    _COLLECTOR[0] = (_get_ident(), _GC_SEEN.get("stop")) if phase == "start" else None


gc.callbacks.extend([_GC_SEEN.__setitem__, _collector])


def collecting() -> bool:
    """Whether a garbage collection is running on this thread: code it runs (a finalizer,
    a leftover generator's ``finally:``) belongs to no message and must not touch the
    image (``uvm.guards`` and ``uvm.registry.current`` refuse it)."""
    running = _COLLECTOR[0]
    return (running is not None and running[0] == _get_ident()
            and _GC_SEEN.get("stop") is running[1])


LEFTOVER = ("method code works only while a message runs; this is code left over from an "
            "earlier message (a generator's finally: or a finalizer run by the garbage "
            "collector), and it touches neither the image nor its grants")


def _message_of(scope: list[Any]) -> list[Any]:
    return scope[1] if scope[1] is not None else scope


def _scope(what: str) -> list[Any]:
    """The scope in effect, or ``RuntimeError`` naming ``what`` (outside any: code left
    over from an earlier message, e.g. a generator closed by the garbage collector)."""
    scope = _SCOPE.get()
    if scope is None or (_COLLECTOR[0] is not None and collecting()):
        raise RuntimeError(
            f"{what} works only while a message runs; this is code left over from an earlier "
            "message (a generator or function kept past its end, or a generator's finally "
            "run by the garbage collector), which may not touch the state of the thread or "
            "of the message it lands in")
    return scope


def _same_message(message: list[Any], what: str) -> None:
    scope = _scope(what)
    if _message_of(scope) is not message:
        raise RuntimeError(
            f"{what} was made in another message; it works only in the message that made it")


class MethodScope:
    """``with MethodScope():`` runs a method in a scope of its own: a fresh decimal
    context and its own ``random.Random`` (made on first use), both gone when it ends.

    ``uvm.method_policy`` wraps the body of a method that imports ``decimal`` or
    ``random`` in one. It belongs to its message: a generator method resumed or closed in
    another message, or outside any, refuses to end there rather than set the context it
    saved; none begins while the garbage collector runs (a leftover's ``finally:`` would
    start one and leave its context in the message the collection landed in). Outside
    any message (a method called directly, in a test) it is its own message scope.
    """

    __slots__ = ("_manager", "_message", "_token")

    def __enter__(self) -> None:
        outer = _SCOPE.get()
        if _COLLECTOR[0] is not None and collecting():
            _scope("a method's decimal and random scope")  # raises
        scope = [None, None if outer is None else _message_of(outer)]
        self._token = _SCOPE.set(scope)
        self._message = _message_of(scope)
        manager = _localcontext(_PRISTINE)
        manager.__enter__()
        self._manager = manager

    def __exit__(self, *exc: object) -> None:
        _same_message(self._message, "a method's decimal and random scope")
        self._manager.__exit__(None, None, None)
        _SCOPE.reset(self._token)


#: the names ``uvm.methods`` binds for ``uvm.method_policy``'s per-method scopes
DECIMAL_SCOPE = MethodScope
RandomScope = MethodScope


class LocalContext:
    """What the granted ``decimal.localcontext`` answers: C's context manager, usable
    only in the message that made it (one kept and closed later, by a generator's
    ``finally`` or the collector, would set an old message's context on the thread)."""

    __slots__ = ("_manager", "_message")

    def __init__(self, manager: Any, message: list[Any]) -> None:
        self._manager = manager
        self._message = message

    def __enter__(self) -> decimal.Context:
        _same_message(self._message, "decimal.localcontext()")
        return self._manager.__enter__()

    def __exit__(self, *exc: object) -> None:
        _same_message(self._message, "decimal.localcontext()")
        self._manager.__exit__(None, None, None)


def getcontext() -> decimal.Context:
    """The decimal context of the running message (or method scope)."""
    _scope("decimal.getcontext")
    return _getcontext()


def setcontext(context: decimal.Context) -> None:
    """Set the decimal context of the running message (or method scope) until it ends."""
    _scope("decimal.setcontext")
    _setcontext(context)


def localcontext(ctx: decimal.Context | None = None, **kwargs: Any) -> LocalContext:
    """``with localcontext(ctx, prec=...) as c:`` as in ``decimal``, inside one message."""
    message = _message_of(_scope("decimal.localcontext"))
    return LocalContext(_localcontext(ctx, **kwargs), message)


def _generator() -> random.Random:
    scope = _SCOPE.get()
    if scope is None or (_COLLECTOR[0] is not None and collecting()):
        # never the process's generator
        scope = _scope("random")
    if scope[0] is None:
        scope[0] = random.Random()
    return scope[0]


def random_function(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_generator(), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"random.{name} on the running message's (or method's) own generator"
    return call


#: the ``random`` functions granted, each on the scope's own generator
RANDOM_FUNCTIONS = (
    "seed", "random", "uniform", "randint", "randrange", "choice", "choices", "sample",
    "shuffle", "getrandbits", "randbytes", "triangular", "gauss", "normalvariate",
    "lognormvariate", "expovariate", "vonmisesvariate", "gammavariate", "betavariate",
    "paretovariate", "weibullvariate",
)
