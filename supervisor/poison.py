"""Poison messages: which requests were in flight when incarnations died, and the verdicts.

Pure bookkeeping beside the routing table: no sockets and no clock of its own
(the loop passes ``now``), so every rule is unit-tested without processes.

* A *death* counts against the requests in flight on an incarnation that ended
  without being asked to: an exit (a crash, a signal) or a kill after missed
  heartbeats. A start failure has nothing in flight; an exit the supervisor
  asked for (``Stop``) counts against nothing.
* Unattributed: every request in flight gets the death. A request that was in
  flight at ``max_deaths`` (2) deaths is *poisoned*: answered ``PoisonMessage``
  (target, selector, the exit codes and signals seen) and never sent again.
  Its neighbours get one death each and are retried; the routing table sends
  such *suspects* one at a time, so an innocent caught beside a poison message
  at its first death is not beside it at the second.
* Attributed: the incarnation said, with ``Suspect``, which request it may die
  of (a message over its budget). Then the death is that request's alone: it is
  poisoned at once (the incarnation measured it; a retry would only burn another
  incarnation and another budget), and the others in flight get nothing.
* A death whose cause is found and answered is *explained*: it does not count
  toward the restart intensity (``RestartPolicy``), and earlier deaths of a
  poisoned request are pardoned, because answering it ends the crash loop.
* ``Quarantine``: each poisoned request's method is to be marked quarantined
  by the next ready incarnation; ``quarantines_due`` hands each record to an
  incarnation once, to at most ``MAX_QUARANTINE_SENDS`` of them, until a
  ``Ready``/``Heartbeat`` lists its request id (``report``).

Records are bounded (deaths of ``keep_deaths`` ids, ``keep_poisoned`` poisoned
requests, whose resend by id is answered with the same ``PoisonMessage`` and
never run). They live in the supervisor's memory: a supervisor restart forgets
them, and the quarantined method then answers ``Quarantined`` from the image.
"""

from __future__ import annotations

import signal
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["MAX_QUARANTINE_SENDS", "Death", "Judgement", "PoisonLedger", "Poisoned", "exit_cause"]

#: how many incarnations a Quarantine is sent to before the supervisor gives up on it
MAX_QUARANTINE_SENDS = 3
#: how many poisoned requests ``status`` lists (the newest)
STATUS_RECENT = 20
#: the most quarantined methods kept from one report
MAX_REPORTED = 100
#: the longest reason text kept from an incarnation's Suspect
_MAX_REASON = 500


def exit_cause(code: int | None, why: str = "") -> str:
    """``-11 SIGSEGV``, ``exit 3``, ``-9 SIGKILL (missed heartbeats for 5.1s)``."""
    if code is None:
        text = "exit code unknown"
    elif code < 0:
        try:
            text = f"{code} {signal.Signals(-code).name}"
        except ValueError:
            text = f"{code} (signal {-code})"
    else:
        text = f"exit {code}"
    return f"{text} ({why})" if why else text


@dataclass(frozen=True)
class Death:
    incarnation: str
    cause: str
    #: the loop's monotonic clock
    at: float
    #: the incarnation's own reason when it named this request (``Suspect``)
    blamed: str = ""

    def describe(self) -> str:
        return f"{self.incarnation}: {self.cause}" + (f", {self.blamed}" if self.blamed else "")


@dataclass
class Poisoned:
    """A request answered ``PoisonMessage``: what it asked, its deaths, its quarantine."""

    request_id: str
    target: str
    selector: str
    deaths: tuple[Death, ...]
    at: float
    #: incarnations a Quarantine for it was sent to, and whether one reported it marked
    sent_to: list[str] = field(default_factory=list)
    reported: bool = False

    @property
    def message(self) -> str:
        what = f"{self.selector!r} sent to {self.target!r} (request {self.request_id})"
        last = self.deaths[-1]
        if last.blamed:
            story = f"ended its incarnation {last.describe()}"
        else:
            story = (f"was in flight when its incarnation died {len(self.deaths)} times ("
                     + "; ".join(d.describe() for d in self.deaths) + ")")
        return (f"{what} {story}. It is a poison message: answered, never run again, and the "
                "method it called is quarantined until a person releases it (batos status; "
                "batos quarantine list / release)")

    @property
    def reason(self) -> str:
        """The quarantine's reason, for the method's history."""
        return (f"request {self.request_id} ({self.selector} to {self.target}) killed its "
                "incarnation: " + "; ".join(d.describe() for d in self.deaths))

    @property
    def quarantine(self) -> str:
        if self.reported:
            return "reported"
        if not self.sent_to:
            return "waiting for a ready incarnation"
        if len(self.sent_to) >= MAX_QUARANTINE_SENDS:
            return f"not reported by {len(self.sent_to)} incarnations: given up"
        return f"sent to {self.sent_to[-1]}"

    def summary(self, now: float) -> dict[str, Any]:
        return {"id": self.request_id, "target": self.target, "selector": self.selector,
                "deaths": [d.describe() for d in self.deaths], "ago": round(now - self.at, 3),
                "quarantine": self.quarantine}


@dataclass
class Judgement:
    """What one death decided."""

    #: answered ``PoisonMessage``, taken out of flight, never sent again
    poisoned: list[Poisoned] = field(default_factory=list)
    #: the death's cause is known and answered: not a crash toward the restart intensity
    explained: bool = False
    #: when earlier deaths of the poisoned requests happened: take them out of the intensity
    pardoned: list[float] = field(default_factory=list)


class _Entry(Protocol):
    request_id: str
    target: str
    selector: str


class PoisonLedger:
    """Deaths by request id, the poisoned requests, what incarnations named and reported."""

    def __init__(self, *, max_deaths: int = 2, keep_deaths: int = 10_000,
                 keep_poisoned: int = 1_000) -> None:
        if max_deaths < 1:
            raise ValueError(f"max_deaths must be at least 1, got {max_deaths}")
        self.max_deaths = max_deaths
        self.keep_deaths = keep_deaths
        self.keep_poisoned = keep_poisoned
        self.deaths: OrderedDict[str, list[Death]] = OrderedDict()
        self.poisoned: OrderedDict[str, Poisoned] = OrderedDict()
        self.announced: dict[str, dict[str, str]] = {}
        #: the last list of quarantined methods an incarnation reported (None: never)
        self.quarantined: dict[str, Any] | None = None

    # --- what the routing table asks ------------------------------------------------

    def suspected(self, request_id: str) -> bool:
        """The request was in flight at a death before: it is retried one at a time."""
        return request_id in self.deaths

    def verdict(self, request_id: str) -> Poisoned | None:
        return self.poisoned.get(request_id)

    def completed(self, request_id: str) -> None:
        """A reply came: whatever died while it was in flight, it was not this request; and a
        ``Suspect`` for it is void (the budget's soft stop worked: it was answered)."""
        self.deaths.pop(request_id, None)
        for named in self.announced.values():
            named.pop(request_id, None)

    # --- what incarnations say ------------------------------------------------------

    def announce(self, incarnation: str, request_id: str, reason: str) -> None:
        """``Suspect``: if ``incarnation`` dies now, ``request_id`` is why."""
        mine = self.announced.setdefault(incarnation, {})
        if request_id not in mine and len(mine) >= 64:
            mine.pop(next(iter(mine)))
        mine[request_id] = reason[:_MAX_REASON]

    def report(self, incarnation: str, methods: list[Any], now: float) -> None:
        """A ``Ready``/``Heartbeat`` listed the image's quarantined methods (models or dicts)."""
        rows = [m if isinstance(m, dict) else m.model_dump() for m in methods]
        self.quarantined = {"reported_by": incarnation, "count": len(rows), "at": now,
                            "methods": rows[:MAX_REPORTED]}
        for row in rows:
            record = self.poisoned.get(str(row.get("request") or ""))
            if record is not None:
                record.reported = True

    # --- deaths ---------------------------------------------------------------------

    def judge(self, incarnation: str, lost: Iterable[_Entry], cause: str | None,
              now: float) -> Judgement:
        """``incarnation`` ended with ``lost`` in flight; ``cause`` None: it was asked to
        (nothing counts). Poisoned requests are in the answer; the caller requeues the rest."""
        announced = self.announced.pop(incarnation, None) or {}
        if cause is None:
            return Judgement()
        lost = list(lost)
        judgement = Judgement(explained=bool(announced))
        for entry in lost:
            rid = entry.request_id
            if announced and rid not in announced:
                continue  # the incarnation named another request: this one is innocent
            death = Death(incarnation, cause, now, blamed=announced.get(rid, ""))
            deaths = self.deaths.pop(rid, [])
            deaths.append(death)
            if announced or len(deaths) >= self.max_deaths:
                judgement.poisoned.append(self._poison(entry, tuple(deaths), now))
                judgement.pardoned += [d.at for d in deaths[:-1]]
            else:
                self.deaths[rid] = deaths
                while len(self.deaths) > self.keep_deaths:
                    self.deaths.popitem(last=False)
        if judgement.poisoned:
            judgement.explained = True
        judgement.pardoned = sorted(set(judgement.pardoned) - {now})
        return judgement

    def _poison(self, entry: _Entry, deaths: tuple[Death, ...], now: float) -> Poisoned:
        record = Poisoned(entry.request_id, entry.target, entry.selector, deaths, now)
        self.poisoned[entry.request_id] = record
        while len(self.poisoned) > self.keep_poisoned:
            self.poisoned.popitem(last=False)
        return record

    # --- quarantine -----------------------------------------------------------------

    def quarantines_due(self, incarnation: str) -> list[Poisoned]:
        """Records to send ``incarnation`` a ``Quarantine`` for (marked as sent to it)."""
        due = [p for p in self.poisoned.values()
               if not p.reported and incarnation not in p.sent_to
               and len(p.sent_to) < MAX_QUARANTINE_SENDS]
        for record in due:
            record.sent_to.append(incarnation)
        return due

    def quarantines_sent(self, incarnation: str) -> list[Poisoned]:
        """Records a ``Quarantine`` went to ``incarnation`` for, not yet reported done."""
        return [p for p in self.poisoned.values()
                if not p.reported and incarnation in p.sent_to]

    def recent(self, now: float, limit: int = STATUS_RECENT) -> list[dict[str, Any]]:
        """The newest poisoned requests, newest first (for ``status``)."""
        newest = list(self.poisoned.values())[-limit:]
        return [p.summary(now) for p in reversed(newest)]

    def reported(self, now: float) -> dict[str, Any] | None:
        """The last quarantined list an incarnation reported (for ``status``); None: none did."""
        if self.quarantined is None:
            return None
        return {**{k: v for k, v in self.quarantined.items() if k != "at"},
                "ago": round(now - self.quarantined["at"], 3)}
