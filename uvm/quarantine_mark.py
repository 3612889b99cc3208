"""The quarantine's mark on a method, and the check that refuses a marked one.

A quarantined ``Method`` carries ``MARK``, a copy of its quarantine record
(``uvm.quarantine`` sets and lifts it; its docstring tells the whole story).
``check`` is what every way of running a method asks first: dispatch for a
message (``uvm.dispatch``), a ``BoundMethod`` called from method code
(``uvm.methods``). It reads one attribute of the method, never the image's
root, and raises ``Quarantined`` naming how a person releases it.

This sits below ``uvm.methods`` (which calls it) and ``uvm.quarantine``
(which marks): it knows a method only as a persistent object with that
attribute.
"""

from __future__ import annotations

from typing import Any

from .errors import Quarantined

__all__ = ["HOW_TO_RELEASE", "MARK", "check"]

#: the attribute on a quarantined ``Method`` holding its record
MARK = "_batos_quarantine"
#: how a person releases one (named in every ``Quarantined`` error)
HOW_TO_RELEASE = "batos quarantine release {holder} {selector} --by NAME [--zeo SOCKET]"


def check(method: Any, holder: Any = None, selector: str | None = None) -> None:
    """Raise ``Quarantined`` if ``method`` (a ``uvm.methods.Method``) is marked. Called by
    dispatch for every method, with the ``holder`` object and the ``selector`` sent, and
    by a ``BoundMethod`` without them (the mark's own are named then)."""
    method._p_activate()  # a ghost's __dict__ is empty; the cached function needs no load
    mark = method.__dict__.get(MARK)
    if mark is None:
        return
    uuid = holder._uuid if holder is not None else str(mark.get("holder", "?"))
    selector = selector or str(mark.get("selector", "?"))
    how = HOW_TO_RELEASE.format(holder=uuid, selector=selector)
    raise Quarantined(
        f"{selector!r} of {uuid} is quarantined: {mark.get('reason') or 'no reason given'}"
        f" (request {mark.get('request') or '-'}, by {mark.get('by') or '?'}); nothing ran. "
        f"A person releases it with `{how}`", holder=uuid, selector=selector,
    )
