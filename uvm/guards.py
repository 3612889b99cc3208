"""The run-time guards of method code: what an attribute or an item may reach.

RestrictedPython rewrites ``a.b`` into ``_getattr_(a, "b")``, ``a[k]`` into
``_getitem_(a, k)`` and ``a.b = v`` / ``a[k] = v`` into writes through
``_write_(a)``; ``GUARDS`` is what those names are bound to, with the
builtins methods get (``BUILTINS``, never a ``SIGNALS`` exception). The rules
are structural, decided by what an object *is*, never by spelling:

* attribute names: a ``str`` and nothing else, not private (``_x``), and equal
  to their NFKC form (Python normalises identifiers it parses, so a name that
  is not normal can only come from a string and is refused, whatever it spells);
* image objects answer their slots by delegation; a ``Method`` slot answers a
  ``BoundMethod`` (which exposes calling and nothing else);
* capability namespaces answer their grants; a module answers only if it
  belongs to a package of the env (the operator trusted it);
* a class answers only what it defines for its instances, found in its own
  MRO's dicts, never what its metaclass adds (``register``, ``mro``): ABC
  registries are out of reach; a class-level list, dict or set is refused;
* persistent containers answer their ``dict``/``list`` API only (``data``,
  the unguarded inner container, is not part of it), and the methods of their
  classes (``UserList.append``, an ABC's mixins) are not taken from the class
  to be called on one; an older image's containers answer converting writers;
* ``format`` and ``format_map`` exist only on a plain ``str``, and are
  ``str.format`` whose fields walk through these same guards;
* what any guard answers is checked last (``uvm.guard_values``: what method
  code may hold); writes are ``uvm.guard_writes``'s.

The ``getattr`` and ``hasattr`` builtins of methods are these same guards
(a name built at run time meets the same checks as one in the source).
Every guard runs on the calling worker thread and keeps no state. This module
must not import ``uvm.methods`` (which installs it); it knows ``Method``
through ``register_method_types``. ``permit_modules``, ``refused`` and
``guarded_write`` stay importable from here.
"""

from __future__ import annotations

import _string  # the C parser behind str.format's field names
import builtins
import string
import unicodedata
from collections.abc import Callable
from types import FunctionType, ModuleType
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from RestrictedPython import safe_builtins
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
)
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from . import allowlist
from .capabilities import Namespace
from .guard_values import CONTAINER as _CONTAINER
from .guard_values import FINE as _FINE
from .guard_values import MUTABLE as _MUTABLE
from .guard_values import PLAIN as _PLAIN
from .guard_values import SCALARS as _SCALARS
from .guard_values import checked as _checked
from .guard_values import module_ok as _module_ok
from .guard_values import permit_modules, refused, share
from .guard_values import refuse as _refuse
from .guard_values import value_verdict as _value_verdict
from .guard_values import value_verdicts as _value_verdicts
from .guard_writes import STORING as _STORING
from .guard_writes import Storing as _Storing
from .guard_writes import guarded_write, inplacevar
from .message_scope import _COLLECTOR, LEFTOVER, collecting
from .obj import ImageList, ImageMapping, UvmObject, find_slot
from .selectors import slot_name

__all__ = [
    "BUILTINS", "GUARDS", "SIGNALS", "guarded_getattr", "guarded_getitem", "guarded_write",
    "permit_modules", "refused", "register_method_types",
]

#: exceptions that stop the kernel or a generator: never in a method's builtins
SIGNALS = frozenset({"BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit"})

BUILTINS: dict[str, Any] = {
    name: value for name, value in safe_builtins.items()
    # setattr/delattr/id are not needed by methods; class bodies are not allowed.
    if name not in {"__build_class__", "setattr", "delattr", "id", "_getattr_"} | SIGNALS
}
BUILTINS.update({
    name: getattr(builtins, name) for name in (
        "all", "any", "dict", "enumerate", "filter", "frozenset", "list", "map", "max", "min",
        "reversed", "set", "sorted", "sum", "tuple", "zip", "iter", "next", "ascii", "bin",
        "bytearray",
        # format(value, spec) is what an f-string's {value:spec} does: no field walks
        "format",
    )
})
BUILTINS["__import__"] = allowlist.guarded_import

_MAPPING_API = frozenset(n for n in dir(dict) if not n.startswith("_"))
_LIST_API = frozenset(n for n in dir(list) if not n.startswith("_"))
_STR_FORMAT = frozenset({"format", "format_map"})
# ``uvm.methods`` registers its Method (a slot answers it bound) and BoundMethod (shareable)
_method_type: type = type(None)


def register_method_types(method: type, bound: type) -> None:
    """Called once by ``uvm.methods``, which sits above this module."""
    global _method_type
    _method_type = method
    share(bound)


def _class_attribute(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            break
    else:
        raise _refuse(cls, name, f"{cls.__name__!r} does not define {name!r} (what a class's "
                                 "metaclass adds, like register or mro, is out of reach)")
    value = getattr(cls, name)
    if isinstance(value, _MUTABLE):
        raise _refuse(cls, name, "a class's shared, mutable attribute")
    if type(value) is FunctionType and value.__module__ == "collections.abc":
        # MutableMapping.update(c, ...) would write into any container through its own
        # __setitem__, past the conversion of an image container's writers
        raise _refuse(cls, name, "an ABC's mixin method is called on an instance, not "
                                 "taken from the class")
    if klass in _CONTAINER_CLASSES and callable(value):
        # UserList.append(c, x) writes c.data past ImageList's own converting append
        raise _refuse(cls, name, "a container class's method is called on an instance, not "
                                 "taken from the class")
    return value


class _Format:
    """``s.format`` / ``s.format_map`` of a plain ``str``, through the guards."""

    __slots__ = ("_text", "_mapping")

    def __init__(self, text: str, mapping: bool) -> None:
        self._text = text
        self._mapping = mapping

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if self._mapping:
            (mapping,) = args
            return _FORMATTER.vformat(self._text, (), mapping)
        return _FORMATTER.vformat(self._text, args, kwargs)


class _GuardedFormatter(string.Formatter):
    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first


_FORMATTER = _GuardedFormatter()


_OTHER, _IMAGE, _NAMESPACE, _MODULE_OBJ, _CLASS, _PMAPPING, _PLIST, _FORMATTER_OBJ = range(8)
_object_kinds: dict[type, int] = {}
#: the classes an image container's methods come from (``UserList``, ``PersistentMapping``...)
_CONTAINER_CLASSES = frozenset(ImageMapping.__mro__ + ImageList.__mro__) - {object}
_FORMATTER_WALKS = frozenset({"format", "vformat", "get_field", "get_value", "format_field",
                              "convert_field", "parse"})


_KIND_ORDER = ((UvmObject, _IMAGE), (Namespace, _NAMESPACE), (ModuleType, _MODULE_OBJ),
               (type, _CLASS), (PersistentMapping, _PMAPPING), (PersistentList, _PLIST),
               (string.Formatter, _FORMATTER_OBJ))


def _object_kind(kind: type) -> int:
    found = next((code for base, code in _KIND_ORDER if issubclass(kind, base)), _OTHER)
    _object_kinds[kind] = found
    return found


def guarded_getattr(obj: Any, name: Any, default: Any = raise_) -> Any:
    """``obj.name`` for method code (the rules are the module docstring's)."""
    if _COLLECTOR[0] is not None and collecting():
        raise RuntimeError(LEFTOVER)
    if type(obj) is UvmObject and type(name) is str and name and name[0] != "_":
        # the hot path: a slot, read by delegation from ``_slots`` only, so a public name
        # needs no further check (whatever it spells, it is looked up as a slot)
        _holder, value = find_slot(obj, slot_name(name))
        if type(value) is _method_type:
            return value.bind(obj)
        return value if type(value) in _PLAIN else _checked(value, "the slot", name)
    if type(name) is not str:
        raise TypeError("an attribute name must be a str")
    if not name or name[0] == "_":
        raise _refuse(obj, name, "private and dunder attributes are out of reach")
    if not name.isascii() and unicodedata.normalize("NFKC", name) != name:
        raise _refuse(obj, name, "an attribute name must be in NFKC form (as Python spells "
                                 "identifiers)")
    kind = type(obj)
    code = _object_kinds.get(kind)
    if code is None:
        code = _object_kind(kind)
    if code == _IMAGE:
        _holder, value = find_slot(obj, slot_name(name))
        if type(value) is _method_type:
            return value.bind(obj)
        return value if type(value) in _PLAIN else _checked(value, "the slot", name)
    if code == _NAMESPACE:
        return obj.grant(name)
    if name in _STR_FORMAT:
        if kind is str:
            return _Format(obj, name == "format_map")
        raise _refuse(obj, name, "format and format_map exist for methods on a plain str only")
    if name in INSPECT_ATTRIBUTES:
        raise _refuse(obj, name, "frames, code and tracebacks are out of reach")
    if code == _OTHER:  # the common case, inlined
        value = getattr(obj, name) if default is raise_ else getattr(obj, name, default)
        value_kind = type(value)
        if value_kind in _SCALARS:
            return value
        verdict = _value_verdicts.get(value_kind) or _value_verdict(value_kind)
        if verdict[0] == _FINE:
            return value
        if verdict[0] == _CONTAINER:
            for klass in kind.__mro__:
                if vars(klass).get(name) is value:
                    raise _refuse(obj, name, "a class's shared, mutable attribute")
            return value
    elif code == _CLASS:
        value = _class_attribute(obj, name)
    elif code == _PMAPPING or code == _PLIST:
        if name not in (_MAPPING_API if code == _PMAPPING else _LIST_API):
            raise _refuse(obj, name, "a persistent container answers its dict/list API only")
        if name in _STORING and (kind is PersistentMapping or kind is PersistentList):
            return _Storing(obj, name)  # an older image's container: converted here
        value = getattr(obj, name)
    elif code == _MODULE_OBJ:
        if not _module_ok(obj):
            raise _refuse(obj, name, f"the module {obj.__name__!r} is out of reach")
        value = getattr(obj, name) if default is raise_ else getattr(obj, name, default)
    else:  # a string.Formatter from some package: its methods walk attributes unguarded
        if name in _FORMATTER_WALKS:
            raise _refuse(obj, name, "a Formatter walks attributes outside the guards")
        value = getattr(obj, name) if default is raise_ else getattr(obj, name, default)
    return _checked(value, "the attribute", name)


def guarded_getattr_builtin(obj: Any, name: Any, *default: Any) -> Any:
    """The ``getattr`` builtin of methods: ``guarded_getattr``, with Python's default."""
    if len(default) > 1:
        raise TypeError(f"getattr expected at most 3 arguments, got {2 + len(default)}")
    try:
        return guarded_getattr(obj, name)
    except AttributeError as exc:
        if default and not refused(exc):
            return default[0]
        raise


def guarded_hasattr(obj: Any, name: Any) -> bool:
    """The ``hasattr`` builtin of methods: whether ``guarded_getattr`` answers."""
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_getitem(obj: Any, key: Any) -> Any:
    if _COLLECTOR[0] is not None and collecting():
        raise RuntimeError(LEFTOVER)
    value = obj[key]
    return value if type(value) in _PLAIN else _checked(value, "the item", key)



def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


# getattr(obj, "name", default) goes through the same guards as obj.name
BUILTINS["getattr"] = guarded_getattr_builtin
BUILTINS["hasattr"] = guarded_hasattr

GUARDS: dict[str, Any] = {
    "__builtins__": BUILTINS,
    "__name__": "batos.method",
    "_getattr_": guarded_getattr,
    "_getitem_": guarded_getitem,
    "_getiter_": iter,
    "_write_": guarded_write,
    "_inplacevar_": inplacevar,
    "_apply_": _apply,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
}
