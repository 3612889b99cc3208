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
from .obj import UvmObject
from .registry import Registry

__all__ = ["REF", "from_plain", "to_plain"]

REF = "$ref"
_SCALARS = (type(None), bool, int, float, str, bytes)
_MAX_DEPTH = 64


def to_plain(value: Any, _depth: int = 0) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if _depth > _MAX_DEPTH:
        raise UnserializableResult(f"result nested deeper than {_MAX_DEPTH} levels (a cycle?)")
    if isinstance(value, UvmObject):
        return {REF: value._uuid}
    if isinstance(value, list | tuple | PersistentList):
        return [to_plain(v, _depth + 1) for v in value]
    if isinstance(value, dict | PersistentMapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnserializableResult(
                    f"result mapping has a key of type {type(key).__name__}; keys must be strings"
                )
            out[key] = to_plain(item, _depth + 1)
        return out
    raise UnserializableResult(
        f"a method returned a {type(value).__name__}, which cannot leave the image: return "
        "None, bool, int, float, str, bytes, lists, dicts with string keys, or objects"
    )


def from_plain(value: Any, registry: Registry, _depth: int = 0) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if _depth > _MAX_DEPTH:
        raise BadArguments(f"argument nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) == 1 and REF in value:
            return registry.resolve(value[REF])
        return {k: from_plain(v, registry, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_plain(v, registry, _depth + 1) for v in value]
    raise BadArguments(
        f"an argument of type {type(value).__name__} cannot be sent: use plain data "
        'or {"$ref": "<uuid or name>"}'
    )
