"""What a method may import: a standard-library allowlist plus the env's packages.

Methods are compiled under one process-wide import allowlist (``uvm.methods``
asks ``check_import`` at compile time and installs ``guarded_import`` as the
restricted ``__import__`` at run time). It is the union of

* ``STDLIB_ALLOWED``: standard-library modules that are pure computation on
  values. The rule: no files, processes, network or interpreter state, nothing
  that blocks a worker, and no way to reach attributes or evaluate code outside
  RestrictedPython's guards. Hence, deliberately absent: ``time``
  (``time.sleep`` blocks a worker thread while its transaction stays open;
  ``datetime`` reads the clock), ``string`` (``Formatter.get_field`` walks
  attributes unguarded), ``operator`` (``attrgetter``/``methodcaller`` do the
  same), ``typing`` (``get_type_hints`` evaluates strings as unrestricted
  code), ``enum`` (its members cannot be stored in slots, and ``global_enum``
  writes into other modules' namespaces), ``dataclasses`` (generates code
  with ``exec``; methods define no classes anyway), ``copy`` (copying an
  image object duplicates its uuid outside the registry: clone instead), and
  of course ``os``,
  ``sys``, ``io``, ``subprocess``, ``importlib``, ``pickle``, ``threading``,
  ``inspect``, ... Standard-library names are allowed by exact name:
  ``collections.abc`` is listed, ``json.decoder`` is not.
* the top-level modules of the packages in the incarnation's env spec, set by
  the incarnation at start (``set_allowed``): after ``evolve --add pkg`` a
  method may ``import pkg`` and any ``pkg.sub``. A package added by evolve is
  trusted as a whole: the allowlist limits what a method can *name*, not what
  the package does. Modules of the kernel's own machinery (``NEVER_ALLOWED``)
  and standard-library names are never taken from the env, whatever it holds.

Two holes of allowed modules are closed at the attribute level: a module's
attribute that is itself a module is only reachable if that module is allowed
(``uuid.os``, ``datetime.sys`` and ``enum.bltns`` exist), and
``DENIED_ATTRIBUTES`` names the few functions of allowed modules that escape
the guards, start processes or write to the process's stdout.

Thread boundary: the allowlist is process-wide state, read by every worker
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

from .errors import MethodSourceError

__all__ = [
    "DENIED_ATTRIBUTES",
    "NEVER_ALLOWED",
    "STDLIB_ALLOWED",
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

STDLIB_ALLOWED: frozenset[str] = frozenset({
    "math", "cmath", "decimal", "fractions", "numbers", "statistics", "random",
    "re", "json", "datetime", "itertools", "functools", "collections", "collections.abc",
    "heapq", "bisect", "textwrap", "unicodedata", "difflib", "hashlib", "hmac",
    "base64", "binascii", "uuid", "pprint",
})

#: top-level names no env can make importable: the kernel's own machinery (a method
#: that could commit, pickle or talk to the supervisor would bypass the kernel).
NEVER_ALLOWED: frozenset[str] = frozenset({
    "uvm", "supervisor", "bridge", "envs", "cli", "weaver", "crucible", "ui_seed",
    "ZODB", "ZEO", "persistent", "transaction", "BTrees", "zodbpickle", "zc", "zope",
    "RestrictedPython", "zmq", "ormsgpack", "psutil", "uv", "setuptools", "pip",
    "pkg_resources", "_distutils_hack",
})

#: functions of allowed modules that are not: they get/set attributes by name
#: outside the guards, may run a subprocess (uuid1/getnode fall back to `ip`), or
#: write to the process's stdout (pformat is there for methods).
DENIED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "functools": frozenset({"update_wrapper", "wraps"}),
    "uuid": frozenset({"getnode", "uuid1"}),
    "pprint": frozenset({"pprint", "pp", "PrettyPrinter"}),
}

_lock = threading.Lock()
_packages: frozenset[str] = frozenset()
_allowed: frozenset[str] = STDLIB_ALLOWED
_version = 0

_RULE = (
    "imports are not allowed in methods except of the standard-library allowlist "
    "(uvm.allowlist.STDLIB_ALLOWED: pure computation, no files, processes, network, "
    "blocking or interpreter state) and the top-level modules of the packages in the "
    "incarnation's env spec"
)


def set_allowed(modules: Iterable[str]) -> frozenset[str]:
    """Make ``modules`` (the env packages' top-level modules) importable by methods.

    Replaces the previous package set; standard-library names and
    ``NEVER_ALLOWED`` are dropped. Answers the package modules now allowed.
    Methods compiled under the previous allowlist are recompiled on next use.
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
        _allowed = STDLIB_ALLOWED | kept
        _version += 1
    return kept


def allowed_modules() -> frozenset[str]:
    """The standard-library allowlist plus the env's package modules."""
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
    return top in _packages or name in STDLIB_ALLOWED


def check_import(name: str) -> None:
    """Raise ``MethodSourceError`` naming ``name`` and the rule unless it may be imported."""
    if not isinstance(name, str) or not name:
        raise MethodSourceError(f"{name!r} is not a module name")
    if is_allowed(name):
        return
    top = name.partition(".")[0]
    if top in NEVER_ALLOWED:
        how = f"{top!r} is the kernel's own machinery and no env can allow it"
    elif top in sys.stdlib_module_names:
        how = (f"{name!r} is standard library but outside that allowlist; it cannot be "
               "allowed by evolve")
    else:
        how = (f"to use it, add the package that provides {top!r} to the env: "
               "batos evolve --add <package>")
    raise MethodSourceError(f"module {name!r} cannot be imported: {_RULE}; {how}")


def check_from(module: str, name: str) -> None:
    """``from module import name``: the module's rule plus the denied attributes."""
    check_import(module)
    if name == "*":
        raise MethodSourceError(f"'from {module} import *' is not allowed: name what you import")
    if name.startswith("_"):
        raise MethodSourceError(f"'from {module} import {name}': names starting with '_' are private")
    if name in DENIED_ATTRIBUTES.get(module, ()):
        raise MethodSourceError(
            f"{module}.{name} is not allowed in methods (uvm.allowlist.DENIED_ATTRIBUTES)"
        )


def check_module_attribute(module: ModuleType, name: str, value: Any) -> Any:
    """``value`` (= ``module.name``) if a method may have it, else ``AttributeError``."""
    if name in DENIED_ATTRIBUTES.get(module.__name__, ()):
        raise AttributeError(
            f"{module.__name__}.{name} is not allowed in methods (uvm.allowlist.DENIED_ATTRIBUTES)"
        )
    if isinstance(value, ModuleType) and not is_allowed(value.__name__):
        raise AttributeError(
            f"{module.__name__}.{name} is the module {value.__name__!r}, which methods may not use"
        )
    return value


def guarded_import(
    name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
) -> ModuleType:
    """The restricted ``__import__``: the compile-time rule, enforced again at run time."""
    if level:
        raise MethodSourceError("relative imports are not allowed in methods")
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
    check_import(name)
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
