"""Methods are data: source text with a history, compiled per process under RestrictedPython.

A method slot holds a persistent ``Method``. What the image stores is the
source of one Python function whose first parameter is the receiver, plus
every earlier version of it (source, author, timestamp, reason). Code objects
are never pickled: each process compiles a source the first time it runs it,
and caches the function twice, on the ``Method`` (``_v_function``, dropped
whenever ZODB ghosts the object) and process-wide by the source's digest.
Both caches are keyed by the allowlist's version too: a function compiled
under a wider allowlist does not survive ``allowlist.set_allowed`` narrowing it.

The compile policy is the first stage of the crucible and is enforced here,
for every source, whoever wrote it:

* the source is exactly one top-level ``def`` (a docstring before it is fine),
  with at least one positional parameter (the receiver), no decorators;
* imports only of allowed modules (``uvm.allowlist``: a standard-library
  allowlist plus the top-level modules of the env spec's packages), checked
  here at compile time and again at run time by the restricted ``__import__``;
  no relative imports, no ``from x import *``;
* no ``class``, no names or attributes starting with ``_``,
  no ``exec``/``eval``/``compile``/``open``/``globals`` (they are simply absent
  from the builtins), augmented assignment only on names (RestrictedPython's
  rule: write ``self.n = self.n + 1``);
* at run time attribute access, item access, iteration and writes go through
  guards: slots of image objects resolve by delegation, other objects only
  show RestrictedPython's safe attributes (a module's attribute that is a
  module only if that module is allowed), and only image objects and plain
  containers can be written to.

The functions run inside the kernel's transaction, on the calling worker
thread; they reach the image only through the primitives (``uvm.primitives``)
that the kernel makes available in their globals.

Test-only switch: with ``BATOS_UNSAFE_TEST_EXPOSE_OS=1`` in the environment
when this module is imported, every method's globals also hold the real
``os``, ``socket``, ``subprocess`` and ``ctypes`` modules, and a WARNING says
so. It exists for the tests that prove the OS layer (bubblewrap, seccomp,
rlimits) holds with the Python wall deliberately bypassed; never set it
where the image serves anyone.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import logging
import operator
import os
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from persistent import Persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from RestrictedPython import compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    raise_,
    safer_getattr,
)

from . import allowlist
from .errors import BadArguments, MethodSourceError
from .obj import UvmObject, find_slot
from .selectors import slot_name

__all__ = [
    "BoundMethod", "Method", "check_arity", "compile_method", "imports_of", "method_globals",
]

_MAX_SOURCE = 64_000
log = logging.getLogger("batos.methods")

#: the environment variable of the test-only bypass (see the module docstring)
UNSAFE_TEST_EXPOSE_OS = "BATOS_UNSAFE_TEST_EXPOSE_OS"


def _unsafe_test_modules(environ: Any) -> dict[str, ModuleType]:
    """The modules the test-only switch adds to method globals: none unless it is set to 1."""
    if environ.get(UNSAFE_TEST_EXPOSE_OS) != "1":
        return {}
    import ctypes
    import socket
    import subprocess

    log.warning(
        "%s=1: UNSAFE TEST BUILD. Method code gets the real os, socket, subprocess and "
        "ctypes modules; the Python wall is bypassed and only the OS layer confines it. "
        "Never serve an image with this set.", UNSAFE_TEST_EXPOSE_OS,
    )
    return {"os": os, "socket": socket, "subprocess": subprocess, "ctypes": ctypes}


_UNSAFE_MODULES = _unsafe_test_modules(os.environ)

_BUILTINS: dict[str, Any] = {
    name: value
    for name, value in safe_builtins.items()
    # setattr/delattr/id are not needed by methods; class bodies are not allowed.
    if name not in {"__build_class__", "setattr", "delattr", "id", "_getattr_"}
}
_BUILTINS.update(
    {
        name: getattr(builtins, name)
        for name in (
            "all", "any", "dict", "enumerate", "filter", "frozenset", "list", "map",
            "max", "min", "reversed", "set", "sorted", "sum", "tuple", "zip",
        )
    }
)
_BUILTINS["__import__"] = allowlist.guarded_import

_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}
_WRITABLE = (UvmObject, dict, list, set, PersistentMapping, PersistentList)


def _guarded_getattr(obj: Any, name: str, default: Any = raise_) -> Any:
    # ``raise_``: a missing attribute raises AttributeError (as in Python), unless the
    # method itself passed a default (``getattr(x, "a", None)``).
    if isinstance(obj, UvmObject):
        _holder, value = find_slot(obj, slot_name(name))
        return value.bind(obj) if isinstance(value, Method) else value
    if isinstance(obj, ModuleType):
        if _UNSAFE_MODULES and obj.__name__.partition(".")[0] in _UNSAFE_MODULES:
            return safer_getattr(obj, name, default)  # the test-only switch: no wall here
        return allowlist.check_module_attribute(obj, name, safer_getattr(obj, name, default))
    return safer_getattr(obj, name, default)


def _guarded_getitem(obj: Any, key: Any) -> Any:
    return obj[key]


def _guarded_write(obj: Any) -> Any:
    if isinstance(obj, _WRITABLE):
        return obj
    raise TypeError(f"a method cannot modify a {type(obj).__name__}")


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


_GUARDS: dict[str, Any] = {
    "__builtins__": _BUILTINS,
    "__name__": "batos.method",
    "__metaclass__": type,
    "_getattr_": _guarded_getattr,
    "_getitem_": _guarded_getitem,
    "_getiter_": iter,
    "_write_": _guarded_write,
    "_inplacevar_": _inplacevar,
    "_apply_": _apply,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    **_UNSAFE_MODULES,
}
_primitives: dict[str, Any] = {}


def method_globals(primitives: dict[str, Any]) -> None:
    """Install the primitives every method sees as globals (done once by ``uvm.primitives``)."""
    _primitives.update(primitives)
    with _cache_lock:
        _cache.clear()


# Process-wide: (source digest, allowlist version) -> compiled function.
# Functions hold no per-transaction state (the primitives find the current
# cycle themselves), so one function serves every thread.
_cache: dict[tuple[str, int], Callable[..., Any]] = {}
_cache_version = 0
_cache_lock = threading.Lock()


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _check_shape(source: str) -> ast.FunctionDef:
    if not isinstance(source, str) or not source.strip():
        raise MethodSourceError("method source must be a non-empty string")
    if len(source) > _MAX_SOURCE:
        raise MethodSourceError(f"method source is {len(source)} characters; the limit is {_MAX_SOURCE}")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MethodSourceError(f"method source does not parse: line {exc.lineno}: {exc.msg}") from exc
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef):
        raise MethodSourceError(
            "method source must be exactly one function definition "
            "('def name(self, ...): ...') and nothing else"
        )
    func = body[0]
    if func.name in _primitives:
        raise MethodSourceError(
            f"function name {func.name!r} would shadow the primitive of that name; rename it"
        )
    if func.decorator_list:
        raise MethodSourceError(f"method {func.name!r} may not have decorators")
    if not func.args.posonlyargs + func.args.args:
        raise MethodSourceError(
            f"method {func.name!r} needs a first positional parameter for the receiver (self)"
        )
    for node in ast.walk(func):
        if isinstance(node, ast.Import | ast.ImportFrom):
            _check_import_node(node)
        if isinstance(node, ast.ClassDef):
            raise MethodSourceError(f"line {node.lineno}: class definitions are not allowed in methods")
        if isinstance(node, ast.AsyncFunctionDef | ast.Await):
            raise MethodSourceError(f"line {node.lineno}: methods are synchronous; no async/await")
    return func


def _check_import_node(node: ast.Import | ast.ImportFrom) -> None:
    try:
        if isinstance(node, ast.Import):
            for alias in node.names:
                allowlist.check_import(alias.name)
        elif node.level:
            raise MethodSourceError("relative imports are not allowed in methods")
        elif not node.module:
            raise MethodSourceError("an import names no module")
        else:
            for alias in node.names:
                allowlist.check_from(node.module, alias.name)
    except MethodSourceError as exc:
        raise MethodSourceError(f"line {node.lineno}: {exc}") from None


def imports_of(source: str) -> set[str]:
    """The top-level modules ``source`` imports (absolute imports only); empty if it does
    not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def compile_method(source: str) -> Callable[..., Any]:
    """The function a method source defines, compiled under the restricted policy.

    Raises ``MethodSourceError`` naming the line and rule for any violation.
    """
    global _cache_version
    digest = _digest(source)
    key = (digest, allowlist.version())
    func = _cache.get(key)
    if func is not None:
        return func
    node = _check_shape(source)
    result = compile_restricted_exec(source, filename=f"<method {node.name} {digest[:8]}>")
    if result.errors:
        raise MethodSourceError("method source breaks the restricted policy: " + "; ".join(result.errors))
    namespace: dict[str, Any] = dict(_GUARDS)
    namespace.update(_primitives)
    exec(result.code, namespace)  # the restricted code object; see module docstring
    func = namespace[node.name]
    with _cache_lock:
        if key[1] != _cache_version:
            # the allowlist changed: what was compiled under the old one is garbage
            _cache.clear()
            _cache_version = key[1]
        _cache[key] = func
    return func


def check_arity(func: Callable[..., Any], nargs: int, selector: str) -> None:
    """Raise ``BadArguments`` unless ``func(receiver, *nargs args)`` fits its parameters."""
    code = func.__code__
    most = code.co_argcount - 1
    least = most - len(func.__defaults__ or ())
    if nargs < least or (nargs > most and not code.co_flags & 0x04):
        wanted = str(least) if least == most else f"{least} to {most}"
        raise BadArguments(f"{selector!r} takes {wanted} argument(s), got {nargs}")


class Method(Persistent):
    """A method slot's value: the current source and every version before it.

    ``versions`` is append-only; each entry is a dict with ``version`` (from 1),
    ``source``, ``author``, ``timestamp`` (Unix seconds), ``reason``,
    ``digest`` and, when given, ``meta``. Rolling back appends a copy of an older version, so the history
    itself is never rewritten.
    """

    def __init__(
        self, source: str, *, author: str, reason: str = "", meta: dict[str, Any] | None = None
    ) -> None:
        self.versions = PersistentList()
        self.define(source, author=author, reason=reason, meta=meta)

    @property
    def source(self) -> str:
        return self.versions[-1]["source"]

    @property
    def version(self) -> int:
        return len(self.versions)

    def define(
        self, source: str, *, author: str, reason: str = "", meta: dict[str, Any] | None = None
    ) -> int:
        """Compile-check ``source`` and make it the current version; returns its number.

        ``meta`` is kept with the version as plain data: for a method the mind
        wrote, the prompt digest, the model, the crucible's verdict and the
        synthesis record's id.
        """
        compile_method(source)
        entry = {
            "version": len(self.versions) + 1,
            "source": source,
            "author": str(author),
            "timestamp": time.time(),
            "reason": str(reason),
            "digest": _digest(source),
        }
        if meta:
            entry["meta"] = dict(meta)
        self.versions.append(entry)
        self._v_function = None
        return len(self.versions)

    def rollback(self, version: int, *, author: str, reason: str = "") -> int:
        """Make an earlier version current again, as a new version."""
        if not isinstance(version, int) or not 1 <= version <= len(self.versions):
            raise BadArguments(
                f"version must be between 1 and {len(self.versions)}, got {version!r}"
            )
        old = self.versions[version - 1]
        return self.define(
            old["source"], author=author, reason=reason or f"rollback to version {version}"
        )

    def history(self) -> list[dict[str, Any]]:
        return [dict(v) for v in self.versions]

    def function(self) -> Callable[..., Any]:
        policy = allowlist.version()
        cached = getattr(self, "_v_function", None)
        if cached is not None and cached[0] == policy:
            return cached[1]
        func = compile_method(self.source)
        self._v_function = (policy, func)
        return func

    def bind(self, receiver: UvmObject) -> BoundMethod:
        return BoundMethod(self, receiver)

    def __repr__(self) -> str:
        return f"<Method v{len(self.versions)}>"


class BoundMethod:
    """A method with its receiver: what ``obj.selector`` answers inside a method."""

    __slots__ = ("method", "receiver")

    def __init__(self, method: Method, receiver: UvmObject) -> None:
        self.method = method
        self.receiver = receiver

    def __call__(self, *args: Any) -> Any:
        return self.method.function()(self.receiver, *args)
