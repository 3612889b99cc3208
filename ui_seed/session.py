"""The root view model: ``Session``, one per window, connected to one supervisor endpoint.

The session owns the ``delivery.Worker`` (bridge calls on daemon threads) and
every view model of the window (``browse``: browser, console, history;
``service``: incarnations, evolve, audit). It pings the supervisor, loads the
first data, subscribes to the supervisor's event stream (``events``, local
endpoints only) and routes each event to the models that follow it.

Threads: events arrive on the subscriber's thread and are handed to
``deliver``, so ``Session.event`` and every model callback run on the UI
thread. ``close`` stops the subscriber and the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .browse import Browser, Console, History
from .delivery import Deliver, Model, Worker
from .errors import UiError, explain
from .service import Audit, Evolve, Incarnations

__all__ = ["Session"]

log = logging.getLogger("batos.ui")


class Session(Model):
    """The root: the connection to one supervisor and every view model of the window.

    ``banner`` is set by the runner when the window is the fallback (with the reason).
    ``on_first_view(fn)``: ``fn(ok)`` once the browser's first object arrived (or failed).
    """

    def __init__(self, endpoint: str, *, deliver: Deliver, timeout: float = 10.0,
                 curve: tuple[bytes, bytes, bytes] | None = None, author: str = "architect",
                 threads: int = 4) -> None:
        self.session = self
        super().__init__(self)
        self.endpoint = endpoint
        self.timeout = timeout
        self.author = author
        self.deliver = deliver
        self.worker = Worker(endpoint, deliver, timeout=timeout, curve=curve, threads=threads)
        self.reachable: bool | None = None
        self.state = "connecting"
        self.pong: dict[str, Any] | None = None
        self.banner = ""
        self.source = "image"
        self.events_address = ""
        self.first_views: list[Callable[[bool], None]] = []
        self.got_first = False
        self.browser = Browser(self)
        self.console = Console(self)
        self.history = History(self)
        self.incarnations = Incarnations(self)
        self.evolve = Evolve(self)
        self.audit = Audit(self)
        self.subscriber: Any = None

    def failed(self, exc: BaseException) -> UiError:
        """An exception from a worker as a ``UiError``; a timeout also checks reachability."""
        error = explain(exc, self.endpoint, reachable=self.reachable)
        if error.kind in ("unreachable", "timeout"):
            self.ping()
        log.warning("%s", error.text)
        return error

    def start(self, *, events: bool = True) -> None:
        """Ping, then load Genesis, the status, the audit; subscribe to events (local only)."""
        def pinged(_pong: Any) -> None:
            self.browser.open("genesis")
            self.audit.refresh()
            self.run(lambda c: c.status(), lambda status: self._status(status, events))

        def unreachable(_error: UiError) -> None:
            self.first_data(False)
        self.ping(pinged, unreachable)

    def ping(self, then: Callable[[Any], None] | None = None,
             otherwise: Callable[[UiError], None] | None = None) -> None:
        """Check the supervisor answers; sets ``reachable``, ``state`` and ``error``."""
        def done(pong: Any, exc: BaseException | None) -> None:
            if exc is None:
                self.reachable, self.pong, self.error = True, pong, None
                self.state = pong.get("state", "serving")
                if then is not None:
                    then(pong)
            else:
                self.reachable, self.state = False, "unreachable"
                self.error = explain(exc, self.endpoint, reachable=False)
                if otherwise is not None:
                    otherwise(self.error)
            self.changed()
        self.worker.submit(lambda c: c.ping(timeout=min(self.timeout, 3.0)), done)

    def _status(self, status: dict[str, Any], events: bool) -> None:
        self.incarnations.update(status)
        self.incarnations.changed()
        self.events_address = (status.get("supervisor") or {}).get("events", "")
        if events and self.events_address and self.subscriber is None:
            from .events import EventSubscriber, reachable

            if reachable(self.events_address):
                self.subscriber = EventSubscriber(self.events_address,
                                                  lambda e: self.deliver(lambda: self.event(e)))

    def event(self, event: dict[str, Any]) -> None:
        """An event from the supervisor's stream (UI thread)."""
        kind = str(event.get("kind", ""))
        if kind.startswith(("incarnation.", "handover.", "supervisor.", "zeo.")):
            self.incarnations.event(event)
        if kind.startswith("handover."):
            self.evolve.event(event)
            if kind == "handover.completed":
                self.audit.refresh()

    def first_data(self, ok: bool) -> None:
        if not self.got_first:
            self.got_first = True
            for fn in self.first_views:
                fn(ok)

    def on_first_view(self, fn: Callable[[bool], None]) -> None:
        self.first_views.append(fn)

    def forget_observers(self) -> None:
        """Drop every observer (a window that failed to build leaves its own behind)."""
        for model in (self, self.browser, self.console, self.history, self.incarnations,
                      self.evolve, self.audit):
            model.observers.clear()
        self.first_views.clear()

    def close(self) -> None:
        if self.subscriber is not None:
            self.subscriber.close()
            self.subscriber = None
        self.worker.close()
