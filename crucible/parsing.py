"""Parsing a proposal's source within limits: the tree, or a reason why there is none.

``parse_source`` refuses sources that are empty, too long, do not parse, or
are too large or too deep as trees (``MAX_NODES`` syntax nodes, ``MAX_DEPTH``
levels: the walks after this one may recurse). It only parses: it never
compiles or executes what it reads, and judges nothing in the tree (that is
``rules`` and ``text_rules``).
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NODES", "parse_source"]

MAX_DEPTH = 100
MAX_NODES = 20_000


def _depth(node: ast.AST, limit: int) -> int:
    """Depth of the tree, stopping early past ``limit``."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return deepest


def parse_source(source: Any, max_chars: int, reasons: list[str]) -> ast.Module | None:
    """The tree of ``source``; ``None`` with a reason appended when it cannot be read."""
    if not isinstance(source, str) or not source.strip():
        reasons.append("the source is empty or not a string")
        return None
    if len(source) > max_chars:
        reasons.append(f"the source is {len(source)} characters; the limit is {max_chars}")
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        reasons.append(f"line {exc.lineno}: the source does not parse: {exc.msg}")
        return None
    except (ValueError, RecursionError, MemoryError) as exc:
        reasons.append(f"the source does not parse: {type(exc).__name__}: {exc}")
        return None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        reasons.append(f"the source has {count} syntax nodes; the limit is {MAX_NODES}")
        return None
    if _depth(tree, MAX_DEPTH) > MAX_DEPTH:
        reasons.append(f"expressions nest deeper than {MAX_DEPTH} levels")
        return None
    return tree
