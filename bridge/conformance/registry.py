"""The checks' table and their verdicts: what a check is, how it says pass, fail or skip.

A check is a function ``(ctx) -> str | None`` registered with ``@check(name, section)``
in one of the ``check_*`` modules; ``section`` names the part of docs/protocol.md it
holds the server to. It passes by returning (the text, if any, says what it saw),
fails by raising ``Failed`` (or any ``AssertionError``), and is skipped by raising
``Skipped`` with the reason it could not run. Anything else it raises is a failure
too ("crashed"), so a broken server never stops the suite. Verdicts are ``Result``s.

``CHECKS`` keeps registration order, which is the order the suite runs them in:
the ``check_*`` modules are imported in order by ``bridge.conformance.runner``.
Nothing here touches a socket.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHECKS", "PASS", "FAIL", "SKIP", "Check", "Failed", "Result", "Skipped", "check",
           "require", "select"]

PASS, FAIL, SKIP = "pass", "fail", "skip"


class Failed(AssertionError):
    """The server did not do what the spec says; the message says what it did instead."""


class Skipped(Exception):  # noqa: N818 - a verdict, not an error
    """The check could not run against this server; the message says why."""


def require(condition: object, message: str) -> None:
    """``Failed(message)`` unless ``condition`` holds (an assert that survives ``-O``)."""
    if not condition:
        raise Failed(message)


@dataclass(frozen=True)
class Check:
    name: str
    section: str
    run: Callable[[Any], str | None]
    #: one line: what the check sends and what it expects back
    summary: str = ""
    #: the module that registered it (the runner orders checks by module)
    module: str = ""


@dataclass(frozen=True)
class Result:
    name: str
    section: str
    outcome: str  # PASS, FAIL or SKIP
    reason: str = ""
    elapsed: float = 0.0
    #: the events, replies or frames worth keeping for a report (JSON-ready)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome == FAIL

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "section": self.section, "outcome": self.outcome,
               "reason": self.reason, "elapsed_ms": round(self.elapsed * 1000, 1)}
        if self.details:
            out["details"] = self.details
        return out


CHECKS: list[Check] = []


CheckFunction = Callable[[Any], str | None]


def check(name: str, section: str) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as the check ``name`` (unique) for ``section``."""
    def register(func: CheckFunction) -> CheckFunction:
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"two conformance checks are named {name!r}")
        first = (func.__doc__ or "").strip().split("\n\n")[0]
        summary = " ".join(line.strip() for line in first.splitlines()).replace("``", "`")
        CHECKS.append(Check(name, section, func, summary, func.__module__))
        return func
    return register


def select(checks: Iterable[Check], patterns: list[str]) -> list[Check]:
    """The checks whose name matches one of ``patterns`` (shell patterns, or a prefix
    ending in ``-``); all of them when ``patterns`` is empty."""
    chosen = list(checks)
    if not patterns:
        return chosen
    def wanted(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) or (p.endswith("-") and name.startswith(p))
                   for p in patterns)
    return [c for c in chosen if wanted(c.name)]
