"""The resolved-slot cache: which ancestor holds a slot, remembered until it may change.

``uvm.obj.find_slot`` remembers, for a receiver and a slot it does not hold itself,
the *holder* found by delegation: ``receiver._v_lookup[name] = (holder, token)``.
A hit re-reads the value from the holder's own ``_slots``, so writing a new value
into an existing slot needs no invalidation; only the *shape* of the chain can
make an entry wrong: a visited object gaining or losing a slot, a ``parent*``
changing (or a list of parents changing in place), ``_slots`` being replaced
(``become:``), or another connection's commit or an abort giving one of them
another state. The rules (enforced by ``uvm.obj``, which calls ``changed``):

* An entry is valid while ``token is STATE.token``; ``bump`` replaces the token,
  so every entry in the process is dropped at once (rare: see the next rule).
  Watched objects stay watched across bumps (a superset only bumps more often),
  until one of them dies or there are too many.
* The objects an entry's answer depends on, other than its receiver (every
  ancestor visited before the holder, the holder, and the lists of parents on
  the way) are *watched*. A structural change to a watched object bumps, and so
  does its invalidation by persistence (``PickleCache.invalidate`` calls
  ``obj._p_invalidate()``: at the start of the next transaction for another
  connection's commit, at once for an abort or a savepoint rolled back), which
  ``uvm.obj`` turns into ``changed``. Persistence delivers an invalidation only to
  an object still in its connection's pickle cache; a ghost nothing refers to
  leaves that cache when it is freed, so a watched object's death bumps too
  (a weak reference's callback): nothing is kept alive for the cache's sake.
* The receiver's own entries live in its ``_v_`` dict: persistence drops them
  whenever the object is ghosted (invalidated, or evicted), and ``changed`` drops
  them when the receiver itself changes shape. A write to an ordinary object
  therefore costs nothing here unless some entry looked through it.

Holding the token and the watched set in one process-wide place is what makes
the rules thread-safe without a lock: each connection's objects are used by one
thread; a reset (from any thread, or from the garbage collector) clears the
watched set *before* it replaces the token, and an entry is stored with the token
read *before* its search and only after what it looked through is watched, so an
entry whose search overlapped a bump or a reset is never valid.

What the cache cannot see it does not remember: an answer found through a list of
parents that is not an ``ImageList`` (an older image's ``PersistentList``, whose
in-place changes tell no one) is searched for every time. Code that mutates
``_slots`` in place must set ``_p_changed`` afterwards (as persistence requires
anyway), or the cache does not hear of it. Past ``MAX_WATCHED`` watched objects
the cache starts afresh (a reset).

Nothing here knows of slots, objects or transactions: ``uvm.obj`` does the lookup.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from persistent import Persistent

__all__ = ["ENTRIES", "MAX_WATCHED", "STATE", "bump", "changed", "remember", "touched",
           "watched"]

#: the ``_v_`` attribute of a receiver that holds its entries: ``{name: (holder, token)}``
ENTRIES = "_v_lookup"
#: past this many watched objects the cache starts afresh (bounds its own size)
MAX_WATCHED = 50_000

_pga = Persistent.__getattribute__
_psa = Persistent.__setattr__


class _State:
    """The current token: an entry stored with another one is stale."""

    __slots__ = ("token",)

    def __init__(self) -> None:
        self.token: object = object()


STATE = _State()
#: ``id(obj) -> weakref(obj)`` for every object some entry's answer depends on (its
#: receiver aside); the weak reference dies with the object and bumps
_watched: dict[int, weakref.ref[Any]] = {}


def bump() -> None:
    """Drop every entry (a new token). What is watched stays watched: a later search
    through the same ancestors then costs no new weak references."""
    STATE.token = object()


def _reset() -> None:
    """Drop every entry and forget what is watched (in that order: see the docstring)."""
    _watched.clear()
    STATE.token = object()


def _died(_ref: weakref.ref[Any], watched: dict[int, Any] = _watched, state: _State = STATE) -> None:
    # its invalidations can no longer reach it: nothing it answered may stand, and its id
    # may be reused. A reset that reads no globals (this may run while the interpreter
    # shuts down); the dead reference was never a token, so it serves as the new one.
    watched.clear()
    state.token = _ref


def touched(obj: Any) -> None:
    """``obj`` changed: if some entry looked through it, drop every entry. For what holds
    no entries of its own (a list of parents)."""
    if id(obj) in _watched:
        bump()


def changed(obj: Any) -> None:
    """``obj`` changed shape (or may have): a slot gained or lost, its parents, its state.

    Entries that looked through ``obj`` go (all of them, by a bump), and so do
    ``obj``'s own entries as a receiver. Never raises: persistence calls this while
    it invalidates, where an exception would stop the invalidation of the rest.
    """
    if id(obj) in _watched:
        bump()
    try:
        own = _pga(obj, "__dict__")  # no load: a ghost's entries are gone already
    except Exception:  # noqa: BLE001 - not a persistent object: nothing of its own here
        return
    if own:
        own.pop(ENTRIES, None)


def remember(receiver: Any, name: str, holder: Any, seen: Iterable[Any], token: object) -> None:
    """Store ``holder`` as the answer for ``receiver``'s ``name``, found by a search that
    began under ``token`` and looked at the objects (and parent lists) in ``seen``."""
    watched = _watched
    for obj in seen:
        if id(obj) not in watched:
            watched[id(obj)] = weakref.ref(obj, _died)
    if len(watched) > MAX_WATCHED:
        _reset()
        return
    if token is not STATE.token:  # bumped during the search: its answer may be stale
        return
    try:
        entries = _pga(receiver, ENTRIES)
    except AttributeError:
        entries = {}
        _psa(receiver, ENTRIES, entries)  # a _v_ attribute: never stored, never marks changed
    entries[name] = (holder, token)


def watched() -> int:
    """How many objects the cache watches (for tests and benchmarks)."""
    return len(_watched)
