"""The layers in docs/design.md, checked over the import graph of the tree: no exceptions.

Floors, bottom up; a package imports only the packages on lower floors that ``ALLOWED``
names, never one on its own floor or above:

    0  lexicon               the shared words (errors, frame tags, acts)
    1  bridge, envs          wire protocol; environments and the OS walls
    2  uvm, supervisor       the image and its kernel; the immortal supervisor
    3  weaver, crucible      the mind's clients and training; the review pipeline
    4  ui_seed               the seed window
    5  batos                 the command line and the composition root (``batos.root``)

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``.
Imports are resolved as Python does: relative ones against the importing module's
package; ``from pkg import name`` is an import of ``pkg.name`` when that is a module,
else of ``pkg`` (its ``__init__``). On that graph: no import cycle between files or
between folders (packages and subpackages), no module importing its own package's
``__init__`` (import the defining module), no module over ``MAX_LINES`` lines in the
shipped packages and ``bench/`` (test files may be longer: the escape corpus and its
fixtures are data). Above the packages: ``bench/``, then ``tests/`` (no package imports
either, the benches never import the tests). The command line (``batos/*.py``) loads a
layer only when one of its commands runs; ``batos/root/`` imports eagerly. Inside
``uvm/`` the modules stack as its docstring's layer list says.
"""

from __future__ import annotations

import ast
import functools
import itertools
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import uvm

ROOT = Path(__file__).resolve().parents[2]

FLOORS = {
    "lexicon": 0,
    "bridge": 1, "envs": 1,
    "uvm": 2, "supervisor": 2,
    "weaver": 3, "crucible": 3,
    "ui_seed": 4,
    "batos": 5,
}

#: what each package may import of the others (all on lower floors)
ALLOWED = {
    "lexicon": set(),
    "bridge": {"lexicon"},
    "envs": {"lexicon"},
    "uvm": {"lexicon", "bridge", "envs"},
    "supervisor": {"lexicon", "bridge", "envs"},
    "weaver": {"lexicon", "envs"},
    "crucible": {"lexicon", "envs", "uvm"},
    "ui_seed": {"lexicon", "bridge", "uvm", "crucible"},
    "batos": {"lexicon", "bridge", "envs", "uvm", "supervisor", "weaver", "crucible", "ui_seed"},
}

#: the shared floor's only dependency beyond the standard library
LEXICON_THIRD_PARTY = {"pydantic"}

MAX_LINES = 400


# --- the import graph ----------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    path: Path
    line: int
    text: str  # the import statement, as written
    target: str  # the module it loads: one of the tree's, or an outside name (top level)
    inside: bool  # True when the target is a module of the tree
    module_level: bool  # run at import time (not in a function, not under TYPE_CHECKING)

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: `{self.text}`"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the shipped packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _resolve(name: str) -> str | None:
    """The longest prefix of ``name`` that is a module of the tree."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules():
            return ".".join(parts)
        parts.pop()
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree``, with whether it runs at module level."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, module_level: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, module_level))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            module_level = False
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, module_level)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, module_level)

    visit(tree, True)
    return found


def _targets(importer: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = importer.split(".")
        if path.name != "__init__.py":
            package.pop()
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        targets.append(candidate if alias.name != "*" and candidate in modules() else base)
    return targets


@functools.cache
def imports() -> tuple[Import, ...]:
    found: list[Import] = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, module_level in _statements(tree):
            text = ast.unparse(node)
            for target in dict.fromkeys(_targets(name, path, node)):
                resolved = _resolve(target)
                inside = resolved is not None
                found.append(Import(name, path, node.lineno, text,
                                    resolved if inside else target.split(".")[0],
                                    inside, module_level))
    return tuple(found)


def _package(module: str) -> str:
    return module.split(".")[0]


def _folder(module: str) -> str:
    """The package a module lives in (a package's ``__init__`` lives in the package)."""
    return module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


# --- floors --------------------------------------------------------------------------


def test_every_package_of_the_tree_is_on_a_floor():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert packages == set(FLOORS), f"not on a floor: {sorted(packages - set(FLOORS))}"


def test_a_package_may_import_only_below_its_floor():
    for package, allowed in ALLOWED.items():
        for other in allowed:
            assert FLOORS[other] < FLOORS[package], (package, other)


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_package_imports_respect_the_floors(package):
    bad = [f"{imp.where()}: {package} (floor {FLOORS[package]}) imports {_package(imp.target)} "
           f"(floor {FLOORS[_package(imp.target)]}); it may import "
           f"{', '.join(sorted(ALLOWED[package])) or 'nothing of batos'}"
           for imp in imports()
           if imp.inside and _package(imp.importer) == package
           and _package(imp.target) not in ALLOWED[package] | {package}]
    assert not bad, _report(bad, "imports across the floors")


def test_the_shared_floor_needs_only_the_standard_library_and_pydantic():
    allowed = set(sys.stdlib_module_names) | LEXICON_THIRD_PARTY
    bad = [f"{imp.where()}: lexicon imports {imp.target}" for imp in imports()
           if _package(imp.importer) == "lexicon" and not imp.inside
           and imp.target not in allowed]
    assert not bad, _report(bad, "imports the shared floor may not make")


# --- cycles --------------------------------------------------------------------------


def _edges(key) -> tuple[dict[str, set[str]], dict[tuple[str, str], list[Import]]]:
    edges: dict[str, set[str]] = defaultdict(set)
    by_edge: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports():
        if not imp.inside:
            continue
        a, b = key(imp.importer), key(imp.target)
        if a != b:
            edges[a].add(b)
            by_edge[a, b].append(imp)
    return edges, by_edge


def _loop(start: str, edges: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, set()) & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is on no loop")


def _cycle_problems(key) -> list[str]:
    edges, by_edge = _edges(key)
    problems = []
    for component in _cycles(edges):
        loop = _loop(component[0], edges, set(component))
        lines = [f"{imp.where()} -> {imp.target}"
                 for a, b in itertools.pairwise(loop) for imp in by_edge[a, b]]
        problems.append(f"cycle {' -> '.join(loop)} (all of {', '.join(component)} loop):"
                        "\n    " + "\n    ".join(lines))
    return problems


def test_no_import_cycle_between_files():
    problems = _cycle_problems(lambda module: module)
    assert not problems, _report(problems, "import cycles between files")


def test_no_import_cycle_between_folders():
    problems = _cycle_problems(_folder)
    assert not problems, _report(problems, "import cycles between folders")


def test_no_module_imports_its_own_package_init():
    bad = [f"{imp.where()}: {imp.importer} imports its own package {imp.target} "
           f"(its __init__): import the module that defines the name"
           for imp in imports()
           if imp.inside and imp.target != imp.importer
           and modules()[imp.target].name == "__init__.py"
           and imp.importer.startswith(imp.target + ".")]
    assert not bad, _report(bad, "imports of a package's own __init__")


#: the folders above every package: the benches may use the packages; the tests may use
#: the packages and the benches (never the other way round: no loop between folders)
OUTER = {"bench": set(), "tests": {"bench"}}


def _outer_imports(folder: str) -> list[tuple[Path, int, str, str]]:
    """(path, line, statement, top-level name) of every absolute import under ``folder``."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, _level in _statements(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # relative: inside the folder
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""])
            for name in names:
                found.append((path, node.lineno, ast.unparse(node), name.split(".")[0]))
    return found


def test_the_benches_and_tests_stand_above_the_packages():
    bad = [f"{imp.where()}: the package {_package(imp.importer)} imports {imp.target}"
           for imp in imports() if not imp.inside and imp.target in OUTER]
    for folder, may in OUTER.items():
        bad += [f"{path.relative_to(ROOT)}:{line}: `{text}`: {folder} imports {name}"
                for path, line, text, name in _outer_imports(folder)
                if name in OUTER and name != folder and name not in may]
    assert not bad, _report(bad, "imports up to the benches or the tests")


# --- sizes ---------------------------------------------------------------------------


def test_no_module_over_the_line_limit():
    paths = list(modules().values()) + sorted((ROOT / "bench").glob("*.py"))
    bad = [f"{path.relative_to(ROOT)}: {n} lines" for path in paths
           if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not bad, _report(bad, f"modules over {MAX_LINES} lines")


# --- the command line and the wire words -----------------------------------------------


def test_cli_loads_layers_lazily():
    bad = [f"{imp.where()}: the command line loads {imp.target} when imported; import it "
           f"inside the command that needs it"
           for imp in imports()
           if imp.module_level and imp.inside and imp.importer.count(".") <= 1
           and _package(imp.importer) == "batos" and not imp.importer.startswith("batos.root")
           and (_package(imp.target) != "batos" or imp.target.startswith("batos.root"))]
    assert not bad, _report(bad, "eager imports in the command line")


def test_the_backend_frame_tags_are_named_only_in_lexicon():
    tags = {b"Q", b"R", b"C"}
    paths = list(modules().values()) + sorted((ROOT / "bench").glob("*.py"))
    bad = []
    for path in paths:
        if path == ROOT / "lexicon" / "frames.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and node.value in tags:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}: "
                           f"use lexicon.frames")
    assert not bad, _report(bad, "frame tags written out")


# --- the UVM -------------------------------------------------------------------------


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
