"""Methods are data: source text with a history, compiled per process under a restricted policy.

A method slot holds a persistent ``Method``. What the image stores is the
source of one Python function whose first parameter is the receiver, plus
every earlier version of it (source, author, timestamp, reason). Code objects
are never pickled: each process compiles a source the first time it runs it,
and caches the function twice, on the ``Method`` (``_v_function``, with the source
it was compiled from: ``versions`` is a persistent list of its own, so a define
committed by another connection, or aborted, reaches the list and not the
``Method``) and process-wide by the source's digest (``cached_function``). Both caches are keyed by the import policy's version
too: a function compiled while an env package was allowed does not survive
``allowlist.set_allowed`` removing it.

The process-wide cache holds only functions that ran, and only so much: it is
a least-recently-used table bounded by entries (``CACHE_ENTRIES``) and by an
estimate of the bytes it keeps alive (``CACHE_BYTES``: source, code objects,
globals), and a function larger than ``CACHE_ENTRY_BYTES`` is never kept in it.
A compile check (``compile_method``: ``Method.define``, the crucible, the
image's verify and validation) caches nothing, so a message that defines
thousands of sources and then fails leaves only garbage behind, never a
process that grew for good. The cache's lock is held for the table operations
only, never while compiling.

The policy is the first stage of the crucible and is enforced here, for
every source, whoever wrote it, in three parts:

* the compile policy (``uvm.method_policy``): one ``def``, imports only of
  capability namespaces and env packages (``uvm.allowlist``), no annotations,
  no class, no signals (``BaseException`` & co.), no exit from ``finally``,
  RestrictedPython's attribute and name rules with private locals allowed;
* what ``import`` gives (``uvm.capabilities``): frozen namespaces of granted
  values and functions, with per-call decimal context and random generator;
* the run-time guards (``uvm.guards``) every attribute, item and write goes
  through.

The functions run inside the kernel's transaction, on the calling worker
thread; they reach the image only through the primitives (``uvm.primitives``)
that the kernel makes available in their globals. ``obj.selector`` inside a
method answers a ``BoundMethod``, which can be called and nothing else: method
code never holds a ``Method``, its versions, ``define`` or ``rollback``. Calling
it refuses a quarantined method (``uvm.quarantine_mark.check``) as a message does.

Test-only switch: with ``BATOS_UNSAFE_TEST_EXPOSE_OS=1`` in the environment
when this module is imported, every method's globals also hold the real
``os``, ``socket``, ``subprocess`` and ``ctypes`` modules (and the guards let
method code walk them), and a WARNING says so. It exists for the tests that
prove the OS layer (bubblewrap, seccomp, rlimits) holds with the Python wall
deliberately bypassed; never set it where the image serves anyone.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from types import CodeType, ModuleType
from typing import Any

from persistent import Persistent
from persistent.list import PersistentList

from . import allowlist, capabilities, guards
from .errors import BadArguments, MethodSourceError
from .method_policy import SCOPE_NAMES, restricted_code
from .obj import UvmObject, register_method_type
from .quarantine_mark import check as check_quarantine

__all__ = [
    "CACHE_BYTES", "CACHE_ENTRIES", "CACHE_ENTRY_BYTES", "BoundMethod", "Method",
    "cache_info", "cached_function", "check_arity", "compile_method", "imports_of",
    "method_globals",
]

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
if _UNSAFE_MODULES:
    guards.permit_modules(frozenset(_UNSAFE_MODULES))

_GLOBALS: dict[str, Any] = {
    **guards.GUARDS,
    SCOPE_NAMES["decimal"]: capabilities.DECIMAL_SCOPE,
    SCOPE_NAMES["random"]: capabilities.RandomScope,
    **_UNSAFE_MODULES,
}
_primitives: dict[str, Any] = {}


def method_globals(primitives: dict[str, Any]) -> None:
    """Install the primitives every method sees as globals (done once by ``uvm.primitives``)."""
    global _cache_bytes
    _primitives.update(primitives)
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


# Process-wide: (source digest, import policy version) -> (compiled function, its
# estimated size), least recently used first. Functions hold no per-transaction
# state (the primitives find the current cycle themselves), so one function serves
# every thread.
#: the most functions the process-wide cache keeps
CACHE_ENTRIES = 2048
#: the most bytes (estimated: source, code objects, globals) the cache keeps alive
CACHE_BYTES = 32 << 20
#: a function estimated larger than this is compiled for each use, never cached
CACHE_ENTRY_BYTES = CACHE_BYTES // 32
_cache: OrderedDict[tuple[str, int], tuple[Callable[..., Any], int]] = OrderedDict()
_cache_bytes = 0
_cache_version = 0
_cache_lock = threading.Lock()


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


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


def _compile(source: str, digest: str) -> Callable[..., Any]:
    name, code = restricted_code(source, f"<method {digest[:8]}>")
    if name in _primitives:
        raise MethodSourceError(
            f"function name {name!r} would shadow the primitive of that name; rename it"
        )
    namespace: dict[str, Any] = dict(_GLOBALS)
    namespace.update(_primitives)
    exec(code, namespace)  # the restricted code object; see module docstring
    return namespace[name]


def compile_method(source: str) -> Callable[..., Any]:
    """The function a method source defines, compiled under the restricted policy: a
    compile check, cached nowhere (each call compiles anew).

    Raises ``MethodSourceError`` naming the line and rule for any violation.
    """
    return _compile(source, _digest(source) if isinstance(source, str) else "")


def _size(source: str, func: Callable[..., Any]) -> int:
    """An estimate of the bytes a cached function keeps alive: its source, every code
    object in it (bytecode, tables, constants, names) and its globals dict."""
    total = sys.getsizeof(source) + sys.getsizeof(func) + sys.getsizeof(func.__globals__)
    todo = [func.__code__]
    while todo:
        code = todo.pop()
        total += (sys.getsizeof(code) + len(code.co_code) + len(code.co_linetable)
                  + len(code.co_exceptiontable))
        for const in code.co_consts:
            if isinstance(const, CodeType):
                todo.append(const)
            else:
                total += sys.getsizeof(const)
        total += sum(sys.getsizeof(n) for n in code.co_names + code.co_varnames)
    return total


def _current(version: int) -> bool:
    """Under ``_cache_lock``: whether ``version`` is the import policy the cache holds,
    emptying the cache first when ``version`` is newer (versions only grow)."""
    global _cache_bytes, _cache_version
    if version > _cache_version:
        # the package set changed: what was compiled under the old one is garbage
        _cache.clear()
        _cache_bytes = 0
        _cache_version = version
    return version == _cache_version


def cached_function(source: str) -> Callable[..., Any]:
    """The function ``source`` defines, from the process-wide cache or compiled and kept
    there (least recently used ones are evicted past ``CACHE_ENTRIES`` or ``CACHE_BYTES``).

    Raises ``MethodSourceError`` as ``compile_method`` does; a source that fails leaves
    no entry.
    """
    global _cache_bytes
    digest = _digest(source) if isinstance(source, str) else ""
    key = (digest, allowlist.version())
    with _cache_lock:
        hit = _cache.get(key) if _current(key[1]) else None
        if hit is not None:
            _cache.move_to_end(key)
            return hit[0]
    func = _compile(source, digest)  # outside the lock: two threads may both compile
    size = _size(source, func)
    if size > CACHE_ENTRY_BYTES:
        return func
    with _cache_lock:
        if not _current(key[1]):  # compiled under a policy replaced meanwhile: not kept
            return func
        if key in _cache:  # another thread compiled it meanwhile: keep one
            _cache.move_to_end(key)
            return _cache[key][0]
        _cache[key] = (func, size)
        _cache_bytes += size
        while len(_cache) > CACHE_ENTRIES or _cache_bytes > CACHE_BYTES:
            _evicted, (_func, evicted_size) = _cache.popitem(last=False)
            _cache_bytes -= evicted_size
    return func


def cache_info() -> dict[str, int]:
    """The process-wide cache's state: ``entries``, ``bytes`` and the limits."""
    with _cache_lock:
        return {"entries": len(_cache), "bytes": _cache_bytes, "max_entries": CACHE_ENTRIES,
                "max_bytes": CACHE_BYTES, "max_entry_bytes": CACHE_ENTRY_BYTES}


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
        """Compile-check ``source`` (caching nothing) and make it the current version;
        returns its number.

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
        # keyed by the source too: ``define`` changes ``versions`` (a persistent object of
        # its own), so another connection's commit or an abort never ghosts this object
        # and its ``_v_function`` would outlive the source it was compiled from
        policy, source = allowlist.version(), self.source
        cached = getattr(self, "_v_function", None)
        if cached is not None and cached[0] == policy and cached[1] == source:
            return cached[2]
        func = cached_function(source)
        self._v_function = (policy, source, func)
        return func

    def bind(self, receiver: UvmObject) -> BoundMethod:
        return BoundMethod(self, receiver)

    def __repr__(self) -> str:
        return f"<Method v{len(self.versions)}>"


class BoundMethod:
    """A method with its receiver: what ``obj.selector`` answers inside a method.

    It can be called and nothing else: both of its fields are private, so the
    guards never let method code reach the ``Method`` (its versions, ``define``,
    ``rollback``) or the receiver through it.
    """

    __slots__ = ("_method", "_receiver")

    def __init__(self, method: Method, receiver: UvmObject) -> None:
        self._method = method
        self._receiver = receiver

    def __call__(self, *args: Any) -> Any:
        # a quarantined method runs nothing, called as a message (``uvm.dispatch``) or
        # from another method's code (here)
        check_quarantine(self._method)
        return self._method.function()(self._receiver, *args)

    def __reduce__(self) -> Any:
        raise TypeError("a bound method cannot be pickled or copied")

    def __repr__(self) -> str:
        return "<BoundMethod>"


guards.register_method_types(Method, BoundMethod)
register_method_type(Method)
