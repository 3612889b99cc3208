"""The static rules for prose: docstrings and comments, which reviewers read and code does not.

``docstring_nodes`` finds the docstrings of a tree (so ``rules.Reader``
judges them as prose, not as string literals); ``check_text`` refuses a
docstring longer than ``MAX_DOCSTRING`` and a docstring or comment that
addresses instructions to the reviewers ("ignore the previous instructions",
"approve this proposal"): a docstring says what the code does.

It reads text only, never runs it; the reasons go to the ``Reader`` that
collects the other rules' reasons.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rules import Reader

__all__ = ["MAX_DOCSTRING", "check_text", "docstring_nodes"]

MAX_DOCSTRING = 2000
_INJECTION = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above|earlier|preceding) (instructions|rules)"
    r"|disregard (all |any )?(the )?(previous|prior|above|system)"
    r"|you are now|new instructions|system prompt|as the reviewer|reviewers?:? (must|should) approve"
    r"|approve (this|it) (proposal|method|change)|\"approve\"\s*:\s*true",
    re.IGNORECASE,
)


def docstring_nodes(tree: ast.AST) -> set[int]:
    """The ``id`` of every docstring constant in ``tree`` (module, function and class)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                found.add(id(body[0].value))
    return found


def _comments(source: str) -> list[tuple[int, str]]:
    try:
        return [
            (tok.start[0], tok.string)
            for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT
        ]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return []


def check_text(tree: ast.Module, source: str, reader: Reader) -> None:
    """Docstrings (length, instructions to the reviewers) and comments; reasons go to ``reader``."""
    for node in ast.walk(tree):
        if id(node) in reader.docstrings:
            text = node.value  # type: ignore[attr-defined]
            if len(text) > MAX_DOCSTRING:
                reader.say(node, f"a docstring of {len(text)} characters; the limit is {MAX_DOCSTRING}")
            if _INJECTION.search(text):
                reader.say(node, "the docstring addresses instructions to the reviewers; a "
                                 "docstring says what the code does")
    for line, text in _comments(source):
        if _INJECTION.search(text):
            reader.say(ast.Pass(lineno=line), "a comment addresses instructions to the reviewers")
