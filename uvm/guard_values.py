"""What method code may hold: the verdict every guard passes its answer through last.

``uvm.guards`` answers attributes and items to method code; before any value
reaches it, ``checked`` decides by the value's type (once per type, cached:
this is the hot path) whether method code may hold it. Never a frame,
traceback, code object, raw ``re.Pattern``, a module of no env package, or
any object of the kernel's machinery (ZODB, ZEO, transaction, BTrees,
persistence, the ``uvm`` kernel, the other batos packages); exceptions are
data and pass. Image objects, their containers, capability namespaces,
bounded patterns and (once ``uvm.methods`` registers it) ``BoundMethod`` are
shareable. A refusal is a plain ``AttributeError`` marked as a refusal
(``refused``), so ``getattr``'s default never hides it.

Modules: one that belongs to a package of the env answers (the operator
trusted it); the test-only switch of ``uvm.methods`` may permit more
(``permit_modules``).

Boundary: no state but the per-type cache and the two registrations; runs on
the calling worker thread.
"""

from __future__ import annotations

import collections
import re
from types import CodeType, FrameType, ModuleType, TracebackType
from typing import Any

from persistent import Persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from . import allowlist
from .bounded import Pattern
from .capabilities import ChainMap, Namespace
from .obj import ImageList, ImageMapping, UvmObject

__all__ = [
    "CONTAINER", "FINE", "MODULE", "MUTABLE", "PLAIN", "SCALARS", "checked", "module_ok",
    "permit_modules", "refuse", "refusal", "refused", "share", "value_verdict", "value_verdicts",
]

#: types whose values method code may always hold (checked first, by identity)
PLAIN = frozenset({int, float, bool, str, bytes, type(None), tuple, list, dict, set,
                   frozenset, complex, UvmObject, PersistentMapping, PersistentList,
                   ImageMapping, ImageList})
_OPAQUE = (FrameType, TracebackType, CodeType, re.Pattern)
_MACHINERY = frozenset({"ZODB", "ZEO", "transaction", "BTrees", "persistent", "zodbpickle",
                        "zmq", "uvm", "supervisor", "bridge", "weaver", "crucible", "envs"})
_SHAREABLE = (UvmObject, PersistentMapping, PersistentList, Namespace, Pattern, ChainMap)
#: mutable containers: fine to hold, but not a class's shared one
MUTABLE = (list, dict, set, bytearray, collections.deque)

# modules the test-only switch of ``uvm.methods`` exposes (top-level names)
_permitted_modules: frozenset[str] = frozenset()


def share(kind: type) -> None:
    """Make ``kind`` shareable with method code (``uvm.methods``'s ``BoundMethod``)."""
    global _SHAREABLE
    _SHAREABLE = (*_SHAREABLE, kind)
    value_verdicts.clear()


def permit_modules(names: frozenset[str]) -> None:
    """Let method code walk these modules (only the test-only switch calls this)."""
    global _permitted_modules
    _permitted_modules = frozenset(names)


def refused(error: BaseException) -> bool:
    """Whether an AttributeError is a guard's refusal (not a missing attribute: ``getattr``'s
    default does not apply). Refusals stay plain ``AttributeError`` for everyone else."""
    return getattr(error, "batos_refused", False) is True


def refusal(text: str) -> AttributeError:
    """A guard's refusal saying ``text``."""
    error = AttributeError(text)
    error.batos_refused = True  # type: ignore[attr-defined]
    return error


def refuse(obj: Any, name: str, why: str) -> AttributeError:
    """The refusal of ``obj.name``, saying ``why``."""
    owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    return refusal(f"{owner}.{name}: {why}")


def module_ok(module: ModuleType) -> bool:
    """Whether method code may hold ``module`` (an env package's, or permitted)."""
    top = module.__name__.partition(".")[0]
    if top in _permitted_modules or module.__name__ == "posixpath" and _permitted_modules:
        return True
    return top in allowlist.package_modules() and allowlist.is_allowed(module.__name__)


# Per-type verdicts, computed once per type (types are few, lookups are the hot path).
FINE, MODULE, _REFUSED, CONTAINER = 0, 1, 2, 3
value_verdicts: dict[type, tuple[int, str]] = {}
#: immutable types whose values need no verdict
SCALARS = frozenset({int, float, bool, str, bytes, type(None), tuple, frozenset, complex})


def value_verdict(kind: type) -> tuple[int, str]:
    """(FINE, MODULE, refused or CONTAINER; why refused) for values of ``kind``, cached."""
    if issubclass(kind, MUTABLE):
        verdict = (CONTAINER, "")
    elif issubclass(kind, ModuleType):
        verdict = (MODULE, "")
    elif issubclass(kind, _OPAQUE):
        verdict = (_REFUSED, f"a {kind.__name__}; methods may not hold one")
    elif issubclass(kind, Persistent) and not issubclass(kind, _SHAREABLE):
        verdict = (_REFUSED, f"the image's {kind.__name__}; methods reach the image through "
                             "slots and primitives only")
    elif (getattr(kind, "__module__", None) or "").partition(".")[0] in _MACHINERY \
            and not issubclass(kind, _SHAREABLE) and not issubclass(kind, BaseException):
        verdict = (_REFUSED, f"the kernel's {kind.__name__}; methods may not hold it")
    else:
        verdict = (FINE, "")
    value_verdicts[kind] = verdict
    return verdict


def checked(value: Any, owner: str, name: Any) -> Any:
    """``value`` if method code may hold it (this module's rules), else AttributeError
    saying it is ``owner``'s ``name`` (words built only on refusal: this is the hot path)."""
    kind = type(value)
    if kind in PLAIN:
        return value
    code, why = value_verdicts.get(kind) or value_verdict(kind)
    if code == FINE or code == CONTAINER:
        return value
    if code == MODULE:
        if module_ok(value):
            return value
        why = f"the module {value.__name__!r}, which methods may not hold"
    raise refusal(f"{owner} {name!r} is {why}")
