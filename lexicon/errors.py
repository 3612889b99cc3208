"""``TransientError``: the one mixin of every retryable error in batos.

Each package keeps its own error root (``uvm.UVMError``, ``bridge.BridgeError``,
``weaver.WeaverError``, ``crucible.CrucibleError``, ...); an error that may pass
if the same thing is tried again later (a storage or a mind that is away, a
timeout, a busy adapter, a conflict that outlived its retries) also derives
from this class, so ``except TransientError`` catches "retry later" from any
layer without catching the permanent errors.
"""

from __future__ import annotations

__all__ = ["TransientError"]


class TransientError(Exception):
    """Trying the same thing again later may succeed; nothing was changed by this attempt."""
