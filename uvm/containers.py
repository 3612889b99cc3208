"""The image's dicts and lists: every write converted, every in-place change past a guard.

``uvm.obj.ImageMapping`` and ``uvm.obj.ImageList`` are the containers a slot's
dicts and lists become. The records of an image name them in ``uvm.obj`` (and
``uvm.pickles.ALLOWED`` allows them there), so they are defined there, as
``ConvertingMapping`` and ``ConvertingList`` below with the conversion plugged
in: ``_store`` is ``uvm.obj.storable``, which makes a value's stored form and
knows the image's objects and methods. What this module holds is the rest of
their behaviour: which of ``UserDict``'s and ``UserList``'s ways in a write
may take, and that each of them converts.

Before a container changes in place (``c[k] = v``, ``update``, ``setdefault``,
``del``, ``pop``, ``clear``, ``sort``...) it calls the container guard
(``set_container_guard``), which ``uvm.protection`` installs: a container a
Genesis object's protected slot holds changes only when permitted. Keys are
exactly ``str`` (``check_key``).

Nothing here knows of transactions, the registry or the current message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .errors import InvalidValue

__all__ = ["SCALAR_TYPES", "ConvertingList", "ConvertingMapping", "check_key",
           "set_container_guard", "type_name"]

#: the exact scalar types a stored value may have (``uvm.obj.storable``)
SCALAR_TYPES = frozenset({type(None), bool, int, float, str, bytes})

#: Called as ``guard(container)`` before an image container changes in place; raises to
#: refuse (``uvm.protection``: a container a Genesis object's protected slot holds).
_container_guard: Callable[[Any], None] | None = None


def set_container_guard(guard: Callable[[Any], None] | None) -> None:
    global _container_guard
    _container_guard = guard


def _changing(container: Any) -> None:
    if _container_guard is not None:
        _container_guard(container)


def check_key(key: Any) -> str:
    """``key`` if it is exactly a ``str``, else ``InvalidValue``: an image dict's keys."""
    if type(key) is not str:
        raise InvalidValue(f"mapping keys must be strings (exactly str), got {type_name(key)}")
    return key


def type_name(value: Any) -> str:
    """The type of ``value`` for an error message, naming a subclass of a plain type as one."""
    kind = type(value)
    base = next((b.__name__ for b in kind.__mro__[1:] if b in SCALAR_TYPES or b in
                 (list, tuple, dict)), None)
    name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__name__
    return f"{name} (a subclass of {base})" if base and kind.__module__ != "builtins" else name


class ConvertingMapping(PersistentMapping):
    """A dict in the image. Every way in converts: each value written goes through
    ``_store`` (``uvm.obj.storable``: a nested dict or list becomes an
    ``ImageMapping``/``ImageList``, whose own changes the transaction then tracks) and
    each key is exactly a ``str``, whoever writes (method code through the guards, a
    stdlib function calling ``update`` or ``c[k] = v``, kernel code). ``UserDict``'s
    writers that skip ``__setitem__`` (``|=``, ``copy``) are replaced. A bad key or
    value raises ``InvalidValue`` before anything is written."""

    #: a value's stored form, ``_store(value, depth)``: set by the concrete class
    _store: Callable[[Any, int], Any]

    @classmethod
    def _adopt(cls, data: dict[str, Any]) -> ConvertingMapping:
        # ``data`` already holds stored forms (``storable`` made it)
        new = cls.__new__(cls)
        new.data = data
        return new

    def __setitem__(self, key: Any, value: Any) -> None:
        _changing(self)
        self.data[check_key(key)] = self._store(value, 1)
        self._p_changed = True

    def update(self, /, *args: Any, **kwargs: Any) -> None:
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 argument, got {len(args)}")
        new = dict(*args, **kwargs)
        if new:
            _changing(self)
            self.data.update({check_key(k): self._store(v, 1) for k, v in new.items()})
            self._p_changed = True

    def setdefault(self, key: Any, default: Any = None) -> Any:
        data = self.data
        if key in data:
            return data[key]
        _changing(self)
        stored = data[check_key(key)] = self._store(default, 1)
        self._p_changed = True
        return stored  # the stored form: writing into it changes the image

    def __delitem__(self, key: Any) -> None:
        _changing(self)
        super().__delitem__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        _changing(self)
        return super().pop(key, *default)

    def popitem(self) -> Any:
        _changing(self)
        return super().popitem()

    def clear(self) -> None:
        _changing(self)
        super().clear()

    def __ior__(self, other: Any) -> ConvertingMapping:
        self.update(other)
        return self

    def copy(self) -> ConvertingMapping:
        return self._adopt(dict(self.data))


class ConvertingList(PersistentList):
    """A list in the image: every item written goes through ``_store`` (see
    ``ConvertingMapping``), whoever writes. ``UserList``'s writers that skip
    ``__setitem__`` (the constructor, ``+=``, ``append``, ``insert``, ``extend``) are
    replaced; every new list it makes (``+``, ``*``, slices, ``copy``) goes through the
    constructor."""

    #: an item's stored form, ``_store(value, depth)``: set by the concrete class
    _store: Callable[[Any, int], Any]

    def __init__(self, initlist: Any = None) -> None:
        self.data = [] if initlist is None else self._items(initlist)

    def _items(self, values: Any) -> list[Any]:
        return [self._store(v, 1) for v in values]

    @classmethod
    def _adopt(cls, data: list[Any]) -> ConvertingList:
        new = cls.__new__(cls)
        new.data = data
        return new

    def __setitem__(self, index: Any, item: Any) -> None:
        _changing(self)
        self.data[index] = self._items(item) if type(index) is slice else self._store(item, 1)
        self._p_changed = True

    def __iadd__(self, other: Any) -> ConvertingList:
        self.extend(other)
        return self

    def append(self, item: Any) -> None:
        _changing(self)
        self.data.append(self._store(item, 1))
        self._p_changed = True

    def insert(self, index: Any, item: Any) -> None:
        _changing(self)
        self.data.insert(index, self._store(item, 1))
        self._p_changed = True

    def extend(self, other: Any) -> None:
        items = self._items(other)
        if items:
            _changing(self)
            self.data.extend(items)
            self._p_changed = True

    def __delitem__(self, index: Any) -> None:
        _changing(self)
        super().__delitem__(index)

    def __imul__(self, n: Any) -> ConvertingList:
        _changing(self)
        return super().__imul__(n)

    def pop(self, *index: Any) -> Any:
        _changing(self)
        return super().pop(*index)

    def remove(self, item: Any) -> None:
        _changing(self)
        super().remove(item)

    def clear(self) -> None:
        _changing(self)
        super().clear()

    def reverse(self) -> None:
        _changing(self)
        super().reverse()

    def sort(self, /, *args: Any, **kwargs: Any) -> None:
        _changing(self)
        super().sort(*args, **kwargs)
