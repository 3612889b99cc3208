"""The bounded codecs method code gets as ``json`` and ``re``.

``json``: ``dumps`` and ``loads`` with the keyword arguments that shape text
and nothing that swaps the codec (no ``cls``); a text of at most
``MAX_JSON_CHARS`` in and out, ``indent`` and separators of at most 16
characters (an ``indent`` of ten million spaces is a memory bomb). Deep nesting
ends in ``RecursionError`` (the C scanner counts its depth), a method failure.

``re``: every pattern goes through ``uvm.regex_guard`` before it is compiled
(verdicts cached): exponential constructs and backreferences are refused, and
the pattern's polynomial degree sets the longest subject it may be matched
against (at most ``MAX_SUBJECT``); replacement templates are at most
``MAX_TEMPLATE``. The message's CPU budget stays the last bound. ``compile``
answers a ``Pattern`` wrapper with the same methods, so no raw ``re.Pattern``
(whose methods skip the limits) reaches method code; ``uvm.guards`` refuses one found elsewhere
(``match.re``). Stateless apart from the verdict cache; safe on any thread.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from .regex_guard import MAX_PATTERN, MAX_SUBJECT, subject_limits

__all__ = [
    "MAX_JSON_CHARS", "MAX_PATTERN", "MAX_SUBJECT", "MAX_TEMPLATE", "Pattern", "json_grants",
    "re_grants",
]

MAX_JSON_CHARS = 8_000_000
MAX_TEMPLATE = 10_000
_MAX_SEPARATOR = 16

# --- json -----------------------------------------------------------------------------


def _separator(value: Any, what: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= _MAX_SEPARATOR:
            raise ValueError(f"json.dumps: {what} must be 0 to {_MAX_SEPARATOR}, got {value}")
    elif isinstance(value, str):
        if len(value) > _MAX_SEPARATOR:
            raise ValueError(f"json.dumps: {what} is longer than {_MAX_SEPARATOR} characters")
    elif value is not None:
        raise TypeError(f"json.dumps: {what} must be an int, a str or None")
    return value


def dumps(obj: Any, *, skipkeys: bool = False, ensure_ascii: bool = True,
          allow_nan: bool = True, indent: Any = None, separators: Any = None,
          default: Callable[[Any], Any] | None = None, sort_keys: bool = False) -> str:
    """``json.dumps`` with bounded indent, separators and output size."""
    _separator(indent, "indent")
    if separators is not None:
        item, key = separators
        separators = (_separator(str(item), "a separator"), _separator(str(key), "a separator"))
    text = json.dumps(obj, skipkeys=skipkeys, ensure_ascii=ensure_ascii, allow_nan=allow_nan,
                      indent=indent, separators=separators, default=default,
                      sort_keys=sort_keys)
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"json.dumps: the text is {len(text)} characters; the limit is "
                         f"{MAX_JSON_CHARS}")
    return text


def loads(s: Any, *, object_hook: Callable[..., Any] | None = None,
          object_pairs_hook: Callable[..., Any] | None = None,
          parse_float: Callable[..., Any] | None = None,
          parse_int: Callable[..., Any] | None = None,
          parse_constant: Callable[..., Any] | None = None) -> Any:
    """``json.loads`` of at most ``MAX_JSON_CHARS`` characters (or bytes)."""
    if not isinstance(s, str | bytes | bytearray):
        raise TypeError(f"json.loads takes str or bytes, not {type(s).__name__}")
    if len(s) > MAX_JSON_CHARS:
        raise ValueError(f"json.loads: the text is {len(s)} characters; the limit is "
                         f"{MAX_JSON_CHARS}")
    return json.loads(s, object_hook=object_hook, object_pairs_hook=object_pairs_hook,
                      parse_float=parse_float, parse_int=parse_int,
                      parse_constant=parse_constant)


def json_grants() -> dict[str, Any]:
    return {"dumps": dumps, "loads": loads, "JSONDecodeError": json.JSONDecodeError}


# --- re ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _compiled(pattern: Any, flags: int) -> tuple[re.Pattern[Any], int, int | None]:
    anchored, searching = subject_limits(pattern, flags)
    return re.compile(pattern, flags), anchored, searching


def _pattern(pattern: Any, flags: int) -> Pattern:
    if isinstance(pattern, Pattern):
        if flags:
            raise ValueError("cannot give flags with a compiled pattern")
        return pattern
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise TypeError("flags must be an int (re.IGNORECASE | ...)")
    return Pattern(*_compiled(pattern, int(flags)))


def _template(repl: Any) -> Any:
    if isinstance(repl, str | bytes) and len(repl) > MAX_TEMPLATE:
        raise ValueError(f"the replacement is {len(repl)} characters; the limit is {MAX_TEMPLATE}")
    return repl


class Pattern:
    """A checked, compiled pattern: ``re.Pattern``'s matching methods, with the limits."""

    __slots__ = ("_raw", "_anchored", "_searching")

    def __init__(self, raw: re.Pattern[Any], anchored: int, searching: int | None) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_anchored", anchored)
        object.__setattr__(self, "_searching", searching)

    def _subject(self, subject: Any, search: bool = True) -> Any:
        limit = self._searching if search else self._anchored
        if limit is None:
            raise ValueError("this pattern may be used with match and fullmatch only: searching "
                             "with it takes time like n**6 or worse (uvm.regex_guard)")
        if isinstance(subject, str | bytes) and len(subject) > limit:
            raise ValueError(f"the subject is {len(subject)} characters; this pattern may be "
                             f"{'searched' if search else 'matched'} in at most {limit} "
                             "(its matching time grows with a power of the length; "
                             "uvm.regex_guard)")
        return subject

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a pattern is read-only")

    pattern = property(lambda self: self._raw.pattern)
    flags = property(lambda self: self._raw.flags)
    groups = property(lambda self: self._raw.groups)
    groupindex = property(lambda self: dict(self._raw.groupindex))

    def match(self, string: Any, *args: Any) -> Any:
        return self._raw.match(self._subject(string, False), *args)

    def fullmatch(self, string: Any, *args: Any) -> Any:
        return self._raw.fullmatch(self._subject(string, False), *args)

    def search(self, string: Any, *args: Any) -> Any:
        return self._raw.search(self._subject(string), *args)

    def findall(self, string: Any, *args: Any) -> Any:
        return self._raw.findall(self._subject(string), *args)

    def finditer(self, string: Any, *args: Any) -> Any:
        return self._raw.finditer(self._subject(string), *args)

    def split(self, string: Any, maxsplit: int = 0) -> Any:
        return self._raw.split(self._subject(string), maxsplit)

    def sub(self, repl: Any, string: Any, count: int = 0) -> Any:
        return self._raw.sub(_template(repl), self._subject(string), count)

    def subn(self, repl: Any, string: Any, count: int = 0) -> Any:
        return self._raw.subn(_template(repl), self._subject(string), count)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"<checked {self._raw!r}>"


def _compile(pattern: Any, flags: int = 0) -> Pattern:
    return _pattern(pattern, flags)


def _module_function(name: str) -> Callable[..., Any]:
    def call(pattern: Any, string: Any, *args: Any, flags: int = 0, **kwargs: Any) -> Any:
        return getattr(_pattern(pattern, flags), name)(string, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _sub_function(name: str) -> Callable[..., Any]:
    def call(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
        return getattr(_pattern(pattern, flags), name)(repl, string, count)

    call.__name__ = call.__qualname__ = name
    return call


def _split(pattern: Any, string: Any, maxsplit: int = 0, flags: int = 0) -> Any:
    return _pattern(pattern, flags).split(string, maxsplit)


def re_grants() -> dict[str, Any]:
    grants: dict[str, Any] = {
        name: _module_function(name)
        for name in ("match", "fullmatch", "search", "findall", "finditer")
    }
    grants.update(sub=_sub_function("sub"), subn=_sub_function("subn"), split=_split,
                  compile=_compile, escape=re.escape, error=re.error)
    for flag in ("ASCII", "A", "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE",
                 "X", "UNICODE", "U", "NOFLAG"):
        grants[flag] = int(getattr(re, flag))
    return grants
