"""View models of the UI: state, errors and bridge calls, without Kivy.

The window (``window.py``, run from the image) draws these models and calls
their methods; everything it shows comes from here, so the logic is tested
without a display. ``Session`` is the root: one per window, connected to one
supervisor endpoint.

Threads: bridge calls run on the ``Worker``'s threads, each with its own
``bridge.Client`` (a client is not thread-safe). A call's outcome is handed to
``deliver``, which runs the callback on the UI thread (``Clock.schedule_once``
in the window; a ``Mailbox`` that the test pumps in tests). Model state is
only changed inside those callbacks, so it is only touched on the UI thread,
and observers (``Model.observe``) are called there too. Nothing here blocks
the UI thread on the network.

Errors become ``UiError``: what happened (``kind``: ``unreachable``,
``timeout``, ``remote``, ``invalid``, ``bridge``, ``internal``) and a message
that names the endpoint or the remote error's type, so the user can act.
"""

from __future__ import annotations

import difflib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge import BridgeError, Client, RemoteError, Timeout

__all__ = [
    "Audit",
    "Browser",
    "Console",
    "Evolve",
    "History",
    "Incarnations",
    "Mailbox",
    "Model",
    "ObjectView",
    "Session",
    "SlotView",
    "UiError",
    "Worker",
    "diff_versions",
    "explain",
    "parse_args",
    "render_value",
]

log = logging.getLogger("batos.ui")

Deliver = Callable[[Callable[[], None]], None]
Job = Callable[[Client], Any]

#: how long a console send may take: a doesNotUnderstand: may ask the mind
SEND_TIMEOUT = 600.0
#: how long an evolve or rollback may take (uv builds, validation, probation)
HANDOVER_TIMEOUT = 900.0
MAX_REFS = 20
MAX_EVENTS = 50


# --- errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UiError:
    kind: str
    title: str
    message: str
    type: str = ""

    @property
    def text(self) -> str:
        return f"{self.title}: {self.message}"


def explain(exc: BaseException, endpoint: str, *, reachable: bool | None = None) -> UiError:
    """A ``UiError`` for an exception a bridge call raised."""
    if isinstance(exc, Timeout):
        if reachable is False:
            return UiError("unreachable", "Supervisor not reachable",
                           f"no answer from {endpoint}. Is it running? Start it with 'batos up', "
                           "or give the right endpoint with 'batos ui --endpoint'.", "Timeout")
        return UiError("timeout", "Request timed out",
                       f"{exc} The supervisor at {endpoint} may be busy; try again.", "Timeout")
    if isinstance(exc, RemoteError):
        where = f" (from {exc.where})" if exc.where else ""
        return UiError("remote", f"{exc.type}{where}", exc.message, exc.type)
    if isinstance(exc, BridgeError):
        return UiError("bridge", type(exc).__name__, f"{exc} (endpoint {endpoint})",
                       type(exc).__name__)
    return UiError("internal", type(exc).__name__, str(exc) or repr(exc), type(exc).__name__)


def invalid(message: str) -> UiError:
    return UiError("invalid", "Invalid input", message, "InvalidInput")


# --- threads ----------------------------------------------------------------------------


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


# --- models -----------------------------------------------------------------------------


class Model:
    """Observable state: ``observe(fn)``; ``changed()`` calls every observer (UI thread)."""

    def __init__(self, session: Session) -> None:
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


def render_value(value: Any, limit: int = 160) -> str:
    """A value as one line of JSON, shortened to ``limit`` characters."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refs_in(value: Any) -> list[str]:
    """The uuids of ``{"$ref": ...}`` values at the top level or in a top-level list."""
    items = value if isinstance(value, list) else [value]
    return [v["$ref"] for v in items if isinstance(v, dict) and set(v) == {"$ref"}]


@dataclass
class SlotView:
    name: str
    kind: str
    value: Any = None
    refs: list[tuple[str, str]] = field(default_factory=list)  # (uuid, label)
    selector: str = ""
    version: int | None = None
    error: str = ""

    @property
    def text(self) -> str:
        if self.error:
            return f"(error: {self.error})"
        if self.kind == "method":
            return f"{self.selector}  v{self.version}"
        if self.refs:
            return ", ".join(f"-> {label}" for _uuid, label in self.refs)
        return render_value(self.value)


@dataclass
class ObjectView:
    uuid: str
    names: list[str]
    slots: list[SlotView]

    @property
    def label(self) -> str:
        return self.names[0] if self.names else self.uuid[:8]


def load_object(client: Client, ref: str) -> ObjectView:
    """``describe`` an object, read its data slots and name the objects they refer to."""
    described = client.describe(ref)
    uuid = described["uuid"]
    slots: list[SlotView] = []
    for name, info in described["slots"].items():
        view = SlotView(name, info.get("kind", "?"), selector=info.get("selector", ""),
                        version=info.get("version"), error=info.get("error", ""))
        if view.kind != "method":
            try:
                view.value = client.send(uuid, name)
            except RemoteError as exc:
                view.error = f"{exc.type}: {exc.message}"
        slots.append(view)
    labels: dict[str, str] = {}
    for view in slots:
        for ref_uuid in refs_in(view.value):
            if ref_uuid not in labels and len(labels) < MAX_REFS:
                try:
                    names = client.describe(ref_uuid)["names"]
                except RemoteError:
                    names = []
                labels[ref_uuid] = names[0] if names else ref_uuid[:8]
            view.refs.append((ref_uuid, labels.get(ref_uuid, ref_uuid[:8])))
    return ObjectView(uuid, list(described.get("names") or []), slots)


class Browser(Model):
    """The object browser: one object's slots; ``open`` any uuid or name; ``back``."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.view: ObjectView | None = None
        self.trail: list[str] = []

    def open(self, ref: str) -> None:
        ref = ref.strip()
        if not ref:
            self.error = invalid("give an object's uuid or registered name (e.g. genesis)")
            self.changed()
            return

        def shown(view: ObjectView) -> None:
            if self.view is not None and self.view.uuid != view.uuid:
                self.trail.append(self.view.uuid)
            self.view = view
            self.session.first_data(True)
        self.run(lambda c: load_object(c, ref), shown, lambda _e: self.session.first_data(False))

    def back(self) -> None:
        if self.trail:
            target = self.trail.pop()
            self.run(lambda c: load_object(c, target), self._set)

    def reload(self) -> None:
        if self.view is not None:
            target = self.view.uuid
            self.run(lambda c: load_object(c, target), self._set)

    def _set(self, view: ObjectView) -> None:
        self.view = view


def parse_args(text: str) -> list[Any]:
    """The console's arguments: a JSON list (``[]`` when empty); ValueError says how to fix it."""
    text = text.strip()
    if not text:
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"arguments are a JSON list, e.g. [1, \"two\", {{\"$ref\": \"genesis\"}}]: "
                         f"{exc.msg} at column {exc.colno}") from None
    if not isinstance(value, list):
        raise ValueError(f"arguments are a JSON list; wrap a single value: [{text}]")
    return value


class Console(Model):
    """Send a message; show the result or the error, and a synthesis and its verdict."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.receiver = "genesis"
        self.selector = ""
        self.args_text = ""
        self.synthesizing = False
        self.started = 0.0
        self.entries: list[dict[str, Any]] = []

    @property
    def last(self) -> dict[str, Any] | None:
        return self.entries[-1] if self.entries else None

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.busy else 0.0

    def send(self, receiver: str, selector: str, args_text: str = "") -> None:
        self.receiver, self.selector, self.args_text = receiver.strip(), selector.strip(), args_text
        if not self.receiver or not self.selector:
            self.error = invalid("give a receiver (uuid or name) and a selector")
            self.changed()
            return
        try:
            args = parse_args(args_text)
        except ValueError as exc:
            self.error = invalid(str(exc))
            self.changed()
            return
        entry: dict[str, Any] = {"receiver": self.receiver, "selector": self.selector,
                                 "args": args, "result": None, "error": None,
                                 "synthesized": False, "verdict": None, "seconds": None}
        self.started, self.synthesizing = time.monotonic(), False
        receiver, selector = self.receiver, self.selector
        author = self.session.author

        def understood(responds: Any) -> None:
            self.synthesizing = entry["synthesized"] = not bool(responds)
            self.busy = True  # the send itself follows at once
            self.run(lambda c: self._send(c, receiver, selector, args, author, entry["synthesized"]),
                     answered, failed)

        def answered(value: tuple[Any, Any]) -> None:
            entry["result"], entry["verdict"] = value
            finish()

        def failed(error: UiError) -> None:
            entry["error"] = error
            finish()

        def finish() -> None:
            entry["seconds"] = round(time.monotonic() - self.started, 3)
            self.synthesizing = False
            self.entries.append(entry)
        self.run(lambda c: c.send(receiver, "respondsTo:", selector), understood, failed)

    @staticmethod
    def _send(client: Client, receiver: str, selector: str, args: list[Any], author: str,
              synthesized: bool) -> tuple[Any, Any]:
        result = client.send(receiver, selector, *args, author=author, timeout=SEND_TIMEOUT)
        verdict = None
        if synthesized:
            try:
                versions = client.send(receiver, "methodHistory:", selector)
                verdict = (versions[-1].get("meta") or {}).get("verdict") or {
                    "note": f"installed by {versions[-1].get('author')}, no verdict recorded"}
            except (RemoteError, IndexError, AttributeError):
                verdict = {"note": "the new method is not an own method of the receiver"}
        return result, verdict


def diff_versions(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A unified diff of two method versions' sources."""
    return "".join(difflib.unified_diff(
        old["source"].splitlines(keepends=True), new["source"].splitlines(keepends=True),
        fromfile=f"v{old['version']} ({old.get('author', '?')})",
        tofile=f"v{new['version']} ({new.get('author', '?')})"))


class History(Model):
    """A method's versions (author, reason), a diff between two, and rollback."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.target = ""
        self.selector = ""
        self.versions: list[dict[str, Any]] = []
        self.message = ""

    def load(self, target: str, selector: str) -> None:
        self.target, self.selector = target.strip(), selector.strip()
        if not self.target or not self.selector:
            self.error = invalid("give an object and a method selector")
            self.changed()
            return
        target, selector = self.target, self.selector
        self.run(lambda c: c.send(target, "methodHistory:", selector), self._set)

    def _set(self, versions: list[dict[str, Any]]) -> None:
        self.versions = list(versions)

    def version(self, number: int) -> dict[str, Any]:
        for v in self.versions:
            if v["version"] == number:
                return v
        raise KeyError(f"{self.selector} has no version {number} (1-{len(self.versions)})")

    def diff(self, old: int, new: int) -> str:
        return diff_versions(self.version(old), self.version(new))

    def rollback(self, number: int, reason: str = "") -> None:
        target, selector = self.target, self.selector
        reason = reason or f"rolled back to v{number} from the UI"

        def job(c: Client) -> list[dict[str, Any]]:
            c.send(target, "rollbackMethod:to:", selector, number, reason,
                   author=self.session.author)
            return c.send(target, "methodHistory:", selector)

        def done(versions: list[dict[str, Any]]) -> None:
            self._set(versions)
            self.message = f"{selector} is now v{versions[-1]['version']} (a copy of v{number})"
        self.run(job, done)


class Incarnations(Model):
    """The supervisor's status: incarnations (active and candidates), refreshed on events."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.status: dict[str, Any] | None = None
        self.fetched = 0.0
        self.events: list[dict[str, Any]] = []

    def refresh(self) -> None:
        self.run(lambda c: c.status(), self._set)

    def _set(self, status: dict[str, Any]) -> None:
        self.status, self.fetched = status, time.monotonic()

    @property
    def rows(self) -> list[dict[str, Any]]:
        if not self.status:
            return []
        since = time.monotonic() - self.fetched
        rows = []
        for inc in self.status.get("incarnations", []):
            row = dict(inc)
            if row.get("uptime") is not None and row.get("state") != "exited":
                row["uptime"] = round(row["uptime"] + since, 1)
            rows.append(row)
        return rows

    def event(self, event: dict[str, Any]) -> None:
        self.events = [*self.events, event][-MAX_EVENTS:]
        self.refresh()


class Evolve(Model):
    """A handover: the form's packages, the phases as events report them, the outcome."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.add_text = ""
        self.remove_text = ""
        self.phases: list[dict[str, Any]] = []
        self.outcome: dict[str, Any] | None = None
        self.handover = ""

    @staticmethod
    def split(text: str) -> list[str]:
        return [p for p in text.replace(",", " ").split() if p]

    def start(self, add_text: str, remove_text: str = "") -> None:
        self.add_text, self.remove_text = add_text, remove_text
        add, remove = self.split(add_text), self.split(remove_text)
        if not add and not remove:
            self.error = invalid("nothing to change: give packages to add (e.g. six==1.16.0) "
                                 "and/or to remove")
            self.changed()
            return
        self._begin(lambda c: c.evolve(add, remove, timeout=HANDOVER_TIMEOUT))

    def rollback(self) -> None:
        self._begin(lambda c: c.rollback(timeout=HANDOVER_TIMEOUT))

    def _begin(self, job: Job) -> None:
        self.phases, self.outcome, self.handover = [], None, ""
        self.run(job, self._done)

    def _done(self, result: dict[str, Any]) -> None:
        self.outcome = dict(result)
        self.handover = result.get("handover", self.handover)
        self.session.audit.refresh()

    def event(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if event.get("kind") == "handover.phase":
            if data.get("handover") != self.handover:
                self.handover, self.phases = data.get("handover", ""), []
            if self.phases and self.phases[-1]["seconds"] is None:
                self.phases[-1]["seconds"] = round(event["ts"] - self.phases[-1]["ts"], 3)
            self.phases.append({"phase": data.get("phase"), "ts": event["ts"], "seconds": None})
        elif event.get("kind") == "handover.completed" and data.get("handover") == self.handover:
            if self.phases and self.phases[-1]["seconds"] is None:
                self.phases[-1]["seconds"] = round(event["ts"] - self.phases[-1]["ts"], 3)
            self.phases.append({"phase": f"completed: {data.get('outcome')}", "ts": event["ts"],
                                "seconds": 0.0})
        self.changed()


class Audit(Model):
    """The handover log (rows with per-phase durations) and the chain verification."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.rows: list[dict[str, Any]] = []
        self.verify: dict[str, Any] | None = None

    def refresh(self) -> None:
        self.run(lambda c: c.handovers(verify=True), self._set)

    def _set(self, report: dict[str, Any]) -> None:
        self.rows = list(report.get("handovers") or [])
        self.verify = report.get("verify")


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
        self.incarnations._set(status)
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
