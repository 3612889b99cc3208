"""The thread boundary of the view models: ``Worker``, ``deliver``, ``Mailbox``, ``Model``.

Bridge calls run on the ``Worker``'s daemon threads, each thread with its own
``bridge.Client`` (a client is not thread-safe). A call's outcome is handed to
``deliver``, which runs the callback on the UI thread: ``Clock.schedule_once``
in the window, a ``Mailbox`` that the test pumps in tests.

``Model`` is the base of every view model: ``run`` submits a job and changes
state only in the delivered callback, so model state is only touched on the UI
thread, and observers (``Model.observe``) are called there too. Nothing here
blocks the UI thread on the network, and nothing here knows Kivy.

A model knows its session only as a ``Host`` (the worker, the author, how a
failure reads); ``ui_seed.session.Session`` is one, and imports the models,
never the other way round.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from bridge import Client

from .errors import UiError

__all__ = ["Deliver", "Host", "Job", "Mailbox", "Model", "Worker"]

#: runs a callback on the UI thread
Deliver = Callable[[Callable[[], None]], None]
#: a bridge call, run on a worker thread with that thread's client
Job = Callable[[Client], Any]


class Mailbox:
    """A ``deliver`` for tests and scripts: callbacks wait here until ``pump`` runs them."""

    def __init__(self) -> None:
        self.pending: queue.Queue[Callable[[], None]] = queue.Queue()

    def __call__(self, fn: Callable[[], None]) -> None:
        self.pending.put(fn)

    def pump(self, until: Callable[[], Any], timeout: float) -> Any:
        """Run delivered callbacks until ``until()`` is truthy; its value, or AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = until()
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not done within {timeout}s")
            try:
                fn = self.pending.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            fn()


class Worker:
    """Daemon threads that run jobs, each with its own ``Client``; outcomes go to ``deliver``.

    A job is ``fn(client) -> value``; ``done(value, error)`` runs through ``deliver``.
    Threads are daemons: a window closed during a 15-minute evolve does not wait for it.
    """

    def __init__(self, endpoint: str, deliver: Deliver, *, timeout: float, retries: int = 1,
                 curve: tuple[bytes, bytes, bytes] | None = None, threads: int = 4) -> None:
        self.endpoint = endpoint
        self.deliver = deliver
        self.options = {"timeout": timeout, "retries": retries, "curve": curve}
        self.jobs: queue.Queue[tuple[Job, Callable[[Any, BaseException | None], None]] | None] = (
            queue.Queue())
        self.threads = [threading.Thread(target=self._run, name=f"batos-ui-{i}", daemon=True)
                        for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def submit(self, job: Job, done: Callable[[Any, BaseException | None], None]) -> None:
        self.jobs.put((job, done))

    def close(self, wait: float = 1.0) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + wait
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        client: Client | None = None
        try:
            while (item := self.jobs.get()) is not None:
                job, done = item
                try:
                    if client is None:
                        client = Client(self.endpoint, **self.options)
                    value, error = job(client), None
                except Exception as exc:  # handed to the UI as a UiError, never lost
                    value, error = None, exc
                self.deliver(lambda done=done, value=value, error=error: done(value, error))
        finally:
            if client is not None:
                client.close()


class Host(Protocol):
    """What a view model needs of the session that owns it (``ui_seed.session.Session``)."""

    worker: Worker
    author: str

    def failed(self, exc: BaseException) -> UiError:
        """An exception from a worker as the ``UiError`` to show."""
        ...


class Model:
    """Observable state: ``observe(fn)``; ``changed()`` calls every observer (UI thread)."""

    def __init__(self, session: Host) -> None:
        self.session = session
        self.busy = False
        self.error: UiError | None = None
        self.observers: list[Callable[[], None]] = []

    def observe(self, fn: Callable[[], None]) -> None:
        self.observers.append(fn)

    def changed(self) -> None:
        for fn in list(self.observers):
            fn()

    def run(self, job: Job, on_ok: Callable[[Any], None],
            on_error: Callable[[UiError], None] | None = None) -> None:
        """Run ``job`` on a worker; ``busy`` until it is done, then ``on_ok`` or ``error``."""
        self.busy, self.error = True, None
        self.changed()

        def done(value: Any, exc: BaseException | None) -> None:
            self.busy = False
            if exc is None:
                on_ok(value)
            else:
                self.error = self.session.failed(exc)
                if on_error is not None:
                    on_error(self.error)
            self.changed()
        self.session.worker.submit(job, done)
