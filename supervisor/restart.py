"""The restart policy: exponential backoff with an intensity limit, as in OTP.

Each crash of the active incarnation is recorded. More than ``max_restarts``
crashes within ``period`` seconds make the supervisor *degraded*: it stays
up, stops restarting, and answers requests with ``Unavailable``. Below the
limit the next start is delayed by ``initial * 2**(recent crashes - 1)``,
capped at ``maximum``. After ``degraded_retry`` seconds degraded, one more
start is allowed (0 disables that).

A crash whose cause was found and answered (a poison message, ``supervisor.poison``)
is *explained*: it is counted in ``total`` but not in the intensity window, and
``pardon`` takes the earlier crashes that request caused out of the window. OTP's
intensity stops a crash loop the supervisor cannot end; answering the poison
message ends this one, so it must not make the supervisor degraded.

Pure logic with explicit ``now``: the loop owns the clock, tests drive it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Decision", "RestartPolicy"]


@dataclass(frozen=True)
class Decision:
    degraded: bool
    delay: float = 0.0
    recent: int = 0


class RestartPolicy:
    def __init__(self, *, max_restarts: int = 5, period: float = 60.0, initial: float = 0.25,
                 maximum: float = 10.0, degraded_retry: float = 300.0) -> None:
        self.max_restarts = max_restarts
        self.period = period
        self.initial = initial
        self.maximum = maximum
        self.degraded_retry = degraded_retry
        self.crashes: deque[float] = deque()
        self.total = 0
        self.degraded_since: float | None = None

    def _trim(self, now: float) -> None:
        while self.crashes and self.crashes[0] < now - self.period:
            self.crashes.popleft()

    def record_crash(self, now: float, *, explained: bool = False) -> Decision:
        self.total += 1
        if explained:
            self._trim(now)
            return Decision(degraded=False, delay=self.initial, recent=len(self.crashes))
        self.crashes.append(now)
        self._trim(now)
        recent = len(self.crashes)
        if recent > self.max_restarts:
            if self.degraded_since is None:
                self.degraded_since = now
            return Decision(degraded=True, recent=recent)
        delay = min(self.initial * 2 ** (recent - 1), self.maximum)
        return Decision(degraded=False, delay=delay, recent=recent)

    def pardon(self, times: list[float]) -> int:
        """Take the crashes recorded at ``times`` out of the intensity window; answers how many."""
        pardoned = 0
        for when in times:
            if when in self.crashes:
                self.crashes.remove(when)
                pardoned += 1
        return pardoned

    @property
    def degraded(self) -> bool:
        return self.degraded_since is not None

    def retry_due(self, now: float) -> bool:
        """Degraded long enough to try one more start."""
        return (self.degraded_since is not None and self.degraded_retry > 0
                and now - self.degraded_since >= self.degraded_retry)

    def clear(self) -> None:
        """An operator restart (or a successful retry) leaves the degraded state."""
        self.crashes.clear()
        self.degraded_since = None

    def recent(self, now: float) -> int:
        self._trim(now)
        return len(self.crashes)
