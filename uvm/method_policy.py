"""The compile policy of method sources: what a method may say, checked before it runs.

``restricted_code(source)`` answers the function's name and a code object
compiled by RestrictedPython under this policy, or raises
``MethodSourceError`` naming the line and the rule. In order:

1. shape: exactly one top-level ``def`` (a docstring before it is fine), a
   receiver parameter, no decorators, no class, no ``async``; its defaults are
   immutable literals (the compiled function serves every call in the process:
   a ``keep=[]`` default would carry state from one message to the next);
2. imports: only names ``uvm.allowlist`` grants (capability namespaces and
   the env's packages), absolute, no ``*``, no private names;
3. strings other code would evaluate are never made: no annotations at all
   (``def f(self, x: "..." )``, ``-> ...``, ``x: T = v``), so nothing that
   resolves annotations (``typing``, ``singledispatch``) has anything to read;
4. signals stay signals: the names ``BaseException``, ``SystemExit``,
   ``KeyboardInterrupt``, ``GeneratorExit`` cannot be used (they are not in the
   builtins either), a bare ``except:`` is compiled as ``except Exception:``,
   and ``return``/``break``/``continue`` inside ``finally`` (which would
   swallow an exception in flight, the kernel's own signals included) is
   refused; ``global`` is refused (a method's globals are the kernel's);
5. RestrictedPython's rules (attribute access, item access, writes through the
   guards of ``uvm.guards``; no private or dunder attributes), with one change:
   a method's own locals and parameters may start with ``_`` (``_age``,
   ``for _ in``), except names of the restricted runtime's shape (dunders,
   ``_x_`` like its guards, ``_print``, ``_tmp<N>``), which would shadow it.

A method whose source imports ``decimal`` or ``random`` gets its body wrapped
in the per-call scopes of ``uvm.capabilities``. Stateless; any thread.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import FORBIDDEN_FUNC_NAMES, RestrictingNodeTransformer

from . import allowlist, capabilities
from .errors import MethodSourceError
from .guards import SIGNALS

__all__ = ["MAX_SOURCE", "SCOPE_NAMES", "reserved_name", "restricted_code"]

MAX_SOURCE = 64_000
#: the names the per-call scopes are bound to in a method's globals
SCOPE_NAMES = {"decimal": "_decimal_scope_", "random": "_random_scope_"}
# names the restricted runtime uses or generates: a local of that shape would shadow it
_RESERVED = re.compile(r"^(__.*|_.*_|_print|_tmp\d*)$")
_INJECTED = frozenset(SCOPE_NAMES.values())


def reserved_name(name: str) -> bool:
    """Whether a local of this name would shadow the restricted runtime (``_`` is not)."""
    return name != "_" and bool(_RESERVED.match(name))


def _bound_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.arg):
        return node.arg
    if isinstance(node, ast.FunctionDef | ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
        return node.name
    if isinstance(node, ast.alias):
        return node.asname or node.name
    return None


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's transformer, letting a method's own private locals be."""

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is None:
            return
        if name in _INJECTED:
            return  # ours (``_scoped``); _check refused it in the method's own text
        if reserved_name(name):
            self.error(node, f'"{name}" is an invalid variable name: names like dunders or '
                             "'_x_' belong to the restricted runtime")
        elif name.endswith("__roles__"):
            self.error(node, f'"{name}" is an invalid variable name')
        elif name in FORBIDDEN_FUNC_NAMES:
            self.error(node, f'"{name}" is a reserved name.')


def _fail(node: ast.AST, text: str) -> MethodSourceError:
    return MethodSourceError(f"line {getattr(node, 'lineno', '?')}: {text}")


def _parse(source: Any) -> tuple[ast.Module, ast.FunctionDef]:
    if not isinstance(source, str) or not source.strip():
        raise MethodSourceError("method source must be a non-empty string")
    if len(source) > MAX_SOURCE:
        raise MethodSourceError(f"method source is {len(source)} characters; the limit is {MAX_SOURCE}")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MethodSourceError(f"method source does not parse: line {exc.lineno}: {exc.msg}") from exc
    except (ValueError, RecursionError, MemoryError) as exc:
        raise MethodSourceError(f"method source does not parse: {type(exc).__name__}") from exc
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef):
        raise MethodSourceError(
            "method source must be exactly one function definition "
            "('def name(self, ...): ...') and nothing else"
        )
    return tree, body[0]


def _check_import(node: ast.Import | ast.ImportFrom) -> None:
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
        raise _fail(node, str(exc)) from None


def _annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.AnnAssign):
        return [node.annotation]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        found = [a.annotation for a in every if a is not None and a.annotation is not None]
        returns = getattr(node, "returns", None)
        return found + ([returns] if returns is not None else [])
    return []


def _exits_finally(final: list[ast.stmt]) -> ast.AST | None:
    """A ``return``, or a ``break``/``continue`` of a loop outside, in a ``finally`` body."""
    stack: list[tuple[ast.AST, bool]] = [(stmt, False) for stmt in final]
    while stack:
        node, in_loop = stack.pop()
        if isinstance(node, ast.Return) or (isinstance(node, ast.Break | ast.Continue)
                                            and not in_loop):
            return node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        loop = in_loop or isinstance(node, ast.For | ast.While | ast.AsyncFor)
        for child in ast.iter_child_nodes(node):
            # a loop's own else-clause is outside the loop
            inner = loop and not (isinstance(node, ast.For | ast.While) and child in node.orelse)
            stack.append((child, inner or in_loop))
    return None


def _immutable_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, ast.Tuple):
        return all(_immutable_literal(item) for item in node.elts)
    return False


def _check(func: ast.FunctionDef) -> set[str]:
    """The policy's checks over the whole function; answers the modules it imports."""
    if func.decorator_list:
        raise MethodSourceError(f"method {func.name!r} may not have decorators")
    if not func.args.posonlyargs + func.args.args:
        raise MethodSourceError(
            f"method {func.name!r} needs a first positional parameter for the receiver (self)")
    for default in [*func.args.defaults, *(d for d in func.args.kw_defaults if d is not None)]:
        if not _immutable_literal(default):
            raise _fail(default, f"a default value of {func.name!r} is not an immutable "
                                 "literal; the compiled function serves every call in the "
                                 "process, so a list, dict or set default would carry state "
                                 "from one message to the next: default to None and build "
                                 "it in the body")
    imported: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Import | ast.ImportFrom):
            _check_import(node)
            if isinstance(node, ast.Import):
                imported.update(alias.name.partition(".")[0] for alias in node.names)
            elif node.module:
                imported.add(node.module.partition(".")[0])
        elif isinstance(node, ast.ClassDef):
            raise _fail(node, "class definitions are not allowed in methods")
        elif isinstance(node, ast.AsyncFunctionDef | ast.Await | ast.AsyncFor | ast.AsyncWith):
            raise _fail(node, "methods are synchronous; no async/await")
        elif isinstance(node, ast.Global):
            raise _fail(node, "'global' is not allowed: a method's globals are the kernel's")
        elif isinstance(node, ast.Name) and node.id in SIGNALS:
            raise _fail(node, f"{node.id!r} is not available to methods: the kernel's signals "
                              "are not a method's to raise or catch (catch Exception)")
        elif isinstance(node, ast.Try | ast.TryStar) and node.finalbody:
            exit_node = _exits_finally(node.finalbody)
            if exit_node is not None:
                raise _fail(exit_node, f"'{type(exit_node).__name__.lower()}' inside 'finally' "
                                       "would swallow an exception in flight; not allowed")
        if _bound_name(node) in _INJECTED:
            raise _fail(node, f"{_bound_name(node)!r} belongs to the restricted runtime")
        if _annotations(node):
            raise _fail(node, "annotations are not allowed in methods (an annotation is text "
                              "that other code may evaluate); write the type in the docstring")
    return imported


class _Transform(ast.NodeTransformer):
    """``except:`` becomes ``except Exception:``."""

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        self.generic_visit(node)
        if node.type is None:
            node.type = ast.copy_location(ast.Name("Exception", ast.Load()), node)
        return node


def _scoped(func: ast.FunctionDef, imported: set[str]) -> None:
    scopes = [SCOPE_NAMES[m] for m in sorted(imported & capabilities.SCOPED)]
    if not scopes:
        return
    body = func.body
    head = body[:1] if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
        and isinstance(body[0].value.value, str) else []
    rest = body[len(head):] or [ast.copy_location(ast.Pass(), body[0])]
    items = [ast.withitem(ast.Call(ast.Name(name, ast.Load()), [], []), None) for name in scopes]
    func.body = [*head, ast.copy_location(ast.With(items=items, body=rest), rest[0])]


def restricted_code(source: Any, filename: str) -> tuple[str, Any]:
    """The function name and the restricted code object of ``source`` (see the docstring)."""
    tree, func = _parse(source)
    imported = _check(func)
    _Transform().visit(tree)
    _scoped(func, imported)
    ast.fix_missing_locations(tree)
    result = compile_restricted_exec(tree, filename=filename, policy=_Policy)
    if result.errors:
        raise MethodSourceError("method source breaks the restricted policy: "
                                + "; ".join(result.errors))
    return func.name, result.code
