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
    "supervisor": {"uvm", "weaver", "crucible", "ui_seed", "batos"},
    "bridge": {"uvm", "weaver", "crucible", "ui_seed", "supervisor", "batos"},
    "envs": {"uvm", "weaver", "crucible", "ui_seed", "supervisor", "batos"},
    "uvm": {"supervisor", "batos", "ui_seed"},
    "weaver": {"uvm", "supervisor", "crucible", "ui_seed", "batos", "bridge"},
    "crucible": {"supervisor", "weaver", "ui_seed", "batos"},
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
    for path in (ROOT / "batos").glob("*.py"):
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


def _uvm_layers() -> list[set[str]]:
    """The layer list of uvm/__init__.py's docstring, bottom up: one set of module names
    per layer (a layer's names may run over several lines, each ending in a comma)."""
    doc = uvm.__doc__ or ""
    body = doc[doc.index("Layers, bottom up"):doc.index("The public API")]
    layers: list[set[str]] = []
    open_layer = False
    for line in body.splitlines()[1:]:
        if not line.startswith("    ") or line.startswith("     "):
            continue  # blank, or a description's continuation
        names = line.strip().split("  ")[0].strip()
        words = {w.strip() for w in names.split(",") if w.strip()}
        if open_layer:
            layers[-1] |= words
        else:
            layers.append(words)
        open_layer = names.endswith(",")
    return layers


def test_the_uvm_layer_list_names_every_module_in_its_place():
    layers = _uvm_layers()
    listed = [name for layer in layers for name in layer]
    modules = {p.stem for p in (ROOT / "uvm").glob("*.py") if p.stem != "__init__"}
    assert sorted(listed) == sorted(set(listed)), "a module listed twice"
    assert set(listed) == modules, (f"not listed: {sorted(modules - set(listed))}; "
                                    f"listed but absent: {sorted(set(listed) - modules)}")
    level = {name: i for i, layer in enumerate(layers) for name in layer}
    for name, at in level.items():
        tree = ast.parse((ROOT / "uvm" / f"{name}.py").read_text())
        for node in tree.body:  # module-level imports (lazy ones inside functions may go up)
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                for target in targets:
                    target = target.split(".")[0]
                    assert level[target] <= at, (
                        f"uvm.{name} imports uvm.{target}, which the layer list puts above it")


def test_the_uvm_errors_tree_names_every_error_where_it_lives():
    from uvm import errors, pickles, protection

    doc = errors.__doc__ or ""
    tree = doc[doc.index("    UVMError"):doc.index("``TransientError`` is a mixin")]
    defined = {n for n, v in vars(errors).items() if isinstance(v, type)
               and issubclass(v, errors.UVMError) and v.__module__ == "uvm.errors"}
    drawn = {line.split("+-- ")[1].split()[0] for line in tree.splitlines() if "+-- " in line}
    assert drawn | {"UVMError"} == defined
    for name in ("ForbiddenClass", "Protected", "BudgetExceeded", "Quarantined",
                 "ReplyTooLarge", "ForeignChange"):
        assert name in drawn
        assert name in errors.__all__
    # defined in errors.py, still importable from the modules that raise them
    assert pickles.ForbiddenClass is errors.ForbiddenClass
    assert protection.Protected is errors.Protected
