"""What ``import`` gives a method: capability namespaces, plus the env's packages whole.

Methods are compiled under one process-wide import policy (``uvm.method_policy``
asks ``check_import``/``check_from`` at compile time; ``guarded_import`` is the
restricted ``__import__`` at run time). A name a method imports is either

* a capability namespace (``uvm.capabilities``): ``import json``, ``import
  math``, ``from datetime import date``, ``import collections.abc`` answer a
  frozen namespace of granted values and functions, never the module; the
  names are ``CAPABILITIES``; ``from x import y`` must name a grant of ``x``;
* a top-level module of a package in the incarnation's env spec, set by the
  incarnation at start (``set_allowed``): after ``evolve --add pkg`` a method
  may ``import pkg`` and any ``pkg.sub``, and gets the real modules: the
  operator trusted the package as a whole. What it reaches through them is
  still guarded (``uvm.guard_values``: a standard-library module found as an
  attribute of a package is out of reach). Modules of the kernel's own
  machinery (``NEVER_ALLOWED``) and standard-library names are never taken
  from the env, whatever it holds.

Everything else (``os``, ``sys``, ``typing``, ``string.Formatter``, ``copy``
(copying an image object duplicates its uuid: clone instead), ...) is
refused with the rule named.

Thread boundary: the package set is process-wide state, read by every worker
thread; ``set_allowed`` swaps it atomically (one frozenset, one version
number) and is meant for incarnation start-up. This module must not import
anything of the image: it sits below ``uvm.methods``.
"""

from __future__ import annotations

import builtins
import importlib
import re
import sys
import threading
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

from . import capabilities
from .errors import MethodSourceError

__all__ = [
    "CAPABILITIES",
    "NEVER_ALLOWED",
    "allowed_modules",
    "check_from",
    "check_import",
    "check_module_attribute",
    "distribution_modules",
    "guarded_import",
    "is_allowed",
    "package_modules",
    "set_allowed",
    "top_level_modules",
    "version",
]

#: the names ``import`` resolves to a capability namespace
CAPABILITIES: frozenset[str] = capabilities.NAMES

#: top-level names no env can make importable: the kernel's own machinery (a method
#: that could commit, pickle or talk to the supervisor would bypass the kernel).
NEVER_ALLOWED: frozenset[str] = frozenset({
    "uvm", "supervisor", "bridge", "envs", "batos", "lexicon", "weaver", "crucible", "ui_seed",
    "ZODB", "ZEO", "persistent", "transaction", "BTrees", "zodbpickle", "zc", "zope",
    "RestrictedPython", "zmq", "ormsgpack", "psutil", "uv", "setuptools", "pip",
    "pkg_resources", "_distutils_hack",
})

_lock = threading.Lock()
_packages: frozenset[str] = frozenset()
_allowed: frozenset[str] = CAPABILITIES
_version = 0

_RULE = (
    "imports are not allowed in methods except of the capability namespaces "
    "(uvm.capabilities: math, json, re, datetime, decimal, collections, ...; each grants "
    "named values and functions, never the module) and the top-level modules of the "
    "packages in the incarnation's env spec"
)


def set_allowed(modules: Iterable[str]) -> frozenset[str]:
    """Make ``modules`` (the env packages' top-level modules) importable by methods.

    Replaces the previous package set; standard-library names and
    ``NEVER_ALLOWED`` are dropped. Answers the package modules now allowed.
    Methods compiled under the previous set are recompiled on next use.
    """
    global _packages, _allowed, _version
    if isinstance(modules, str):
        raise TypeError("set_allowed takes an iterable of module names, not one string")
    kept = frozenset(
        m for m in (str(m).strip() for m in modules)
        if m and m.isidentifier() and m not in NEVER_ALLOWED and m not in sys.stdlib_module_names
    )
    with _lock:
        _packages = kept
        _allowed = CAPABILITIES | kept
        _version += 1
    return kept


def allowed_modules() -> frozenset[str]:
    """The capability namespaces' names plus the env's package modules."""
    return _allowed


def package_modules() -> frozenset[str]:
    return _packages


def version() -> int:
    """Changes whenever ``set_allowed`` runs; compiled methods are cached per version."""
    return _version


def is_allowed(name: str) -> bool:
    """Whether a method may import the (possibly dotted) module ``name``."""
    top = name.partition(".")[0]
    if top in NEVER_ALLOWED:
        return False
    return name in CAPABILITIES or top in _packages


def check_import(name: str) -> None:
    """Raise ``MethodSourceError`` naming ``name`` and the rule unless it may be imported."""
    if not isinstance(name, str) or not name:
        raise MethodSourceError(f"{name!r} is not a module name")
    if is_allowed(name):
        return
    top = name.partition(".")[0]
    if top in NEVER_ALLOWED:
        how = f"{top!r} is the kernel's own machinery and no env can allow it"
    elif top in CAPABILITIES:
        how = (f"{top!r} is a capability namespace, but {name!r} is not: import {top!r} and "
               "use what it grants")
    elif top in sys.stdlib_module_names:
        how = (f"{name!r} is standard library but outside the capability namespaces; it "
               "cannot be allowed by evolve")
    else:
        how = (f"to use it, add the package that provides {top!r} to the env: "
               "batos evolve --add <package>")
    raise MethodSourceError(f"module {name!r} cannot be imported: {_RULE}; {how}")


def check_from(module: str, name: str) -> None:
    """``from module import name``: the module's rule, and a granted name for a namespace."""
    check_import(module)
    if name == "*":
        raise MethodSourceError(f"'from {module} import *' is not allowed: name what you import")
    if not isinstance(name, str) or name.startswith("_"):
        raise MethodSourceError(f"'from {module} import {name}': names starting with '_' are private")
    if module in CAPABILITIES and name not in capabilities.namespace(module).names():
        granted = ", ".join(sorted(capabilities.namespace(module).names()))
        raise MethodSourceError(f"'from {module} import {name}': {module!r} grants no {name!r} to "
                                f"methods (it grants: {granted})")


def check_module_attribute(module: ModuleType, name: str, value: Any) -> Any:
    """``value`` (= ``module.name`` of an env package) if a method may have it."""
    if isinstance(value, ModuleType) and not (
            value.__name__.partition(".")[0] in _packages and is_allowed(value.__name__)):
        raise AttributeError(
            f"{module.__name__}.{name} is the module {value.__name__!r}, which methods may not use"
        )
    return value


def guarded_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    """The restricted ``__import__``: the compile-time rule, enforced again at run time.

    A capability answers its namespace (the top-level one for ``import a.b``, as
    Python binds ``a``); an env package answers the real module.
    """
    if type(fromlist) is list and not fromlist and not level \
            and name.partition(".")[0] in sys.stdlib_module_names:
        # The interpreter importing on behalf of C code a method called (time.strptime
        # needs _strptime): PyImport_Import passes an empty *list*, which an import
        # statement never does (None or a tuple). The module goes to that C code only.
        return importlib.import_module(name)
    if level:
        raise MethodSourceError("relative imports are not allowed in methods")
    check_import(name)
    if name in CAPABILITIES:
        if fromlist:
            for item in fromlist:
                check_from(name, item)
            return capabilities.namespace(name)
        return capabilities.namespace(name.partition(".")[0])
    if fromlist:
        for item in fromlist:
            check_from(name, item)
        module = importlib.import_module(name)
        for item in fromlist:
            if not hasattr(module, item) and is_allowed(f"{name}.{item}"):
                importlib.import_module(f"{name}.{item}")
            if hasattr(module, item):
                try:
                    check_module_attribute(module, item, getattr(module, item))
                except AttributeError as exc:
                    raise MethodSourceError(f"'from {name} import {item}': {exc}") from None
        return module
    return builtins.__import__(name, None, None, (), 0)


# --- distributions -> importable top-level modules --------------------------------------

_SKIP_DIRS = re.compile(r"(\.dist-info|\.egg-info|\.data|\.libs)$|^__pycache__$|^\.\.$|^\.$")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _from_record(files: Iterable[Any]) -> set[str]:
    found: set[str] = set()
    for file in files:
        parts = str(file).replace("\\", "/").split("/")
        if len(parts) > 1:
            head = parts[0]
            if not _SKIP_DIRS.search(head) and head.isidentifier():
                found.add(head)
            continue
        stem = parts[0]
        if stem.endswith((".py", ".so", ".pyd")) and not stem.startswith("__editable__"):
            module = stem.split(".")[0]
            if module.isidentifier() and module != "__init__":
                found.add(module)
    return found


def distribution_modules(name: str) -> set[str] | None:
    """The top-level modules distribution ``name`` installs, or None if it is not installed.

    ``top_level.txt`` when the build backend wrote one (setuptools), else derived
    from the ``RECORD`` file paths (other backends), else the normalized name
    (e.g. an editable install whose RECORD lists only a ``.pth`` file).
    """
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    text = dist.read_text("top_level.txt")
    if text:
        modules = {line.strip() for line in text.splitlines() if line.strip()}
        modules = {m.replace("/", ".").partition(".")[0] for m in modules}
        if modules:
            return modules
    modules = _from_record(dist.files or ())
    return modules or {_normalized(name)}


def top_level_modules(distribution_names: Iterable[str]) -> set[str]:
    """The union of ``distribution_modules`` over the names (a missing one: its normalized name)."""
    if isinstance(distribution_names, str):
        raise TypeError("top_level_modules takes an iterable of distribution names")
    found: set[str] = set()
    for name in distribution_names:
        modules = distribution_modules(name)
        found |= modules if modules is not None else {_normalized(name)}
    return found
