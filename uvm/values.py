"""Values crossing the image's boundary: message arguments in, results out.

Outside the image a value is plain data: ``None``, ``bool``, ``int``,
``float``, ``str``, ``bytes``, lists, dicts with string keys, and references
to image objects written ``{"$ref": "<uuid or name>"}``. Inside, references
are the objects themselves. ``from_plain`` resolves references against the
current cycle's registry; ``to_plain`` turns a result back into plain data and
raises ``UnserializableResult`` for anything else (the kernel then aborts the
message, so a bad result never leaves a half-done change behind).
"""

from __future__ import annotations

from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .errors import BadArguments, UnserializableResult
from .obj import ImageList, ImageMapping, UvmObject
from .registry import Registry

__all__ = ["REF", "from_plain", "to_plain"]

REF = "$ref"
_SCALARS = frozenset({type(None), bool, int, float, str, bytes})
_MAX_DEPTH = 64
_LISTS = frozenset({list, tuple, ImageList, PersistentList})
_MAPPINGS = frozenset({dict, ImageMapping, PersistentMapping})
# Exact types only, both ways: a subclass of str or int (an enum member, a string
# with its own comparison or hash) carries its class's code to whoever encodes,
# compares or stores it next; it is refused with its type named, never passed on.


def to_plain(value: Any, _depth: int = 0) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if _depth > _MAX_DEPTH:
        raise UnserializableResult(f"result nested deeper than {_MAX_DEPTH} levels (a cycle?)")
    if kind is UvmObject:
        return {REF: value._uuid}
    if kind in _LISTS:
        return [to_plain(v, _depth + 1) for v in value]
    if kind in _MAPPINGS:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise UnserializableResult(
                    f"result mapping has a key of type {_name(key)}; keys must be strings"
                )
            out[key] = to_plain(item, _depth + 1)
        return out
    raise UnserializableResult(
        f"a method returned a {_name(value)}, which cannot leave the image: return "
        "None, bool, int, float, str, bytes, lists, dicts with string keys, or objects "
        "(exactly those types: convert a subclass with str(), int(), ...)"
    )


def from_plain(value: Any, registry: Registry, _depth: int = 0) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if _depth > _MAX_DEPTH:
        raise BadArguments(f"argument nested deeper than {_MAX_DEPTH} levels")
    if kind is dict:
        if len(value) == 1 and REF in value:
            return registry.resolve(value[REF])
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise BadArguments(f"argument mapping has a key of type {_name(key)}; keys "
                                   "must be strings")
            out[key] = from_plain(item, registry, _depth + 1)
        return out
    if kind is list or kind is tuple:
        return [from_plain(v, registry, _depth + 1) for v in value]
    raise BadArguments(
        f"an argument of type {_name(value)} cannot be sent: use plain data (exactly None, "
        'bool, int, float, str, bytes, lists, dicts with string keys) or {"$ref": "<uuid or name>"}'
    )


def _name(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
