"""View models of the supervisor's side: incarnations, evolve (handover), audit.

``Incarnations`` shows the supervisor's status (the active incarnation and
candidates, the recent poison messages and the quarantined methods) and
refreshes it on events; ``Evolve`` starts a handover (add or
remove packages) or a rollback and follows its phases as the event stream
reports them; ``Audit`` shows the handover log and its chain verification.

All three are ``delivery.Model``s: their bridge calls run on the session's
worker threads, and their state changes only in delivered callbacks or in
``event``, which the session calls on the UI thread. They know the session as
a ``ServiceHost``, never import it.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from .delivery import Host, Job, Model
from .errors import invalid

__all__ = ["Audit", "Evolve", "Incarnations", "ServiceHost"]

#: how long an evolve or rollback may take (uv builds, validation, probation)
HANDOVER_TIMEOUT = 900.0
#: how many recent events ``Incarnations`` keeps
MAX_EVENTS = 50
#: how many poison messages and quarantined methods ``Incarnations.quarantine_lines`` shows
MAX_QUARANTINE_LINES = 10


class ServiceHost(Host, Protocol):
    """The session as these models see it: a finished handover refreshes its audit."""

    audit: Audit


class Incarnations(Model):
    """The supervisor's status: incarnations (active and candidates), refreshed on events."""

    def __init__(self, session: ServiceHost) -> None:
        super().__init__(session)
        self.status: dict[str, Any] | None = None
        self.fetched = 0.0
        self.events: list[dict[str, Any]] = []

    def refresh(self) -> None:
        self.run(lambda c: c.status(), self.update)

    def update(self, status: dict[str, Any]) -> None:
        """Show ``status`` (a status reply fetched here or by the session)."""
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

    @property
    def quarantined(self) -> list[dict[str, Any]]:
        """The quarantined methods the incarnations report (empty until one does)."""
        report = (self.status or {}).get("quarantined") or {}
        return list(report.get("methods") or [])

    @property
    def poisoned(self) -> list[dict[str, Any]]:
        """The recent poison messages, newest first."""
        return list((self.status or {}).get("poisoned") or [])

    @property
    def quarantine_lines(self) -> list[str]:
        """One line per quarantined method, then one per poison message, for the window."""
        lines = [f"quarantined: {m.get('selector')} on {m.get('holder')}"
                 + (f" ({m.get('reason')})" if m.get("reason") else "")
                 for m in self.quarantined[:MAX_QUARANTINE_LINES]]
        report = (self.status or {}).get("quarantined") or {}
        if (report.get("count") or 0) > len(lines):
            lines.append(f"... {report['count'] - len(lines)} more quarantined")
        lines += [f"poison message {p.get('id')}: {p.get('selector')} to {p.get('target')}, "
                  f"{len(p.get('deaths') or [])} death(s): " + "; ".join(p.get("deaths") or [])
                  + f" [quarantine {p.get('quarantine')}]"
                  for p in self.poisoned[:MAX_QUARANTINE_LINES]]
        return lines

    def event(self, event: dict[str, Any]) -> None:
        self.events = [*self.events, event][-MAX_EVENTS:]
        self.refresh()


class Evolve(Model):
    """A handover: the form's packages, the phases as events report them, the outcome."""

    def __init__(self, session: ServiceHost) -> None:
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

    def __init__(self, session: ServiceHost) -> None:
        super().__init__(session)
        self.rows: list[dict[str, Any]] = []
        self.verify: dict[str, Any] | None = None

    def refresh(self) -> None:
        self.run(lambda c: c.handovers(verify=True), self._set)

    def _set(self, report: dict[str, Any]) -> None:
        self.rows = list(report.get("handovers") or [])
        self.verify = report.get("verify")
