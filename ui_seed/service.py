"""View models of the supervisor's side: incarnations, evolve (handover), audit.

``Incarnations`` shows the supervisor's status (the active incarnation and
candidates) and refreshes it on events; ``Evolve`` starts a handover (add or
remove packages) or a rollback and follows its phases as the event stream
reports them; ``Audit`` shows the handover log and its chain verification.

All three are ``delivery.Model``s: their bridge calls run on the session's
worker threads, and their state changes only in delivered callbacks or in
``event``, which the session calls on the UI thread.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .delivery import Job, Model
from .errors import invalid

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Audit", "Evolve", "Incarnations"]

#: how long an evolve or rollback may take (uv builds, validation, probation)
HANDOVER_TIMEOUT = 900.0
#: how many recent events ``Incarnations`` keeps
MAX_EVENTS = 50


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
