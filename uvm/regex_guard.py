"""The regular-expression guard: a pattern's matching time, bounded before it runs.

Python's ``re`` backtracks, and holds the GIL while it does; a pattern and a
subject chosen together can keep it busy for years. ``subject_limit(pattern)``
reads the parsed pattern (``re._parser``, nothing is matched) and answers the
longest subject it may be matched against, or raises ``ValueError`` saying
why the pattern is refused. The reasoning, per construct:

* a *choice point* is a backtracking variable repeat (``x*``, ``x+``,
  ``x{1,5}``, ``x?``; not possessive ``x*+``, not inside an atomic group
  ``(?>...)``) or an alternation. It is *decided* when what it may consume
  cannot be confused with what follows it: a repeat of one character class
  followed by a character it cannot match (``\\d+,``, ``\\s*\\w``, ``[^,]*,``)
  or by the pattern's end, or a repeat of a group whose first characters
  cannot start what follows (``(\\w+\\.)+``); an alternation whose branches start with distinct
  literal characters (``foo|bar``). Character sets are compared exactly for
  literals and ranges, and by a fixed table for ``\\d``, ``\\s``, ``\\w`` and
  their negations (ASCII and Unicode meanings both counted as "may match");
* inside a repeat that iterates more than once, an undecided choice point makes
  the time exponential in the subject's length (``(a+)+``, ``(\\w+\\s?)*``,
  ``(a|a)*``): refused, with the hint to write it possessively or atomically;
* backreferences (``\\1``, ``(?P=n)``, ``(?(1)..)``) are refused: matching
  with them is NP-hard in general;
* elsewhere, ``d`` undecided repeats make the time grow like ``n**d`` (an
  undecided alternation outside a loop costs a constant factor); the subject
  limit keeps ``n**d`` near 10**8 steps: ``MAX_SUBJECT`` for d <= 1, then
  10 000, 500, 100 characters; five or more are refused.

The sets are compared conservatively (inline and local flags are not
followed: every comparison ignores case), so the guard may refuse a pattern
that is safe, never the reverse for the constructs it models. Stateless; any
thread. Nothing here imports the image.
"""

from __future__ import annotations

from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

__all__ = ["MAX_PATTERN", "MAX_SUBJECT", "subject_limits"]

MAX_PATTERN = 2_000
MAX_SUBJECT = 1_000_000
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT}
_BACKREFS = {sre.GROUPREF, sre.GROUPREF_EXISTS, sre.GROUPREF_IGNORE, sre.GROUPREF_LOC_IGNORE,
             sre.GROUPREF_UNI_IGNORE}
_SINGLE = {sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY}
_END = ("end", None)  # the pattern's end, or an end-of-string anchor: nothing follows
_ENDS = {sre.AT_END, sre.AT_END_STRING}
_ASCII_SPACE = " \t\n\r\f\v"
_HINT = ("; write the inner repeat possessively ('x++', 'x*+') or the group atomically "
         "('(?>...)') so that it cannot backtrack")
_ENUMERABLE = 4096  # a set with more characters than this is not enumerated


class _Exponential(ValueError):
    pass


def _items(data: Any) -> list[tuple[Any, Any]]:
    return list(data.data if isinstance(data, sre_parse.SubPattern) else data)


def _in_category(code: Any, ch: str) -> bool:
    """Whether ``\\d``, ``\\W``, ... may match ``ch`` in its ASCII or its Unicode meaning."""
    name = str(code)
    negated = "NOT_" in name
    if "DIGIT" in name:
        return ch not in "0123456789" if negated else ch.isdecimal()
    if "SPACE" in name:
        return ch not in _ASCII_SPACE if negated else ch.isspace()
    if "WORD" in name:
        return not (ch.isascii() and (ch.isalnum() or ch == "_")) if negated \
            else ch.isalnum() or ch == "_"
    return True  # line breaks and anything unknown


def _variants(ch: str) -> set[str]:
    return {v for v in (ch, ch.lower(), ch.upper(), ch.casefold()) if len(v) == 1}


def _may_match(matcher: tuple[Any, Any], ch: str) -> bool:
    """Whether the one-character ``matcher`` may match ``ch`` (case ignored; errs to yes)."""
    op, av = matcher
    if op == sre.ANY:
        return True
    if op == sre.LITERAL:
        return bool(_variants(chr(av)) & _variants(ch))
    if op == sre.NOT_LITERAL:
        return not (ch.lower() == ch.upper() and av == ord(ch))
    negate = any(item_op == sre.NEGATE for item_op, _ in av)
    if negate:  # decided only for an uncased character listed literally: [^,;] and ','
        return not (ch.lower() == ch.upper()
                    and any(o == sre.LITERAL and item == ord(ch) for o, item in av))
    for item_op, item in av:
        if item_op == sre.LITERAL and _variants(chr(item)) & _variants(ch):
            return True
        if item_op == sre.RANGE and any(item[0] <= ord(v) <= item[1] for v in _variants(ch)):
            return True
        if item_op == sre.CATEGORY and _in_category(item, ch):
            return True
        if item_op not in (sre.LITERAL, sre.RANGE, sre.CATEGORY):
            return True
    return False


def _characters(matcher: tuple[Any, Any]) -> list[str] | None:
    """The characters a matcher lists (literals and ranges), if few; None otherwise."""
    op, av = matcher
    if op == sre.LITERAL:
        return [chr(av)]
    if op != sre.IN or any(o not in (sre.LITERAL, sre.RANGE) for o, _ in av):
        return None
    found: list[str] = []
    for item_op, item in av:
        low, high = (item, item) if item_op == sre.LITERAL else item
        if len(found) + high - low >= _ENUMERABLE:
            return None
        found.extend(chr(c) for c in range(low, high + 1))
    return found


def _category_of(matcher: tuple[Any, Any]) -> str | None:
    op, av = matcher
    if op == sre.IN and len(av) == 1 and av[0][0] == sre.CATEGORY:
        return str(av[0][1])
    return None


def _disjoint(one: tuple[Any, Any], other: tuple[Any, Any]) -> bool:
    """Whether no character may match both single-character matchers (errs to False)."""
    for a, b in ((one, other), (other, one)):
        listed = _characters(a)
        if listed is not None:
            return not any(_may_match(b, ch) for ch in listed)
    first, second = _category_of(one), _category_of(other)
    if first and second:
        kinds = {k for k in ("DIGIT", "SPACE", "WORD") if k in first or k in second}
        negated = ("NOT_" in first, "NOT_" in second)
        if len(kinds) == 1:
            return negated[0] != negated[1]  # \d and \D
        if kinds == {"SPACE", "DIGIT"} or kinds == {"SPACE", "WORD"}:
            return not any(negated)  # \s never matches \d or \w
        if kinds == {"DIGIT", "WORD"}:
            # \D and \w overlap, \d and \W do not
            return ("WORD" in first and negated[0] and not negated[1]) or \
                   ("WORD" in second and negated[1] and not negated[0])
    return False


_EOL = ("eol", None)  # '$' or '\\Z': matches no character, may fail
_ZERO_WIDTH = {sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY}


def _first(items: list[tuple[Any, Any]], index: int, follow: Any) -> list[Any] | None:
    """What may come first from ``items[index:]`` then ``follow``: a list of one-character
    matchers and the sentinels ``_END``/``_EOL``, or None when not known."""
    if index >= len(items):
        return follow
    op, av = items[index]
    rest = _first(items, index + 1, follow) if index + 1 <= len(items) else follow
    if op in _SINGLE:
        return [items[index]]
    if op == sre.SUBPATTERN:
        return _first(_items(av[-1]), 0, rest)
    if op == sre.ATOMIC_GROUP:
        return _first(_items(av), 0, rest)
    if op in _REPEATS or op == sre.POSSESSIVE_REPEAT:
        body = _first(_items(av[2]), 0, None)
        if body is None or av[0] >= 1:
            return body
        return None if rest is None else body + rest
    if op == sre.BRANCH:
        found: list[Any] = []
        for branch in av[1]:
            first = _first(_items(branch), 0, rest)
            if first is None:
                return None
            found += first
        return found
    if op == sre.AT and av in _ENDS:
        return [_EOL]
    if op == sre.AT and av in _ZERO_WIDTH:
        return rest
    return None


def _nullable(items: list[tuple[Any, Any]], index: int, follow: bool) -> bool:
    """Whether ``items[index:]`` (then a rest that is nullable iff ``follow``) can match
    the empty string without any test that may fail."""
    for op, av in items[index:]:
        if op in _REPEATS or op == sre.POSSESSIVE_REPEAT:
            if av[0] and not _nullable(_items(av[2]), 0, True):
                return False
        elif op == sre.SUBPATTERN:
            if not _nullable(_items(av[-1]), 0, True):
                return False
        elif op == sre.BRANCH:
            if not any(_nullable(_items(b), 0, True) for b in av[1]):
                return False
        else:
            return False
    return follow


def _apart(matcher: Any, other: Any) -> bool:
    return matcher is _END or matcher is _EOL or other is _END or other is _EOL \
        or _disjoint(matcher, other)


def _decided_repeat(inner: list[tuple[Any, Any]], after: list[Any] | None) -> bool:
    """Whether "one more, or what follows?" has one answer at every character: the body is
    one character class, or starts with characters that cannot start what follows."""
    if after is None:
        return False
    if len(inner) == 1 and inner[0][0] in _SINGLE:
        return all(_apart(inner[0], a) for a in after)
    first = _first(inner, 0, None)
    return first is not None and all(_apart(f, a) for f in first for a in after)


def _decided_branch(branches: list[Any]) -> bool:
    firsts = []
    for branch in branches:
        items = _items(branch)
        if not items or items[0][0] != sre.LITERAL:
            return False
        firsts.append(frozenset(_variants(chr(items[0][1]))))
    return all(a.isdisjoint(b) for i, a in enumerate(firsts) for b in firsts[i + 1:])


class _Tally:
    """What a walk found: undecided repeats, and whether a repeat's tail may fail."""

    def __init__(self) -> None:
        self.undecided = 0
        self.failing_tail = False


def _walk(items: list[tuple[Any, Any]], follow: list[Any] | None, tail_nullable: bool,
          looping: bool, tally: _Tally) -> None:
    """Tally the choice points of ``items``; raise when ``looping`` (inside an iterating
    repeat) meets an undecided one, or on a backreference."""
    for index, (op, av) in enumerate(items):
        after = _first(items, index + 1, follow)
        after_nullable = _nullable(items, index + 1, tail_nullable)
        if op in _BACKREFS:
            raise ValueError("backreferences are not allowed in method patterns (their "
                             "matching time is exponential)")
        if op in _REPEATS:
            low, high, inner = av
            inner_items = _items(inner)
            if low != high:
                if not after_nullable:
                    tally.failing_tail = True
                if not _decided_repeat(inner_items, after):
                    if looping:
                        raise _Exponential("a variable repeat inside a repeat can split the "
                                           "same text in many ways")
                    tally.undecided += 1
            _walk(inner_items, None, False, looping or high > 1, tally)
        elif op == sre.BRANCH:
            # outside a loop an undecided alternation costs a constant factor, not a degree
            if looping and not _decided_branch(av[1]):
                raise _Exponential("an alternation inside a repeat whose branches do not "
                                   "start with distinct literal characters")
            for branch in av[1]:
                _walk(_items(branch), after, after_nullable, looping, tally)
        elif op == sre.SUBPATTERN:
            _walk(_items(av[-1]), after, after_nullable, looping, tally)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(_items(av[1]), [_END], True, False, tally)
        elif op == sre.ATOMIC_GROUP:  # never re-entered: what is inside ends with it
            _walk(_items(av), [_END], True, False, tally)
        elif op == sre.POSSESSIVE_REPEAT:
            if not after_nullable:
                tally.failing_tail = True
            _walk(_items(av[2]), [_END], True, False, tally)


def _limit(degree: int) -> int | None:
    """The longest subject that keeps ``n ** degree`` near 10**8 steps; None past 5."""
    if degree > 5:
        return None
    return MAX_SUBJECT if degree <= 1 else min(MAX_SUBJECT, int(10 ** (8 / degree)))


def subject_limits(pattern: Any, flags: int = 0) -> tuple[int, int | None]:
    """The longest subjects ``pattern`` may be matched against, anchored (``match``,
    ``fullmatch``) and searching (the rest; None: not at all); ``ValueError`` (or
    ``re.error``) if it may not be used."""
    if not isinstance(pattern, str | bytes):
        raise TypeError(f"a pattern is a str or bytes, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"the pattern is {len(pattern)} characters; the limit is {MAX_PATTERN}")
    if not isinstance(flags, int) or isinstance(flags, bool):
        raise TypeError("flags must be an int (re.IGNORECASE | ...)")
    parsed = sre_parse.parse(pattern, flags)
    items = _items(parsed)
    tally = _Tally()
    try:
        _walk(items, [_END], True, False, tally)
    except _Exponential as exc:
        raise ValueError(f"the pattern could take exponential time: {exc}{_HINT}") from None
    per_attempt = tally.undecided + (1 if tally.failing_tail else 0)
    anchored = bool(items) and items[0][0] == sre.AT and (
        items[0][1] == sre.AT_BEGINNING_STRING
        or (items[0][1] == sre.AT_BEGINNING and not parsed.state.flags & sre.SRE_FLAG_MULTILINE))
    at_start = _limit(per_attempt)
    if at_start is None:
        raise ValueError(f"the pattern has {tally.undecided} undecided repeats; its matching "
                         f"time grows like n**{per_attempt}{_HINT}")
    return at_start, (at_start if anchored else _limit(per_attempt + 1))
