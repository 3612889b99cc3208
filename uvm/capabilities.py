"""Capabilities: what ``import x`` gives method code, instead of the module ``x``.

A method that writes ``import json`` or ``from math import sqrt`` gets a
``Namespace``: a frozen object holding only the values and functions granted
here, by name. It is not the module: it has no ``sys``, ``copyreg`` or
``decoder`` to walk to, no module state to change, and setting or deleting an
attribute on it fails. The grants follow one rule (the "endowments" of
Hardened JavaScript): nothing method code receives can change what other
code relies on. Hence

* functions of pure computation (``math``, ``itertools``, ``heapq``, ...),
  immutable types (``datetime.date``, ``decimal.Decimal``) and classes whose
  instances are the caller's own (``collections.Counter``, ``fractions.Fraction``);
* classes only where the guards keep their metaclass out of reach
  (``uvm.guards``: ``Sequence.register`` and ``Fraction.register`` are not
  attributes a method can read), so ABCs serve ``isinstance`` and nothing else;
* no module, no shared mutable object: the decimal context templates are a
  fresh copy at each access, ``hashlib``'s algorithm sets are frozensets;
* per-message state where the standard library keeps it per thread or per
  process: the granted ``decimal.getcontext``, ``setcontext`` and
  ``localcontext`` and the ``random`` functions act on the running message's own
  decimal context and generator (``uvm.message_scope``), never the thread's or
  the process's, and refuse outside any message;
* nothing that evaluates strings or registers (``typing``, ``singledispatch``,
  ``namedtuple``, ``string.Formatter``, ``wraps``), sleeps (``time.sleep``) or
  touches the host (``uuid1`` may run a subprocess).

``json`` and ``re`` are bounded (``uvm.bounded``). Namespaces are built once at
import and only read afterwards, so every worker thread shares them safely.
This module imports nothing of the image; ``uvm.allowlist`` maps import
statements onto it, ``uvm.guards`` enforces the attribute rules.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import cmath
import collections
import collections.abc
import datetime
import decimal
import difflib
import fractions
import functools
import hashlib
import heapq
import hmac
import itertools
import math
import numbers
import pprint
import random
import statistics
import string
import textwrap
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from persistent import Persistent

from . import bounded
from .message_scope import (
    DECIMAL_SCOPE,
    RANDOM_FUNCTIONS,
    MethodScope,
    RandomScope,
    enter_message,
    fresh_decimal_context,
    getcontext,
    localcontext,
    random_function,
    setcontext,
)

__all__ = [
    "DECIMAL_SCOPE", "NAMES", "MethodScope", "Namespace", "RandomScope", "enter_message",
    "fresh_decimal_context", "namespace",
]


class Fresh:
    """A grant made anew at each access (a copy of something that must not be shared)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class Namespace:
    """A frozen set of grants that ``import name`` gives a method (never the module)."""

    __slots__ = ("_name", "_grants")

    def __init__(self, name: str, grants: Mapping[str, Any]) -> None:
        for key in grants:
            if not key.isidentifier() or key.startswith("_"):
                raise ValueError(f"grant {key!r} of {name!r} is not a public identifier")
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_grants", MappingProxyType(dict(grants)))

    def grant(self, name: str) -> Any:
        """The value granted as ``name``, or ``AttributeError`` naming what is granted."""
        try:
            value = self._grants[name]
        except (KeyError, TypeError):
            raise AttributeError(
                f"{self._name!r} grants no {name!r} to methods (it grants: "
                f"{', '.join(sorted(self._grants))})"
            ) from None
        return value.make() if type(value) is Fresh else value

    def names(self) -> frozenset[str]:
        return frozenset(self._grants)

    def __getattr__(self, name: str) -> Any:  # ``from x import y`` reads grants this way
        if name.startswith("_"):
            raise AttributeError(name)
        return self.grant(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the capabilities {self._name!r} are frozen; {name!r} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"the capabilities {self._name!r} are frozen; {name!r} cannot be removed")

    def __reduce__(self) -> Any:
        raise TypeError("capabilities cannot be pickled or copied")

    def __dir__(self) -> list[str]:
        return sorted(self._grants)

    def __repr__(self) -> str:
        return f"<capabilities {self._name}>"


class ChainMap(collections.ChainMap):  # type: ignore[type-arg]
    """``collections.ChainMap`` whose writes refuse a persistent first map: an image
    container is written only through its own guarded writers (``uvm.guard_writes``), which
    convert what they store; ChainMap would write into it unconverted."""

    def __setitem__(self, key: Any, value: Any) -> None:
        _plain_target(self.maps[0], "a ChainMap")
        super().__setitem__(key, value)


def _plain_target(target: Any, what: str) -> None:
    if isinstance(target, Persistent):
        raise TypeError(f"{what} cannot write into the image's {type(target).__name__}: "
                        "write into it directly (its own methods and item assignment)")


def _insort(func: Callable[..., Any]) -> Callable[..., Any]:
    def insort(a: Any, x: Any, *args: Any, **kwargs: Any) -> None:
        _plain_target(a, func.__name__)
        func(a, x, *args, **kwargs)

    insort.__name__ = insort.__qualname__ = func.__name__
    insort.__doc__ = func.__doc__
    return insort


def _take(module: ModuleType, names: Iterable[str]) -> dict[str, Any]:
    return {name: getattr(module, name) for name in names}


def _public(module: ModuleType, *, drop: Iterable[str] = ()) -> dict[str, Any]:
    """Every public name of a C module of pure functions and constants."""
    dropped = set(drop)
    return {
        name: value for name, value in vars(module).items()
        if not name.startswith("_") and name not in dropped and not isinstance(value, ModuleType)
    }


# --- the namespaces -------------------------------------------------------------------

_DECIMAL_NAMES = (
    "Decimal", "Context", "DecimalException",
    "InvalidOperation", "DivisionByZero", "Inexact", "Rounded", "Subnormal", "Overflow",
    "Underflow", "Clamped", "FloatOperation", "ROUND_UP", "ROUND_DOWN", "ROUND_CEILING",
    "ROUND_FLOOR", "ROUND_HALF_UP", "ROUND_HALF_DOWN", "ROUND_HALF_EVEN", "ROUND_05UP",
    "MAX_PREC", "MAX_EMAX", "MIN_EMIN", "MIN_ETINY",
)


def _build() -> dict[str, Namespace]:
    abc_names = (
        "Container", "Hashable", "Iterable", "Iterator", "Reversible", "Sized", "Callable",
        "Collection", "Sequence", "MutableSequence", "Set", "MutableSet", "Mapping",
        "MutableMapping", "MappingView", "KeysView", "ItemsView", "ValuesView",
    )
    cabc = Namespace("collections.abc", _take(collections.abc, abc_names))
    grants: dict[str, dict[str, Any]] = {
        "math": _public(math),
        "cmath": _public(cmath),
        "itertools": _public(itertools),
        "json": bounded.json_grants(),
        "re": bounded.re_grants(),
        "datetime": _take(datetime, ("date", "time", "datetime", "timedelta", "timezone",
                                     "tzinfo", "MINYEAR", "MAXYEAR")),
        "time": _take(time, (
            "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
            "process_time", "process_time_ns", "thread_time", "thread_time_ns", "gmtime",
            "localtime", "mktime", "asctime", "ctime", "strftime", "strptime", "struct_time",
            "timezone", "altzone", "daylight", "tzname")),
        "decimal": {
            **_take(decimal, _DECIMAL_NAMES),
            # the message's context only, never the thread's (``uvm.message_scope``)
            "getcontext": getcontext, "setcontext": setcontext, "localcontext": localcontext,
            # process-wide templates: each access answers a copy of its own
            "DefaultContext": Fresh(fresh_decimal_context),
            "BasicContext": Fresh(decimal.BasicContext.copy),
            "ExtendedContext": Fresh(decimal.ExtendedContext.copy),
        },
        "fractions": _take(fractions, ("Fraction",)),
        "numbers": _take(numbers, ("Number", "Complex", "Real", "Rational", "Integral")),
        "statistics": _take(statistics, (
            "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low",
            "median_high", "median_grouped", "mode", "multimode", "quantiles", "pstdev",
            "pvariance", "stdev", "variance", "covariance", "correlation",
            "linear_regression", "StatisticsError")),
        "random": {
            **{name: random_function(name) for name in RANDOM_FUNCTIONS},
            "Random": random.Random, "SystemRandom": random.SystemRandom,
        },
        "functools": _take(functools, ("reduce", "partial", "cmp_to_key", "lru_cache", "cache")),
        "collections": {
            **_take(collections, ("Counter", "deque", "OrderedDict", "defaultdict")),
            "ChainMap": ChainMap,
            "abc": cabc,
        },
        "collections.abc": {},  # importable by its dotted name; the grants live in ``cabc``
        "heapq": _take(heapq, ("heappush", "heappop", "heapify", "heapreplace", "heappushpop",
                               "nlargest", "nsmallest", "merge")),
        "bisect": {
            **_take(bisect, ("bisect", "bisect_left", "bisect_right")),
            **{name: _insort(getattr(bisect, name))
               for name in ("insort", "insort_left", "insort_right")},
        },
        "textwrap": _take(textwrap, ("wrap", "fill", "shorten", "dedent", "indent",
                                     "TextWrapper")),
        "unicodedata": _take(unicodedata, (
            "lookup", "name", "decimal", "digit", "numeric", "category", "bidirectional",
            "combining", "east_asian_width", "mirrored", "decomposition", "normalize",
            "is_normalized", "unidata_version")),
        "difflib": _take(difflib, ("SequenceMatcher", "Differ", "get_close_matches", "ndiff",
                                   "restore", "unified_diff", "context_diff", "IS_LINE_JUNK",
                                   "IS_CHARACTER_JUNK")),
        "hashlib": {
            **_take(hashlib, ("md5", "sha1", "sha224", "sha256", "sha384", "sha512",
                              "sha3_224", "sha3_256", "sha3_384", "sha3_512", "shake_128",
                              "shake_256", "blake2b", "blake2s", "new", "pbkdf2_hmac")),
            "algorithms_guaranteed": frozenset(hashlib.algorithms_guaranteed),
            "algorithms_available": frozenset(hashlib.algorithms_available),
        },
        "hmac": _take(hmac, ("new", "digest", "compare_digest")),
        "base64": _take(base64, (
            "b64encode", "b64decode", "standard_b64encode", "standard_b64decode",
            "urlsafe_b64encode", "urlsafe_b64decode", "b32encode", "b32decode",
            "b32hexencode", "b32hexdecode", "b16encode", "b16decode", "b85encode",
            "b85decode", "a85encode", "a85decode", "encodebytes", "decodebytes")),
        "binascii": _take(binascii, (
            "a2b_base64", "b2a_base64", "a2b_hex", "b2a_hex", "hexlify", "unhexlify", "crc32",
            "crc_hqx", "a2b_qp", "b2a_qp", "a2b_uu", "b2a_uu", "Error", "Incomplete")),
        "uuid": _take(uuid, ("uuid3", "uuid4", "uuid5", "UUID", "NAMESPACE_DNS",
                             "NAMESPACE_URL", "NAMESPACE_OID", "NAMESPACE_X500")),
        "string": _take(string, ("ascii_letters", "ascii_lowercase", "ascii_uppercase",
                                 "digits", "hexdigits", "octdigits", "punctuation",
                                 "printable", "whitespace", "capwords")),
        "pprint": _take(pprint, ("pformat", "saferepr", "isreadable", "isrecursive")),
    }
    built = {name: Namespace(name, given) for name, given in grants.items()}
    built["collections.abc"] = cabc
    return built


_NAMESPACES: dict[str, Namespace] = _build()
#: the names ``import`` resolves to a namespace (``collections.abc`` included)
NAMES: frozenset[str] = frozenset(_NAMESPACES)
#: importing one of these makes the method run in a ``MethodScope`` of its own
SCOPED: frozenset[str] = frozenset({"decimal", "random"})


def namespace(name: str) -> Namespace:
    """The namespace ``import name`` gives a method; ``KeyError`` if there is none."""
    return _NAMESPACES[name]
