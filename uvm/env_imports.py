"""The env's packages as validation sees them: each imports, and methods may import it.

``check_imports`` imports every top-level module of the env spec's
distributions and notes, as an actionable failure line, a package that is not
installed, a module that does not import with this env's libraries, and one
this process does not let methods import (the incarnation must have called
``uvm.allowlist.set_allowed``). ``unavailable`` names the package modules a
method source imports that this env does not give methods (a method broken
before a handover by an earlier forced removal).

Boundary: imports modules (the env's own); writes nothing; no image.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from typing import Any

from . import allowlist
from .methods import imports_of

__all__ = ["check_imports", "missing_from_allowlist", "unavailable"]


def check_imports(packages: Iterable[str], failures: Any) -> dict[str, str]:
    """{module: "ok" | error} for the distributions ``packages`` (a distribution not
    installed: {name: "not installed"}); each problem added to ``failures``."""
    imports: dict[str, str] = {}
    for dist in sorted(set(packages)):
        modules = allowlist.distribution_modules(dist)
        if modules is None:
            imports[dist] = "not installed"
            failures.add(f"package {dist!r} is not installed in this env: the env build "
                         "did not install it; check the requirement and rebuild")
            continue
        for module in sorted(modules):
            try:
                importlib.import_module(module)
                imports[module] = "ok"
            except (Exception, SystemExit) as exc:  # any import failure is a finding
                imports[module] = f"{type(exc).__name__}: {exc}"
                failures.add(f"module {module!r} of package {dist!r} does not import in "
                             f"this env: {type(exc).__name__}: {exc}")
                continue
            if missing_from_allowlist(module):
                failures.add(f"module {module!r} of package {dist!r} is not in the methods' "
                             "import allowlist: the incarnation must call "
                             "uvm.allowlist.set_allowed with its env's packages")
    return imports


def missing_from_allowlist(module: str) -> bool:
    """A module an env could let methods import, which this process does not (stdlib,
    kernel machinery and private names are never taken from an env)."""
    return (module.isidentifier() and not module.startswith("_")
            and module not in sys.stdlib_module_names and module not in allowlist.NEVER_ALLOWED
            and not allowlist.is_allowed(module))


def unavailable(source: str) -> list[str]:
    """Package modules ``source`` imports that this env does not give methods."""
    return sorted(m for m in imports_of(source) if missing_from_allowlist(m))
