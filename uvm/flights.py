"""One synthesis at a time per receiver and selector: the first asker leads, the rest wait.

When several messages miss the same selector on the same receiver at once,
only the first (the leader) asks the mind; the others wait for it to finish
and then send their message again (the method is there by then), or raise
the leader's error. ``uvm.kernel`` keeps one ``Flights`` per kernel.

Threads: any number of message threads call ``board``, ``wait`` and ``land``; one lock
guards the table, held only to look up, add or remove a flight.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from .errors import SynthesisFailed, UVMError

__all__ = ["Flight", "Flights"]


class Flight:
    """One synthesis in progress; others asking for the same thing wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: UVMError | None = None
        self.waiters = 0  # how many other sends wait on this one (read by tests and status)


class Flights:
    """The syntheses in progress, by (receiver, selector)."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, Flight] = {}
        self._lock = threading.Lock()

    def values(self) -> list[Flight]:
        with self._lock:
            return list(self._flights.values())

    def board(self, key: Hashable) -> tuple[Flight, bool]:
        """(the flight for ``key``, whether this caller leads it). A leader asks the mind
        and must ``land`` the flight; a follower ``wait``s for it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = Flight()
                return flight, True
            flight.waiters += 1
            return flight, False

    @staticmethod
    def wait(flight: Flight, deadline: float, what: str) -> None:
        """Wait at most ``deadline`` seconds for ``flight`` (another thread's synthesis of
        ``what``) to land; raises the leader's error, if it had one."""
        if not flight.done.wait(deadline):
            raise SynthesisFailed(
                f"a synthesis of {what!r} already running did not finish within "
                f"{deadline:.0f}s; send the message again later"
            )
        if flight.error is not None:
            raise type(flight.error)(*flight.error.args) from flight.error

    def land(self, key: Hashable, flight: Flight, error: UVMError | None = None) -> None:
        """The leader is done (with ``error`` if it failed): wake the waiters."""
        flight.error = error
        flight.done.set()
        with self._lock:
            self._flights.pop(key, None)
