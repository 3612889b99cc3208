"""The static stage: read the proposal without running any of it.

For a function source, in order:

1. size (``Policy.max_source_chars``), parse, shape (one ``def``, an optional
   docstring before it) and name: the function's name must be the selector's
   slot name (``uvm.selectors.slot_name``: ``at:put:`` -> ``at_put``), and the
   selectors that guard the mind itself (``PROTECTED``) cannot be proposed;
2. our own AST rules (``rules``), each with a specific reason: imports
   outside ``uvm.allowlist`` (capability namespaces and env packages, plus
   ``Policy.extra_allowed_modules``), names a namespace does not grant, the
   runtime's reserved names, introspection names and the kernel's signals,
   frame and code attributes, dunder strings and format fields naming private
   attributes (judged after NFKC), ``global``, ``yield``, annotations, suspicious
   parameters and defaults, nesting and size limits, docstrings and comments
   that address instructions to the reviewers; the rules share the image's
   policy (a local ``_age`` is fine; ``'{0[k]}'`` is data);
3. the image's own compile policy, ``uvm.methods.compile_method``
   (RestrictedPython), only when everything above passed: it executes the
   ``def`` statement, so nothing it evaluates may be hostile.

For acts: ``uvm.acts.parse_acts``, a size limit, the protected selectors, and
every ``DEFINE_METHOD`` source through the function checks above.

``check_ui_source`` applies the same reading to a whole module (the Kivy UI
source kept in the image), which may define classes and import its toolkit.

This module holds the entry points and what they decide (selectors, policy,
verdicts); the rules themselves live in ``parsing`` (the limits), ``rules``
(the code), ``text_rules`` (docstrings and comments) and ``forbidden`` (the
words they refuse). It never executes proposal code except through
``compile_method``'s ``def``, after the checks that make that safe.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from typing import Any

from uvm import allowlist
from uvm.errors import InvalidAct, MethodSourceError
from uvm.methods import compile_method
from uvm.selectors import slot_name

from .forbidden import FORBIDDEN_ATTRIBUTES, FORBIDDEN_NAMES
from .parsing import MAX_DEPTH as MAX_DEPTH
from .parsing import MAX_NODES as MAX_NODES
from .parsing import parse_source
from .policy import Policy
from .proposal import Proposal
from .rules import Reader
from .text_rules import MAX_DOCSTRING as MAX_DOCSTRING
from .text_rules import check_text, docstring_nodes
from .verdict import StageVerdict, timed

__all__ = [
    "FORBIDDEN_ATTRIBUTES",
    "FORBIDDEN_NAMES",
    "PROTECTED",
    "check_acts",
    "check_proposal",
    "check_source",
    "check_ui_source",
]

#: selectors that guard the mind: a proposal may not (re)define them
PROTECTED = frozenset({"doesNotUnderstand", "reviewProposal"})


def _allowed(policy: Policy) -> Any:
    extra = {m.strip() for m in policy.extra_allowed_modules if m.strip()}

    def allowed(name: str) -> bool:
        top = name.partition(".")[0]
        return bool(name) and (allowlist.is_allowed(name) or (top in extra and top not in
                                                              allowlist.NEVER_ALLOWED))

    return allowed


def check_source(source: Any, *, selector: str, policy: Policy | None = None) -> list[str]:
    """The reasons ``source`` may not become the method for ``selector``; empty if none."""
    policy = policy or Policy()
    reasons: list[str] = []
    tree = parse_source(source, policy.max_source_chars, reasons)
    if tree is None:
        return reasons
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef):
        return ["the source must be exactly one function definition ('def name(self, ...):') "
                "and nothing else"]
    func = body[0]
    try:
        wanted = slot_name(selector)
    except ValueError as exc:
        return [str(exc)]
    if wanted in PROTECTED:
        reasons.append(f"{selector!r} guards the mind itself and cannot be proposed")
    if func.name != wanted:
        reasons.append(f"the function is named {func.name!r} but the selector {selector!r} needs "
                       f"a function named {wanted!r}")
    if not func.args.posonlyargs + func.args.args:
        reasons.append(f"{func.name!r} needs a first positional parameter for the receiver (self)")
    reader = Reader(allowed=_allowed(policy), max_nesting=policy.max_nesting)
    reader.top = func
    reader.docstrings = docstring_nodes(tree)
    reader.visit(tree)
    check_text(tree, source, reader)
    reasons += reader.reasons
    if not reasons:
        try:
            compile_method(source)
        except MethodSourceError as exc:
            reasons.append(f"the image's compile policy: {exc}")
        except (RecursionError, MemoryError, ValueError) as exc:
            reasons.append(f"the source does not compile: {type(exc).__name__}: {exc}")
    return reasons


def check_acts(acts: Any, *, selector: str, policy: Policy | None = None) -> list[str]:
    """The reasons a list of autopoietic_acts may not be applied for ``selector``."""
    from uvm.acts import DefineMethod, RemoveSlot, RollbackMethod, parse_acts

    policy = policy or Policy()
    try:
        size = len(json.dumps(acts, default=str))
    except (TypeError, ValueError, RecursionError) as exc:
        return [f"the acts are not plain JSON data: {exc}"]
    if size > 4 * policy.max_source_chars:
        return [f"the acts are {size} characters of JSON; the limit is {4 * policy.max_source_chars}"]
    try:
        parsed = parse_acts(acts)
    except InvalidAct as exc:
        return [f"the acts do not fit their schema: {exc}"]
    if not parsed:
        return ["the list of acts is empty"]
    reasons: list[str] = []
    for index, act in enumerate(parsed):
        where = f"act {index} ({act.action})"
        if isinstance(act, DefineMethod | RollbackMethod | RemoveSlot):
            name = act.slot if isinstance(act, RemoveSlot) else act.selector
            try:
                protected = slot_name(name) in PROTECTED
            except ValueError:
                protected = False
            if protected:
                reasons.append(f"{where}: {name!r} guards the mind itself and cannot be changed")
        if isinstance(act, DefineMethod):
            reasons += [f"{where} {act.selector!r}: {r}"
                        for r in check_source(act.source, selector=act.selector, policy=policy)]
    return reasons


def check_proposal(proposal: Proposal, *, selector: str, policy: Policy | None = None,
                   required: bool = True) -> StageVerdict:
    """The static stage's verdict on a proposal."""
    policy = policy or Policy()
    with timed() as clock:
        if proposal.source is not None:
            reasons = check_source(proposal.source, selector=selector, policy=policy)
        else:
            reasons = check_acts(proposal.acts, selector=selector, policy=policy)
    return StageVerdict(
        stage="static", status="fail" if reasons else "pass", required=required,
        reasons=reasons, detail={"kind": proposal.kind}, elapsed_ms=clock.elapsed_ms,
    )


def check_ui_source(source: str, *, allowed_modules: Iterable[str], max_chars: int = 200_000,
                    max_nesting: int = 12) -> StageVerdict:
    """The static stage for a whole module: the Kivy UI source kept in the image.

    It may define classes and functions (and ``__init__`` chaining through
    ``super().__init__``), and may import only the top-level modules given.
    """
    if isinstance(allowed_modules, str):
        raise TypeError("allowed_modules is an iterable of module names, not one string")
    tops = frozenset(m.partition(".")[0] for m in allowed_modules)
    with timed() as clock:
        reasons: list[str] = []
        tree = parse_source(source, max_chars, reasons)
        if tree is not None:
            reader = Reader(allowed=lambda name: bool(name) and name.partition(".")[0] in tops,
                             max_nesting=max_nesting, module=True)
            reader.docstrings = docstring_nodes(tree)
            reader.visit(tree)
            check_text(tree, source, reader)
            reasons += reader.reasons
    return StageVerdict(stage="static", status="fail" if reasons else "pass", required=True,
                        reasons=reasons, detail={"kind": "ui_module"}, elapsed_ms=clock.elapsed_ms)
