"""``Limits``: one message's budget, CPU and wall-clock seconds and the grace after them.

What ``uvm.budget`` enforces for each message and the watchdog (``uvm.watchdog``)
reads for each message in flight; ``from_env`` reads the operator's settings
(``BATOS_BUDGET_CPU``, ``BATOS_BUDGET_WALL``, ``BATOS_BUDGET_GRACE``). Plain data:
it imports nothing of the UVM.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """One message's budget: CPU and wall-clock seconds, and the grace after them."""

    cpu: float = 5.0
    wall: float = 30.0
    #: how long a message over its budget may take to unwind before the process ends
    grace: float = 2.0

    def __post_init__(self) -> None:
        for name in ("cpu", "wall", "grace"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"budget {name} must be a positive number of seconds, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: float | None) -> Limits:
        """Limits from ``given`` (e.g. command-line values), else ``BATOS_BUDGET_CPU``,
        ``BATOS_BUDGET_WALL``, ``BATOS_BUDGET_GRACE``, else the defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name in ("cpu", "wall", "grace"):
            value = given.get(name)
            if value is None:
                text = environ.get(f"BATOS_BUDGET_{name.upper()}", "").strip()
                if not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(
                        f"BATOS_BUDGET_{name.upper()}={text!r} is not a number of seconds"
                    ) from None
            values[name] = float(value)
        return cls(**values)
