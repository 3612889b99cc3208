"""What method code's writes may reach, and how a write into the image's containers converts.

RestrictedPython rewrites ``a.b = v`` and ``a[k] = v`` into writes through
``_write_(a)`` and ``a op= v`` into ``_inplacevar_``; ``uvm.guards`` binds
those names to ``guarded_write`` and ``inplacevar``. Writes reach only image
objects, plain containers and what a method makes for its own call (a
decimal ``Context``, a ``deque``).

The image's containers (``uvm.obj.ImageMapping``/``ImageList``) convert every
value written into them in place themselves (``uvm.obj.storable_item``), as a
slot value is, so a nested list or dict is itself persistent: its changes are
tracked by the message's transaction and undone by its abort. The writers
here convert too, for an older image's ``PersistentMapping``/``PersistentList``
(``c[k] = v``, ``append``, ``extend``, ``insert``, ``update``, ``setdefault``,
``+=``, ``|=``: ``STORING``, answered by ``uvm.guards`` as ``Storing``). A
container's attributes cannot be assigned.

Code the garbage collector runs (a leftover generator's ``finally:``) writes
nothing (``uvm.message_scope``). Runs on the calling worker thread; no state.
"""

from __future__ import annotations

import collections
import decimal
import operator
from collections.abc import Callable
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .capabilities import ChainMap
from .errors import InvalidValue
from .message_scope import _COLLECTOR, LEFTOVER, collecting
from .obj import ImageList, ImageMapping, UvmObject
from .obj import storable_item as storable

__all__ = ["STORING", "Storing", "guarded_write", "inplacevar"]

_WRITABLE = (UvmObject, dict, list, set, bytearray, PersistentMapping, PersistentList,
             collections.deque, decimal.Context, type(decimal.Context().traps), ChainMap)


def _item(key: Any) -> Any:
    if type(key) is not str:
        raise InvalidValue(f"mapping keys must be strings (exactly str), got "
                           f"{type(key).__name__}")
    return key


def _items(values: Any) -> list[Any]:
    return [storable(v) for v in values]


def _update(target: Any, *args: Any, **kwargs: Any) -> None:
    if len(args) > 1:
        raise TypeError(f"update expected at most 1 argument, got {len(args)}")
    new = dict(*args, **kwargs)
    target.update({_item(k): storable(v) for k, v in new.items()})


# the in-place writers of persistent containers: (target, *args) -> what the method returns
STORING: dict[str, Callable[..., Any]] = {
    "append": lambda target, value: target.append(storable(value)),
    "extend": lambda target, values: target.extend(_items(values)),
    "insert": lambda target, index, value: target.insert(index, storable(value)),
    "update": _update,
    "setdefault": lambda target, key, value=None: target.setdefault(_item(key), storable(value)),
}


class Storing:
    """An in-place writer of an image container, converting what it writes (``storable``)."""

    __slots__ = ("_target", "_name")

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return STORING[self._name](self._target, *args, **kwargs)

    def __reduce__(self) -> Any:
        raise TypeError("a container's writer cannot be pickled or copied")


class _ContainerWrite:
    """What ``_write_`` answers for an image container: item writes convert their value
    (``storable``); attribute writes are refused."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __setitem__(self, key: Any, value: Any) -> None:
        target = self._target
        kind = type(target)
        if kind is ImageMapping or kind is ImageList:
            target[key] = value  # the class converts (uvm.obj)
        elif kind is PersistentMapping:
            target[_item(key)] = storable(value)
        elif type(key) is slice:
            target[key] = _items(value)
        else:
            target[key] = storable(value)

    def __delitem__(self, key: Any) -> None:
        del self._target[key]

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"a method cannot set attributes of the image's "
                        f"{type(self._target).__name__}")

    __delattr__ = __setattr__  # type: ignore[assignment]


def guarded_write(obj: Any) -> Any:
    """``_write_(obj)``: what ``obj.x = v`` / ``obj[k] = v`` writes through, or TypeError."""
    if _COLLECTOR[0] is not None and collecting():
        raise RuntimeError(LEFTOVER)
    kind = type(obj)
    if kind in _CONTAINERS:
        return _ContainerWrite(obj)
    if isinstance(obj, (PersistentMapping, PersistentList)):
        raise TypeError(f"a method cannot modify a {kind.__name__}")
    if isinstance(obj, _WRITABLE):
        return obj
    raise TypeError(f"a method cannot modify a {kind.__name__}")


_CONTAINERS = frozenset({ImageMapping, ImageList, PersistentMapping, PersistentList})
_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}


def inplacevar(op: str, target: Any, value: Any) -> Any:
    """``_inplacevar_``: ``target op= value``, converting into an older image's containers."""
    kind = type(target)
    if kind is PersistentList and op == "+=":
        target.extend(_items(value))  # what list's += does, each value converted
        return target
    if kind is PersistentMapping and op == "|=":
        # UserDict's |= changes ``data`` without telling the transaction: update does
        _update(target, value)
        return target
    return _INPLACE[op](target, value)

