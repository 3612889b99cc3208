"""Telling systemd how the supervisor is doing: the sd_notify protocol, spoken directly.

systemd starts a ``Type=notify`` service with ``NOTIFY_SOCKET`` in its
environment: a Unix datagram socket (a path, or a name in the abstract
namespace when it starts with ``@``). The service sends newline-separated
``KEY=VALUE`` lines there: ``READY=1`` once it serves, ``STATUS=...`` for
``systemctl status``, ``STOPPING=1`` on the way down, and ``WATCHDOG=1`` at
least every ``WATCHDOG_USEC`` microseconds or systemd kills and restarts it.

``Notifier`` is that conversation and nothing more: no libsystemd, no threads.
The watchdog is fed from the supervisor's own poll loop (``tick()`` each
iteration), so a loop that hangs stops feeding it and systemd restarts the
supervisor, which is the point. Without ``NOTIFY_SOCKET`` (run by hand, in
tests) every method is a cheap no-op.

Boundary: sending never raises to the caller. A notification that cannot be
delivered must not take the supervisor down; the first failure is logged at
warning, later ones at debug.

Thread boundary: one ``Notifier`` belongs to the thread that runs the poll
loop; it holds no locks.

Children must not inherit ``NOTIFY_VARIABLES`` (with ``NotifyAccess=main``
systemd ignores them anyway, but a child that sent ``READY=1`` or fed the
watchdog would hide a hung supervisor); the spawner strips them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["NOTIFY_VARIABLES", "Notifier"]

log = logging.getLogger(__name__)

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _socket_address(value: str) -> str | bytes | None:
    """The ``sendto`` address for a ``NOTIFY_SOCKET`` value, or None if unsupported."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    # Newer systemd also offers vsock: addresses; we only speak AF_UNIX.
    log.warning("NOTIFY_SOCKET=%r is not a Unix socket path; not notifying systemd", value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        # The watchdog was meant for another process (our parent, say).
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; watchdog ignored", raw)
        return None
    return usec if usec > 0 else None


class Notifier:
    """Sends sd_notify messages to ``address``; a no-op when ``address`` is None.

    ``watchdog_usec`` is systemd's watchdog timeout; ``tick()`` feeds it at
    half that interval. ``clock`` (monotonic seconds) is used only when a
    caller does not pass ``now``.
    """

    def __init__(
        self,
        address: str | bytes | None,
        *,
        watchdog_usec: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if address is not None else None
        self._clock = clock
        self._socket: socket.socket | None = None
        self._last_ping: float | None = None
        self._warned = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for the variables systemd set (``os.environ`` by default)."""
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET")
        address = _socket_address(raw) if raw else None
        return cls(address, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        """True when there is a systemd to talk to."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is done and the supervisor serves."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(_status_line(status))
        return self.send(*lines)

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status``."""
        return self.send(_status_line(text))

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """``RELOADING=1`` with the ``MONOTONIC_USEC`` newer systemd expects; send
        ``ready()`` when the reload is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog(self, now: float | None = None) -> bool:
        """``WATCHDOG=1``: the loop is alive. ``now`` records when, for ``tick()``."""
        self._last_ping = self._clock() if now is None else now
        return self.send("WATCHDOG=1")

    def watchdog_due(self, now: float | None = None) -> bool:
        """True when the watchdog is on and a ping is due at ``now``."""
        interval = self.watchdog_interval
        if interval is None:
            return False
        if self._last_ping is None:
            return True
        now = self._clock() if now is None else now
        return now - self._last_ping >= interval

    def tick(self, now: float | None = None) -> bool:
        """Call once per loop iteration: pings the watchdog when due.

        Returns True when a ping was sent. Cheap when none is due.
        """
        if self.watchdog_interval is None:
            return False
        now = self._clock() if now is None else now
        if not self.watchdog_due(now):
            return False
        self.watchdog(now)
        return True

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram. True if sent, False if off or it failed."""
        if self._address is None:
            return False
        payload = "\n".join(lines).encode("utf-8")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "could not notify systemd at %r: %s", self._address, exc)
            return False
        return True

    def close(self) -> None:
        """Close the socket; a later send opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __repr__(self) -> str:
        return f"Notifier(address={self._address!r}, watchdog_usec={self._watchdog_usec})"


def _status_line(text: str) -> str:
    # A newline would end the STATUS value and start a bogus assignment.
    return "STATUS=" + " ".join(text.splitlines())
