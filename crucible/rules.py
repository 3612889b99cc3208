"""The static stage's rules for code: one walk of a parsed tree, a specific reason per rule broken.

``Reader`` walks a tree (from ``parsing.parse_source``) once and collects:

- imports outside what the caller allows (the reason names the rule from
  ``uvm.allowlist``), relative and star imports, names a capability namespace
  does not grant, private names;
- attributes starting with ``_``; names of the restricted runtime's shape
  (dunders, ``_x_`` like its guards, ``_print``, ``_tmp<N>``), while a method's
  own private locals (``_age``, ``for _ in``) are fine; the names that reach
  code, frames or the kernel's signals (``forbidden.FORBIDDEN_NAMES``;
  ``getattr`` and ``hasattr`` only with a literal, public name); the
  attributes of frames, generators, coroutines, tracebacks and code objects
  (``forbidden.FORBIDDEN_ATTRIBUTES``);
- string literals that are, after NFKC normalisation, a dunder name
  (``'__class__'``, ``'\\uff3f\\uff3fclass__'``): attribute names are not
  built from strings in methods. A string holding a format field
  (``'{0[k]}'``) is data; ``str.format`` walks through the run-time guards;
- ``global``; ``yield``, ``await``, ``async def``, classes and decorators in
  a method; parameters named like the runtime or a primitive; defaults that
  are not literals (evaluated when the ``def`` runs); annotations of any kind
  (text that other code may evaluate; the image's compile policy refuses
  them too);
- blocks nested deeper than the caller's limit.

Identifiers reach this module already NFKC-normalised (Python's parser does
it), so ``x.\\uff3f\\uff3fclass__`` is read as ``x.__class__``; string
literals are normalised here before they are judged. Docstrings are prose,
judged by ``text_rules`` (the caller fills ``Reader.docstrings`` with
``text_rules.docstring_nodes``).

``Reader(module=True)`` relaxes the rules meant for methods (classes,
decorators, dunder methods, ``super().__init__``, ``__name__ == '__main__'``)
for a whole UI module.

This module decides nothing about selectors, policies or verdicts (that is
``static``), and never compiles or executes what it reads.
"""

from __future__ import annotations

import ast
import unicodedata
from typing import Any

from uvm import allowlist
from uvm.errors import MethodSourceError
from uvm.method_policy import reserved_name
from uvm.primitives import PRIMITIVES

from .forbidden import (
    DUNDER,
    FORBIDDEN_ATTRIBUTES,
    FORBIDDEN_NAMES,
    MODULE_OK_NAMES,
    PRIVATE_FIELD,
)

__all__ = ["Reader"]

_BLOCKS = (
    ast.If, ast.For, ast.While, ast.With, ast.Try, ast.TryStar, ast.FunctionDef, ast.Lambda,
    ast.Match, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
)


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


class Reader(ast.NodeVisitor):
    """Walks a tree once and collects reasons; ``module`` relaxes the rules for UI modules."""

    def __init__(self, *, allowed: Any, max_nesting: int, module: bool = False) -> None:
        self.allowed = allowed  # callable: dotted module name -> bool
        self.max_nesting = max_nesting
        self.module = module
        self.reasons: list[str] = []
        self.docstrings: set[int] = set()
        self.depth = 0
        self.deepest = 0
        self.top: ast.FunctionDef | None = None

    def say(self, node: ast.AST, text: str) -> None:
        line = getattr(node, "lineno", None)
        reason = f"line {line}: {text}" if line else text
        if reason not in self.reasons:
            self.reasons.append(reason)

    # --- structure ------------------------------------------------------------------

    def generic_visit(self, node: ast.AST) -> None:
        block = isinstance(node, _BLOCKS) and node is not self.top
        if block:
            self.depth += 1
            if self.depth > self.deepest:
                self.deepest = self.depth
                if self.depth == self.max_nesting + 1:
                    self.say(node, f"blocks nest {self.depth} deep; the limit is {self.max_nesting}")
        super().generic_visit(node)
        if block:
            self.depth -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:  # noqa: N802 - ast visitor protocol
        if not self.module:
            self.say(node, "class definitions are not allowed in methods")
        self._decorators(node)
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:  # noqa: N802
        if not self.module:
            self.say(node, "methods are synchronous: no async def")
        self._function(node)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # noqa: N802
        self._function(node)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:  # noqa: N802
        self._arguments(node, node.args, "lambda")
        self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        dunder_method = self.module and node.name.startswith("__") and node.name.endswith("__")
        if node.name.startswith("_") and not dunder_method and not self.module:
            self.say(node, f"function name {node.name!r} starts with '_'")
        if not self.module and node.name in PRIMITIVES:
            self.say(node, f"function name {node.name!r} would shadow the primitive of that name")
        self._decorators(node)
        self._arguments(node, node.args, f"function {node.name!r}")
        if not self.module:
            for ann in [node.returns, *(a.annotation for a in _all_args(node.args))]:
                if ann is not None:
                    self.say(ann, f"{node.name!r} has annotations; methods take none (an "
                                  "annotation is text other code may evaluate): say the types "
                                  "in the docstring")

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:  # noqa: N802
        if not self.module:
            self.say(node, "annotated assignment: methods take no annotations; assign plainly")
        self.generic_visit(node)

    def _decorators(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        if node.decorator_list and not self.module:
            self.say(node, f"{node.name!r} has decorators; methods take none")

    def _arguments(self, node: ast.AST, args: ast.arguments, what: str) -> None:
        for arg in _all_args(args):
            name = arg.arg
            if reserved_name(name):
                self.say(arg, f"parameter {name!r} of {what} is named like the restricted "
                              "runtime's guards; a parameter may not shadow them")
            elif not self.module and name in PRIMITIVES:
                self.say(arg, f"parameter {name!r} of {what} would shadow the primitive of that name")
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            if not _is_literal(default):
                self.say(default, f"a default value of {what} is not a literal; defaults are "
                                  "evaluated when the def runs: use a constant and compute "
                                  "inside the body")

    # --- names and attributes -------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:  # noqa: N802
        name = node.id
        if self.module and name == "__name__" and isinstance(node.ctx, ast.Load):
            pass
        elif reserved_name(name):
            self.say(node, f"name {name!r} reaches the interpreter's machinery (dunders and "
                           "'_x_' names belong to the restricted runtime)")
        elif name in FORBIDDEN_NAMES and not (self.module and name in MODULE_OK_NAMES):
            self.say(node, f"{name!r} is not available in methods: it reaches code, frames or "
                           "files outside the guards")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:  # noqa: N802
        attr = node.attr
        if attr.startswith("_"):
            if not (self.module and attr == "__init__" and _is_super_call(node.value)):
                self.say(node, f"attribute {attr!r} starts with '_'; dunder and private "
                               "attributes are not allowed")
        elif attr in FORBIDDEN_ATTRIBUTES:
            self.say(node, f"attribute {attr!r} reaches frames, code or attribute walks; not "
                           "allowed")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:  # noqa: N802
        func = node.func
        if isinstance(func, ast.Name) and func.id in {"getattr", "setattr", "delattr", "hasattr"}:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.say(node, f"{func.id}() with a computed attribute name")
            elif name.value.startswith("_"):
                self.say(node, f"{func.id}() of the private attribute {name.value!r}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:  # noqa: N802
        value = node.value
        if isinstance(value, str) and id(node) not in self.docstrings:
            if self.module and value == "__main__":
                return
            text = value.strip()
            if len(text) < 200 and DUNDER.match(unicodedata.normalize("NFKC", text)):
                self.say(node, "a string literal is a dunder name (after NFKC normalisation); "
                               "attribute names are not built from strings in methods")
            elif PRIVATE_FIELD.search(unicodedata.normalize("NFKC", value)):
                self.say(node, "a string literal holds a format field that walks to a private "
                               "attribute ('{0._x}', '{0.__class__}'); the guards refuse it")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:  # noqa: N802
        self.generic_visit(node)

    # --- statements -----------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802
        for alias in node.names:
            if not self.allowed(alias.name):
                self.say(node, f"import of {alias.name!r}: {self._rule(alias.name)}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        if node.level:
            self.say(node, "relative imports are not allowed")
            return
        module = node.module or ""
        if not self.allowed(module):
            self.say(node, f"import from {module!r}: {self._rule(module)}")
        for alias in node.names:
            if alias.name == "*":
                self.say(node, f"'from {module} import *': name what you import")
            elif alias.name.startswith("_"):
                self.say(node, f"'from {module} import {alias.name}': private name")
            elif not self.module and module in allowlist.CAPABILITIES:
                try:
                    allowlist.check_from(module, alias.name)
                except MethodSourceError as exc:
                    self.say(node, str(exc))

    def _rule(self, name: str) -> str:
        if self.module:
            return "this module may import only its toolkit's modules"
        return _import_rule(name)

    def visit_Global(self, node: ast.Global) -> None:  # noqa: N802
        self.say(node, "'global' is not allowed: a method's globals are the kernel's primitives")

    def visit_Yield(self, node: ast.Yield) -> None:  # noqa: N802
        if not self.module:
            self.say(node, "a method is not a generator: no 'yield' (return a list)")
        self.generic_visit(node)

    visit_YieldFrom = visit_Yield  # noqa: N815

    def visit_Await(self, node: ast.Await) -> None:  # noqa: N802
        if not self.module:
            self.say(node, "methods are synchronous: no await")
        self.generic_visit(node)


def _is_super_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _all_args(args: ast.arguments) -> list[ast.arg]:
    found = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    found += [a for a in (args.vararg, args.kwarg) if a is not None]
    return found


def _import_rule(name: str) -> str:
    try:
        allowlist.check_import(name)
    except MethodSourceError as exc:
        return str(exc)
    return "not in this crucible's allowlist"
