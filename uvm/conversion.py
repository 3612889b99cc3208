"""An image's containers in their stored form: converting an older image's, checking any.

A slot's dicts and lists are ``uvm.obj.ImageMapping``/``ImageList``, which
convert every value written into them (``uvm.obj.storable``). Images written
before those classes hold ``PersistentMapping``/``PersistentList`` in their
slots, and possibly a plain ``dict``/``list`` (or a key that is not a ``str``)
that some writer put into one unconverted: a plain container inside a record
is saved with it, but its own changes are not tracked, so a failed message's
change to it stayed in memory for a later message to commit.

``convert`` walks every object's slots (and the containers and objects they
reach, each once, iteratively: no depth limit) and replaces each of those
containers with an image container holding the same items, shared ones staying
shared. A mapping with a key that is not a ``str`` cannot be one: it is left as
it is and named (the guards still convert what method code writes into an old
container). ``uvm.genesis.bootstrap`` runs it once per image, marking the root,
in the transaction that plants Genesis. ``problems`` is the same walk changing nothing, naming
every container not in its stored form (``batos verify``).

Runs on the caller's thread, in the caller's transaction; commits nothing.
Method objects and the kernel's own records (the registry, replies, logs,
which are not slots) are not walked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .errors import ImageError
from .obj import ImageList, ImageMapping, UvmObject

__all__ = ["Conversion", "convert", "problems"]

_OLD = frozenset({PersistentMapping, PersistentList, dict, list})
_WALKED = frozenset({UvmObject, ImageMapping, ImageList})
_PLAIN = frozenset({dict, list})


@dataclass
class Conversion:
    """What one walk did (``convert``) or found (``problems``)."""

    converted: int = 0
    problems: list[str] = field(default_factory=list)


def convert(objects: Iterable[UvmObject]) -> Conversion:
    """Replace the old and plain containers reachable from ``objects``' slots (see above)."""
    return _Walk(fix=True).run(objects)


def problems(objects: Iterable[UvmObject], *, limit: int = 100) -> list[str]:
    """One line per container reachable from ``objects``' slots that is not in its stored
    form: a plain dict or list, an older image's persistent one, a key that is not a str."""
    return _Walk(fix=False, limit=limit).run(objects).problems[:limit]


class _Walk:
    def __init__(self, *, fix: bool, limit: int = 100) -> None:
        self.fix = fix
        self.limit = limit
        self.done = Conversion()
        # id -> (object, where): holders visited; the object is kept so no id is reused
        self.seen: dict[int, Any] = {}
        self.replaced: dict[int, tuple[Any, Any]] = {}  # id(old) -> (old, new): sharing kept
        self.todo: list[tuple[Any, str]] = []

    def run(self, objects: Iterable[UvmObject]) -> Conversion:
        self.todo = [(obj, "") for obj in objects]
        while self.todo and (self.fix or len(self.done.problems) < self.limit):
            holder, where = self.todo.pop()
            if id(holder) in self.seen:
                continue
            self.seen[id(holder)] = holder
            self._holder(holder, where)
        return self.done

    def _holder(self, holder: Any, where: str) -> None:
        try:
            kind = type(holder)
            if kind is UvmObject:
                data = holder._slots
                where = f"object {holder._uuid}"
            else:
                data = holder if kind in _PLAIN else holder.data
        except ImageError:  # a record the image refuses to load: verify names it already
            return
        if type(data) is dict:
            keys: Iterable[Any] = list(data)
            step = "." if type(holder) is UvmObject else ""
        else:
            keys = range(len(data))
            step = ""
        changed = False
        for key in keys:
            item = data[key]
            inner = f"{where}{step}{key}" if step else f"{where}[{key!r}]"
            new = self._value(item, inner)
            if new is not item:
                data[key] = new
                changed = True
        if changed:
            holder._p_changed = True

    def _value(self, item: Any, where: str) -> Any:
        kind = type(item)
        if kind in _WALKED:
            self.todo.append((item, where))
            return item
        if kind is tuple:
            items = [self._value(v, f"{where}[{i}]") for i, v in enumerate(item)]
            return item if all(a is b for a, b in zip(items, item, strict=True)) else tuple(items)
        if kind not in _OLD:
            return item  # scalars and methods (storable refused anything else)
        known = self.replaced.get(id(item))
        if known is not None:
            return known[1]
        raw = item if kind in _PLAIN else item.data
        bad = [k for k in raw if type(k) is not str] if type(raw) is dict else []
        if bad:
            self.done.problems.append(
                f"{where} has a key of type {type(bad[0]).__name__} ({bad[0]!r}): mapping keys "
                "must be exactly str" + (", so it was left a " + kind.__name__ if self.fix else ""))
            self.replaced[id(item)] = (item, item)
            return item
        if not self.fix:
            self.done.problems.append(
                f"{where} is a plain {kind.__name__}: its changes are not tracked (a write that "
                "skipped the conversion)" if kind in _PLAIN else
                f"{where} is a {kind.__name__} of an older image (bootstrap converts it)")
            self.replaced[id(item)] = (item, item)
            self.todo.append((item, where))
            return item
        new = ImageMapping._adopt(dict(raw)) if type(raw) is dict else ImageList._adopt(list(raw))
        self.replaced[id(item)] = (item, new)
        self.done.converted += 1
        self.todo.append((new, where))
        return new
