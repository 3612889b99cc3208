"""The layers in docs/design.md, checked: who may import whom.

The supervisor must never need a restart, so it (and the bridge and envs it
uses) imports nothing of the UVM, the mind, the crucible or the UI. The UVM
imports nothing of the supervisor or the CLI. The CLI loads a layer only when
one of its commands runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import uvm

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "supervisor": {"uvm", "weaver", "crucible", "ui_seed", "cli"},
    "bridge": {"uvm", "weaver", "crucible", "ui_seed", "supervisor", "cli"},
    "envs": {"uvm", "weaver", "crucible", "ui_seed", "supervisor", "cli"},
    "uvm": {"supervisor", "cli", "ui_seed"},
    "weaver": {"uvm", "supervisor", "crucible", "ui_seed", "cli", "bridge"},
    "crucible": {"supervisor", "weaver", "ui_seed", "cli"},
}

# The crucible imports the UVM; so the UVM imports it (and the weaver) only in its
# composition roots, which assemble a mind from the parts.
COMPOSITION_ROOTS = {"mindkit.py", "incarnation.py", "inquiry_root.py"}


def test_uvm_reaches_the_mind_only_through_its_composition_roots():
    for path in (ROOT / "uvm").glob("*.py"):
        if path.name in COMPOSITION_ROOTS:
            continue
        bad = imports(path) & {"crucible", "weaver"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layers(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_cli_loads_layers_lazily():
    for path in (ROOT / "cli").glob("*.py"):
        eager = imports(path, top_level_only=True) & {"uvm", "supervisor", "weaver", "crucible"}
        assert not eager, f"{path.relative_to(ROOT)} imports {sorted(eager)} at module level"


def test_uvm_public_api_is_pinned():
    assert sorted(uvm.__all__) == sorted([
        "GENESIS", "PARENT_SLOT", "AsyncKernel", "BadArguments", "DoesNotUnderstand",
        "ImageError", "ImageLocked", "InvalidAct", "InvalidRequest", "InvalidValue", "Kernel",
        "Method", "MethodFailed", "MethodSourceError", "NoMind", "RetriesExhausted",
        "StorageUnavailable", "SynthesisFailed", "TransientError",
        "UVMError", "UnknownTarget", "UnserializableResult", "UvmObject", "bootstrap",
        "find_slot", "open_db", "selector_for", "slot_name", "verify",
    ])
    for name in uvm.__all__:
        assert hasattr(uvm, name)


def test_every_uvm_error_has_one_root():
    errors = [getattr(uvm, n) for n in uvm.__all__ if isinstance(getattr(uvm, n), type)
              and issubclass(getattr(uvm, n), Exception)]
    for err in errors:
        assert err is uvm.TransientError or issubclass(err, uvm.UVMError), err
    assert issubclass(uvm.DoesNotUnderstand, AttributeError)
    assert issubclass(uvm.RetriesExhausted, uvm.TransientError)
