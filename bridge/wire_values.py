"""Which msgpack values the wire carries, and where a frame breaks that rule.

The protocol's values are msgpack's nil, booleans, integers, floats, strings, binary,
arrays, and maps whose keys are strings. A frame that is valid msgpack but holds a map
key that is not a string, or an extension value (any type, the timestamp -1 included),
is answered ``InvalidValue`` naming the first such place, e.g. ``args[0]: map key 1 is
not a string`` or ``args[1]: msgpack extension type 5 is not supported``.

``bridge.codec`` decodes a frame at ormsgpack's speed and comes here only when that
fails: ``lenient`` decodes it again accepting both (an extension becomes an
``Extension``), ``first_problem`` finds the place with ormsgpack checking halves, so
even a 1 MiB frame costs milliseconds. ``scan`` reads the bytes themselves for the
frames not even ``lenient`` decodes (a map, or an array holding one, as a map key: no
Python dict can hold it); it is pure Python, linear in the frame (about half a second
for 1 MiB of small values), so the codec calls it only for those. Pure functions, no
I/O; nothing here raises the bridge's errors. Runs on the caller's thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import ormsgpack

__all__ = ["Extension", "Scanned", "describe", "first_problem", "lenient", "scan"]


class Extension:
    """A msgpack extension value as ``lenient`` decodes it: hashable, so a key may be
    one, and not something ormsgpack can encode, so ``first_problem`` finds it."""

    __slots__ = ("size", "tag")

    def __init__(self, tag: int, size: int) -> None:
        self.tag = tag
        self.size = size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Extension) and (self.tag, self.size) == (other.tag, other.size)

    def __hash__(self) -> int:
        return hash((Extension, self.tag, self.size))

    def __repr__(self) -> str:
        return f"Extension(tag={self.tag}, size={self.size})"


def lenient(frame: bytes) -> Any:
    """The frame decoded with any map keys and extension values (``Extension``s);
    raises ormsgpack's ``ValueError`` when even that cannot decode it."""
    return ormsgpack.unpackb(frame, option=ormsgpack.OPT_NON_STR_KEYS,
                             ext_hook=lambda tag, data: Extension(tag, len(data)))


def _at(path: str, what: str) -> str:
    return f"{path}: {what}" if path else what


def _child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def describe(key: Any) -> str:
    """A map key (or any plain value) as a message names it: msgpack words, at most 40
    characters."""
    if isinstance(key, Extension):
        return f"of msgpack extension type {key.tag}"
    if key is None:
        return "nil"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, tuple):
        return "[...] (an array)"
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _extension(tag: int) -> str:
    what = " (timestamp)" if tag == -1 else ""
    return f"msgpack extension type {tag}{what} is not supported"


def _clean(value: Any) -> bool:
    """No non-string key and no extension anywhere in ``value`` (ormsgpack, at C speed)."""
    try:
        ormsgpack.packb(value)
    except TypeError:  # "Dict key must be str", "Type is not msgpack serializable"
        return False
    return True


def _first_unclean(items: list[Any], build: type[Any]) -> int:
    """The index of the first item that is not clean, for a list that is not: halves
    checked by ormsgpack, so the work is about twice the list's, not an item at a time."""
    lo, hi = 0, len(items)  # items[lo:hi] holds the first bad one
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _clean(build(items[lo:mid])):
            lo = mid
        else:
            hi = mid
    return lo


def first_problem(data: Any) -> str | None:
    """Where ``lenient``'s answer holds a non-string key or an extension, or None."""
    if _clean(data):
        return None
    value, path = data, ""
    while True:  # down the path to the first bad thing: everything off it is clean
        if isinstance(value, Extension):
            return _at(path, _extension(value.tag))
        if isinstance(value, dict):
            items = list(value.items())
            key, value = items[_first_unclean(items, dict)]
            if type(key) is not str:
                return _at(path, f"map key {describe(key)} is not a string")
            path = _child(path, key)
        elif isinstance(value, list):
            index = _first_unclean(value, list)
            value, path = value[index], f"{path}[{index}]"
        else:  # only containers and extensions can be unclean
            raise AssertionError(f"unexpected {type(value).__name__} at {path!r}")


# --- the bytes themselves ----------------------------------------------------------------


@dataclass
class Scanned:
    """What ``scan`` read: whether the frame is a map, its top-level ``v`` and ``id``
    (when they are plain values), and its first problem (None: there is none)."""

    is_map: bool
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


class _NotMsgpack(Exception):
    pass


@dataclass
class _Open:
    """A map or array being read: items left, where it is, what comes next."""

    is_map: bool
    left: int
    path: str
    index: int = 0
    expect_key: bool = True
    key: str | None = None


_MAP, _ARRAY, _STR, _EXT, _VALUE = range(5)
_UINT = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}
_INT = {1: ">b", 2: ">h", 4: ">i", 8: ">q"}


def _take(frame: bytes, pos: int, size: int) -> int:
    if pos + size > len(frame):
        raise _NotMsgpack
    return pos + size


def _number(frame: bytes, pos: int, fmt: str, size: int) -> tuple[Any, int]:
    end = _take(frame, pos, size)
    return struct.unpack(fmt, frame[pos:end])[0], end


def _head(frame: bytes, pos: int) -> tuple[int, Any, int]:
    """One value's header at ``pos``: (what, its count / value / tag, where its body ends
    for strings and extensions, else where the next header starts)."""
    t = frame[_take(frame, pos, 1) - 1]
    pos += 1
    if t <= 0x7F or t >= 0xE0:
        return _VALUE, t if t <= 0x7F else t - 0x100, pos
    if t <= 0x8F:
        return _MAP, t & 0x0F, pos
    if t <= 0x9F:
        return _ARRAY, t & 0x0F, pos
    if t <= 0xBF:
        return _STR, (pos, t & 0x1F), _take(frame, pos, t & 0x1F)
    if t in (0xC0, 0xC2, 0xC3):
        return _VALUE, {0xC0: None, 0xC2: False, 0xC3: True}[t], pos
    if 0xC4 <= t <= 0xC6 or 0xD9 <= t <= 0xDB:  # bin 8/16/32, str 8/16/32
        width = 1 << (t - (0xC4 if t <= 0xC6 else 0xD9))
        size, pos = _number(frame, pos, _UINT[width], width)
        end = _take(frame, pos, size)
        return (_VALUE, frame[pos:end], end) if t <= 0xC6 else (_STR, (pos, size), end)
    if 0xC7 <= t <= 0xC9:  # ext 8/16/32
        width = 1 << (t - 0xC7)
        size, pos = _number(frame, pos, _UINT[width], width)
        tag, pos = _number(frame, pos, ">b", 1)
        return _EXT, tag, _take(frame, pos, size)
    if t in (0xCA, 0xCB):
        return (_VALUE, *_number(frame, pos, ">f" if t == 0xCA else ">d", 4 if t == 0xCA else 8))
    if 0xCC <= t <= 0xD3:  # uint / int 8/16/32/64
        width = 1 << ((t - 0xCC) % 4)
        return (_VALUE, *_number(frame, pos, (_UINT if t <= 0xCF else _INT)[width], width))
    if 0xD4 <= t <= 0xD8:  # fixext 1/2/4/8/16
        tag, pos = _number(frame, pos, ">b", 1)
        return _EXT, tag, _take(frame, pos, 1 << (t - 0xD4))
    if t in (0xDC, 0xDD, 0xDE, 0xDF):  # array / map 16/32
        width = 2 if t in (0xDC, 0xDE) else 4
        count, pos = _number(frame, pos, _UINT[width], width)
        return (_ARRAY if t <= 0xDD else _MAP), count, pos
    raise _NotMsgpack  # 0xC1: never used


def _text(frame: bytes, span: tuple[int, int]) -> str:
    start, size = span
    try:
        return frame[start:start + size].decode()
    except UnicodeDecodeError:
        raise _NotMsgpack from None


def scan(frame: bytes) -> Scanned | None:
    """The frame read value by value, without building it; None when it is not one
    msgpack value."""
    try:
        return _scan(frame)
    except _NotMsgpack:
        return None


def _where(parent: _Open | None, is_key: bool) -> str:
    """The path of the value about to be read (a key's: its map's)."""
    if parent is None:
        return ""
    if not parent.is_map:
        return f"{parent.path}[{parent.index}]"
    return parent.path if is_key or parent.key is None else _child(parent.path, parent.key)


def _scan(frame: bytes) -> Scanned:
    stack: list[_Open] = []
    what, value, pos = _head(frame, 0)
    result = Scanned(is_map=what == _MAP)
    parent: _Open | None = None
    is_key = False
    while True:
        # paths are made only where they are needed: a problem, or a container opened
        # before the first problem (a long array of plain values costs no strings)
        if is_key:
            assert parent is not None
            wanted = result.problem is None or len(stack) == 1
            parent.key = _text(frame, value) if what == _STR and wanted else None
            if what != _STR and result.problem is None:
                key = {_MAP: "{...} (a map)", _ARRAY: "[...] (an array)"}.get(what) or (
                    f"of msgpack extension type {value}" if what == _EXT else describe(value))
                result.problem = _at(_where(parent, True), f"map key {key} is not a string")
        elif what == _EXT and result.problem is None:
            result.problem = _at(_where(parent, False), _extension(value))
        elif len(stack) == 1 and parent is not None and parent.key in ("v", "id") and (
                what in (_VALUE, _STR)):
            result.fields[parent.key] = _text(frame, value) if what == _STR else value
        if what in (_MAP, _ARRAY) and value > 0:
            path = _where(parent, is_key) if result.problem is None else ""
            stack.append(_Open(is_map=what == _MAP, left=value * (2 if what == _MAP else 1),
                               path=path))
        else:
            while stack:  # one value done: its container moves on, and closes when full
                top = stack[-1]
                top.left -= 1
                if top.is_map:
                    top.expect_key = not top.expect_key
                else:
                    top.index += 1
                if top.left:
                    break
                stack.pop()
            if not stack:
                return result
        parent = stack[-1]
        is_key = parent.is_map and parent.expect_key
        what, value, pos = _head(frame, pos)
