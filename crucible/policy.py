"""The policy: which stages run, which must pass, and the trial's limits.

Each stage is ``required`` (must pass for approval), ``advisory`` (runs and is
recorded, never blocks) or ``off`` (not run; recorded as ``off``, never as a
pass). The default requires the static and trial stages and leaves the three
persona reviews off, since they need a mind (an LLM) to ask.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Mode", "Policy", "REVIEWERS", "TrialLimits"]

Mode = Literal["required", "advisory", "off"]
REVIEWERS = ("logic", "ethics", "utility")


class TrialLimits(BaseModel):
    """Resource limits of one trial, set inside the worker process.

    ``cpu_seconds`` is CPU time of the trial itself (the worker's start-up is
    not counted); ``memory_mb`` is address space the trial may add on top of
    what the worker holds when the trial begins: None (the default) is the live
    process's budget (``envs.confine.memory_budget``: ``[sandbox] memory_mb``, else
    ``DEFAULT_MEMORY_MB``), so a payload that probes the limit meets the same number
    in the trial and live; a value is never looser than the live budget (the smaller
    wins) and makes the trial stricter than live. ``wall_seconds`` is enforced by
    the parent, which kills the worker's process group when it runs out.
    """

    model_config = ConfigDict(extra="forbid")

    cpu_seconds: float = Field(default=2.0, gt=0, le=600)
    memory_mb: int | None = Field(default=None, ge=16, le=1 << 20)
    wall_seconds: float = Field(default=5.0, gt=0, le=3600)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    static: Mode = "required"
    trial: Mode = "required"
    reviews: dict[str, Mode] = Field(
        default_factory=lambda: {name: "off" for name in REVIEWERS}
    )
    limits: TrialLimits = Field(default_factory=TrialLimits)
    max_source_chars: int = Field(default=16_000, ge=64, le=64_000)
    max_nesting: int = Field(default=8, ge=1, le=64)
    extra_allowed_modules: list[str] = Field(default_factory=list)

    def review_mode(self, name: str) -> Mode:
        return self.reviews.get(name, "off")
