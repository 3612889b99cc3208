"""View models of the image's objects: the object browser, the console, method history.

``Browser`` shows one object's slots (``load_object``: describe it, read its
data slots, name the objects they refer to) and follows references;
``Console`` sends a message and shows the result, or the error, and when the
receiver did not understand it, the synthesized method's verdict; ``History``
lists a method's versions, diffs two and rolls back to one.

All three are ``delivery.Model``s: their bridge calls run on the session's
worker threads and their state changes only in delivered callbacks (UI
thread). Input they can refuse before any call becomes ``errors.invalid``.
They know the session as a ``BrowseHost``, never import it.
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge import Client, RemoteError

from .delivery import Host, Model
from .errors import UiError, invalid

__all__ = [
    "BrowseHost",
    "Browser",
    "Console",
    "History",
    "ObjectView",
    "SlotView",
    "diff_versions",
    "load_object",
    "parse_args",
    "refs_in",
    "render_value",
]

#: how long a console send may take: a doesNotUnderstand: may ask the mind
SEND_TIMEOUT = 600.0
#: how many referenced objects ``load_object`` names (one describe each)
MAX_REFS = 20


class BrowseHost(Host, Protocol):
    """The session as the browser sees it: it also hears of the first object shown."""

    def first_data(self, ok: bool) -> None:
        """The first view arrived (``ok``) or failed."""
        ...


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

    def __init__(self, session: BrowseHost) -> None:
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

    def __init__(self, session: BrowseHost) -> None:
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

    def __init__(self, session: BrowseHost) -> None:
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
