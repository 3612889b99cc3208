"""The bounded codecs method code gets as ``json`` and ``re``.

``json``: ``dumps`` and ``loads`` with the keyword arguments that shape text
and nothing that swaps the codec (no ``cls``); a text of at most
``MAX_JSON_CHARS`` in and out, ``indent`` and separators of at most 16
characters (an ``indent`` of ten million spaces is a memory bomb). Deep nesting
ends in ``RecursionError`` (the C scanner counts its depth), a method failure.

``re``: regular expressions whose matching time cannot explode. Python's
engine backtracks, and a few constructs make that exponential in the
subject's length; every pattern goes through ``check_pattern`` before it is
compiled (verdicts are cached), which refuses, structurally:

* backreferences (``\\1``, ``(?P=name)``, ``(?(1)...)``): matching with them is
  NP-hard in general;
* a repeat that can iterate more than once (``*``, ``+``, ``{2,}``) and
  backtracks (not possessive ``*+``, not inside an atomic group ``(?>...)``)
  whose body is ambiguous: it holds an alternation whose branches do not start
  with distinct literal characters, or a variable repeat that is not followed,
  in the body, by a literal character it cannot match (``(a+)+``, ``(\\w+\\s?)*``
  and ``(a|a)*`` are refused; ``(\\d+,)*`` and ``(?:foo|bar)+`` pass). The
  refusal says how to write it possessively or atomically;
* patterns over ``MAX_PATTERN`` characters, subjects over ``MAX_SUBJECT``,
  replacement templates over ``MAX_TEMPLATE``.

What remains is polynomial (``.*x.*y`` over a long subject), which the size
limits and the message's CPU budget bound. ``compile`` answers a ``Pattern``
wrapper with the same methods, so no raw ``re.Pattern`` (whose methods skip
the limits) reaches method code; ``uvm.guards`` refuses one found elsewhere
(``match.re``). Stateless apart from the verdict cache; safe on any thread.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = [
    "MAX_JSON_CHARS", "MAX_PATTERN", "MAX_SUBJECT", "MAX_TEMPLATE", "Pattern", "check_pattern",
    "json_grants", "re_grants",
]

MAX_JSON_CHARS = 8_000_000
MAX_PATTERN = 2_000
MAX_SUBJECT = 1_000_000
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


# --- re: the pattern guard ------------------------------------------------------------

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT}
_BACKREFS = {sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE, sre.GROUPREF_LOC_IGNORE,
             sre.GROUPREF_UNI_IGNORE}
_HINT = ("; write the inner repeat possessively ('x++', 'x*+') or the group atomically "
         "('(?>...)') so that it cannot backtrack")


class _Ambiguous(Exception):
    pass


def _items(data: Any) -> list[tuple[Any, Any]]:
    return list(data.data if isinstance(data, sre_parse.SubPattern) else data)


def _single(items: list[tuple[Any, Any]]) -> tuple[Any, Any] | None:
    """The one-character matcher a repeat body consists of, if it is one."""
    if len(items) == 1 and items[0][0] in (sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY):
        return items[0]
    return None


_ASCII_SPACE = " \t\n\r\f\v"


def _in_category(code: Any, ch: str) -> bool:
    """Whether ``\\d``, ``\\W``, ... may match ``ch``: exact for ASCII, else yes."""
    name = str(code)
    if not ch.isascii() or not any(k in name for k in ("DIGIT", "SPACE", "WORD")):
        return True
    if "DIGIT" in name:
        hit = ch in "0123456789"
    elif "SPACE" in name:  # str patterns also count \x1c-\x1f as space; bytes and ASCII do not
        hit = ch in _ASCII_SPACE + ("" if "NOT_" in name else "\x1c\x1d\x1e\x1f")
    else:
        hit = ch.isalnum() or ch == "_"
    return not hit if "NOT_" in name else hit


def _same(code: int, ch: str) -> bool:
    other = chr(code)
    return other == ch or other.casefold() == ch.casefold() or other.lower() == ch.lower() \
        or other.upper() == ch.upper()


def _may_match(matcher: tuple[Any, Any], ch: str) -> bool:
    """Whether the one-character ``matcher`` may match ``ch``, ignoring case (errs towards yes:
    inline and local flags are not followed)."""
    op, av = matcher
    if op == sre.ANY:
        return True
    if op == sre.LITERAL:
        return _same(av, ch)
    if op == sre.NOT_LITERAL:
        return not (ch.lower() == ch.upper() and av == ord(ch))
    if any(item_op == sre.NEGATE for item_op, _ in av):
        # ``[^,;]`` cannot match ',': decided only for characters without case (flags are
        # not followed), else assumed to match
        uncased = ch.lower() == ch.upper()
        return not (uncased and any(item_op == sre.LITERAL and item == ord(ch)
                                    for item_op, item in av))
    for item_op, item in av:
        if item_op == sre.LITERAL and _same(item, ch):
            return True
        if item_op == sre.RANGE and any(item[0] <= ord(v) <= item[1] for v in
                                        {ch, ch.lower(), ch.upper()} if len(v) == 1):
            return True
        if item_op == sre.CATEGORY and _in_category(item, ch):
            return True
        if item_op not in (sre.LITERAL, sre.RANGE, sre.CATEGORY):
            return True
    return False


def _check_body(items: list[tuple[Any, Any]], follow: tuple[Any, Any] | None = None) -> None:
    """Refuse an ambiguous body of a backtracking repeat (see the module docstring).

    ``follow`` is what comes after ``items`` inside the repeat's body, if anything.
    """
    for index, (op, av) in enumerate(items):
        after = items[index + 1] if index + 1 < len(items) else follow
        if op in _REPEATS:
            lo, hi, inner = av
            if lo == hi:
                _check_body(_items(inner), after)
                continue
            single = _single(_items(inner))
            if single is None or after is None or after[0] != sre.LITERAL \
                    or _may_match(single, chr(after[1])):
                raise _Ambiguous("a variable repeat inside a repeat can split the same text "
                                 "in many ways")
        elif op == sre.BRANCH:
            firsts = []
            for branch in av[1]:
                branch_items = _items(branch)
                if not branch_items or branch_items[0][0] != sre.LITERAL:
                    raise _Ambiguous("an alternation inside a repeat whose branches do not "
                                     "start with distinct literal characters")
                firsts.append(chr(branch_items[0][1]).casefold())
                _check_body(branch_items, after)
            if len(set(firsts)) != len(firsts):
                raise _Ambiguous("an alternation inside a repeat whose branches start alike")
        elif op == sre.SUBPATTERN:
            _check_body(_items(av[-1]), after)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(_items(av[1]))
        elif op == sre.ATOMIC_GROUP:
            _walk(_items(av))
        elif op == sre.POSSESSIVE_REPEAT:
            _walk(_items(av[2]))


def _walk(items: list[tuple[Any, Any]]) -> None:
    for op, av in items:
        if op in _BACKREFS:
            raise ValueError("backreferences are not allowed in method patterns (their "
                             "matching time is exponential)")
        if op in _REPEATS:
            lo, hi, inner = av
            if hi > 1:
                try:
                    _check_body(_items(inner))
                except _Ambiguous as exc:
                    raise ValueError(f"the pattern could take exponential time: {exc}"
                                     f"{_HINT}") from None
            _walk(_items(inner))
        elif op == sre.POSSESSIVE_REPEAT:
            _walk(_items(av[2]))
        elif op == sre.SUBPATTERN:
            _walk(_items(av[-1]))
        elif op == sre.BRANCH:
            for branch in av[1]:
                _walk(_items(branch))
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(_items(av[1]))
        elif op == sre.ATOMIC_GROUP:
            _walk(_items(av))


def check_pattern(pattern: Any, flags: int = 0) -> None:
    """Raise ``ValueError`` (or ``re.error``) unless ``pattern`` is safe to match (see above)."""
    if not isinstance(pattern, str | bytes):
        raise TypeError(f"a pattern is a str or bytes, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"the pattern is {len(pattern)} characters; the limit is {MAX_PATTERN}")
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise TypeError("flags must be an int (re.IGNORECASE | ...)")
    _walk(_items(sre_parse.parse(pattern, flags)))


@functools.lru_cache(maxsize=512)
def _compiled(pattern: Any, flags: int) -> re.Pattern[Any]:
    check_pattern(pattern, flags)
    return re.compile(pattern, flags)


def _pattern(pattern: Any, flags: int) -> re.Pattern[Any]:
    if isinstance(pattern, Pattern):
        if flags:
            raise ValueError("cannot give flags with a compiled pattern")
        return pattern._raw
    if not isinstance(flags, int):
        raise TypeError("flags must be an int (re.IGNORECASE | ...)")
    return _compiled(pattern, int(flags))


def _subject(subject: Any) -> Any:
    if isinstance(subject, str | bytes) and len(subject) > MAX_SUBJECT:
        raise ValueError(f"the subject is {len(subject)} characters; the limit for pattern "
                         f"matching is {MAX_SUBJECT}")
    return subject


def _template(repl: Any) -> Any:
    if isinstance(repl, str | bytes) and len(repl) > MAX_TEMPLATE:
        raise ValueError(f"the replacement is {len(repl)} characters; the limit is {MAX_TEMPLATE}")
    return repl


class Pattern:
    """A checked, compiled pattern: ``re.Pattern``'s matching methods, with the limits."""

    __slots__ = ("_raw",)

    def __init__(self, raw: re.Pattern[Any]) -> None:
        object.__setattr__(self, "_raw", raw)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a pattern is read-only")

    pattern = property(lambda self: self._raw.pattern)
    flags = property(lambda self: self._raw.flags)
    groups = property(lambda self: self._raw.groups)
    groupindex = property(lambda self: dict(self._raw.groupindex))

    def match(self, string: Any, *args: Any) -> Any:
        return self._raw.match(_subject(string), *args)

    def fullmatch(self, string: Any, *args: Any) -> Any:
        return self._raw.fullmatch(_subject(string), *args)

    def search(self, string: Any, *args: Any) -> Any:
        return self._raw.search(_subject(string), *args)

    def findall(self, string: Any, *args: Any) -> Any:
        return self._raw.findall(_subject(string), *args)

    def finditer(self, string: Any, *args: Any) -> Any:
        return self._raw.finditer(_subject(string), *args)

    def split(self, string: Any, maxsplit: int = 0) -> Any:
        return self._raw.split(_subject(string), maxsplit)

    def sub(self, repl: Any, string: Any, count: int = 0) -> Any:
        return self._raw.sub(_template(repl), _subject(string), count)

    def subn(self, repl: Any, string: Any, count: int = 0) -> Any:
        return self._raw.subn(_template(repl), _subject(string), count)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"<checked {self._raw!r}>"


def _compile(pattern: Any, flags: int = 0) -> Pattern:
    return Pattern(_pattern(pattern, flags))


def _module_function(name: str) -> Callable[..., Any]:
    def call(pattern: Any, string: Any, *args: Any, flags: int = 0, **kwargs: Any) -> Any:
        return getattr(Pattern(_pattern(pattern, flags)), name)(string, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


def _sub_function(name: str) -> Callable[..., Any]:
    def call(pattern: Any, repl: Any, string: Any, count: int = 0, flags: int = 0) -> Any:
        return getattr(Pattern(_pattern(pattern, flags)), name)(repl, string, count)

    call.__name__ = call.__qualname__ = name
    return call


def _split(pattern: Any, string: Any, maxsplit: int = 0, flags: int = 0) -> Any:
    return Pattern(_pattern(pattern, flags)).split(string, maxsplit)


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
