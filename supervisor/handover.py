"""The Ship of Theseus: one evolve (or rollback) as a validated, audited handover.

A ``Handover`` is a state machine the supervisor's loop advances (``step``)
and feeds (``on_ready``, ``on_validated``, ``on_probe``, ``on_exit``); it
never blocks the loop (the uv build runs in the supervisor's worker thread).
It acts only through its ``HandoverHost`` (the small interface below, which
``supervisor.evolution.Evolution`` implements over the pool, the routing table
and the sockets): it never sees the supervisor. Only one runs at a time: the
host holds it as ``Evolution.current``, the named lock for evolve/rollback; a
second request gets ``Busy``.

Phases, each logged to the handover log with its timing:

    build      the new env spec (current + changes) built by uv (or reused)
    incarnate  a candidate incarnation starts in it; no client traffic
    validate   the candidate validates the image (``Validate`` ->
               ``Validated``: imports, every reachable object unpickled,
               graph digest, Genesis invariants, the image's self-checks)
               and answers probe requests exactly as the live incarnation
    switch     intent logged (fsync), one assignment in the routing table,
               current-env.json rewritten, switched logged; the evolve
               request is answered here
    drain      the old incarnation finishes what it has in flight
    probation  the old one stays alive; if the new one dies, misses
               heartbeats or fails a health probe, switch back (rollback)
    retire     the old one is stopped; old envs beyond N generations removed

Any failure before the switch stops the candidate; the old incarnation never
stopped serving. The reply names the phase and why.

The reply is given once (``reply``: the desk gives it to every asker of the
request id) and logged first (``answered``; a resend's reply is rebuilt from the
log: ``handover_requests``). Events (topic ``handover``), each with ``handover``
and ``request`` (the starting request's id): ``handover.phase`` (phase),
``.switched`` (old, new, env_id), ``.rolled_back`` (to, reason), ``.completed``
(outcome, failed_phase, reason).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from envs import EnvSpec

from .config import Config
from .errors import SupervisorError
from .handover_entries import ANSWERED
from .handover_log import HandoverLog
from .incarnations import EnvInfo

__all__ = ["PROBES", "Handover", "HandoverFailed", "HandoverHost"]

log = logging.getLogger("batos.supervisor.handover")

#: read-only messages both incarnations must answer identically before the switch
PROBES: list[tuple[str, str, list[Any]]] = [
    ("genesis", "printString", []),
    ("genesis", "describe", []),
    ("traits", "slotNames", []),
    ("true", "printString", []),
    ("block", "maxIterations", []),
]


class HandoverFailed(SupervisorError):
    """A handover failed in ``phase`` for ``reason`` (the evolve reply's error type)."""

    def __init__(self, phase: str, reason: str) -> None:
        super().__init__(f"{phase}: {reason}")
        self.phase = phase
        self.reason = reason


class HandoverHost(Protocol):
    """What a ``Handover`` may ask and do; ``supervisor.evolution.Evolution`` provides it."""

    config: Config

    def env(self) -> EnvInfo | None:
        """The active incarnation's environment."""

    def active(self) -> str | None:
        """The incarnation new requests go to."""

    def served(self) -> int:
        """Requests answered so far, all incarnations together."""

    def in_flight(self, ident: str) -> int:
        """Requests in flight on ``ident``."""

    def publish(self, kind: str, **data: Any) -> None: ...

    def start_build(self, handover: Handover) -> None:
        """Build ``handover.spec_after`` off the loop; answer with ``built``/``build_failed``."""

    def spawn_candidate(self, env: EnvInfo) -> str: ...

    def send_validate(self, ident: str, handover: str, packages: list[str],
                      removed: list[str]) -> None: ...

    def send_probe(self, ident: str, rid: str, target: str, selector: str,
                   args: list[Any]) -> None: ...

    def switch_to(self, candidate: str, env: EnvInfo) -> str | None:
        """Route new requests to ``candidate``; answers the previous active incarnation."""

    def switch_back(self, old: str | None, env: EnvInfo | None, *, failed: str | None) -> None: ...

    def retire(self, ident: str) -> None: ...

    def discard(self, ident: str) -> None: ...

    def prune_envs(self) -> None: ...

    def ended(self, handover: Handover) -> None:
        """``handover`` completed: the lock is free."""


@dataclass
class Handover:
    host: HandoverHost
    log: HandoverLog
    kind: str  # "evolve" | "rollback"
    spec_after: EnvSpec
    reply: Callable[[bool, dict[str, Any]], None]
    who: str = ""
    #: the id of the evolve/rollback request that started it ("" when none did)
    request: str = ""
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    removed_modules: list[str] = field(default_factory=list)
    force: bool = False
    offline: bool | None = None
    probation: float = 30.0
    id: str = field(default_factory=lambda: "h-" + uuid.uuid4().hex[:12])
    phase: str = "build"
    started: float = field(default_factory=time.monotonic)
    phase_started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    env_before: EnvInfo | None = None
    env_after: EnvInfo | None = None
    old: str | None = None
    candidate: str | None = None
    validation: dict[str, Any] | None = None
    probes: dict[str, tuple[str, int]] = field(default_factory=dict)
    probe_results: dict[int, dict[str, Any]] = field(default_factory=dict)
    served_before: int = 0
    drained: int = 0
    health_probe: str | None = None
    #: every probe id this handover sent: their replies are its own, not a client's
    probes_sent: set[str] = field(default_factory=set)
    health_sent: float = 0.0
    #: the reply given: (ok, body); None until then
    answered: tuple[bool, dict[str, Any]] | None = None
    done: bool = False
    outcome: str = ""

    # --- phase bookkeeping ----------------------------------------------------------

    def begin(self) -> None:
        self.env_before = self.host.env()
        self.old = self.host.active()
        self.served_before = self._served()
        self.log.append(self.id, "requested", kind=self.kind, request=self.request,
                        who=self.who, add=self.add, remove=self.remove, force=self.force,
                        env_before=self.env_before.describe() if self.env_before else None,
                        spec_after=self.spec_after.to_dict())
        self._enter("build")
        self.host.start_build(self)

    def _enter(self, phase: str) -> None:
        self.phase, self.phase_started = phase, time.monotonic()
        self.log.append(self.id, "phase.start", phase=phase)
        log.info("handover phase", extra={"handover": self.id, "phase": phase})
        self._publish("handover.phase", phase=phase)

    def _publish(self, kind: str, **data: Any) -> None:
        self.host.publish(kind, handover=self.id, request=self.request, **data)

    def _end(self, **details: Any) -> None:
        seconds = round(time.monotonic() - self.phase_started, 4)
        self.timings[self.phase] = seconds
        self.log.append(self.id, "phase.end", phase=self.phase, duration=seconds, **details)

    def _served(self) -> int:
        return self.host.served()

    # --- events from the supervisor -------------------------------------------------

    def built(self, env: EnvInfo) -> None:
        self.env_after = env
        self._end(env=env.describe())
        self._enter("incarnate")
        self.candidate = self.host.spawn_candidate(env)

    def build_failed(self, exc: Exception) -> None:
        self.fail("build", str(exc))

    def on_ready(self, ident: str) -> None:
        if ident != self.candidate or self.phase != "incarnate":
            return
        self._end(candidate=ident)
        self._enter("validate")
        names = self.env_after.requirement_names if self.env_after else []
        self.host.send_validate(ident, self.id, names, self.removed_modules)
        targets = [("candidate", ident)] + ([("old", self.old)] if self.old else [])
        for index, (target, selector, args) in enumerate(PROBES):
            for side, inc in targets:
                rid = f"probe-{self.id}-{index}-{side}"
                self.probes[rid] = (side, index)
                self.probes_sent.add(rid)
                self.host.send_probe(inc, rid, target, selector, args)

    def on_validated(self, ident: str, ok: bool, record: dict[str, Any]) -> None:
        if ident == self.candidate and self.phase == "validate":
            self.validation = dict(record, ok=ok)

    def owns_probe(self, rid: str) -> bool:
        """``rid`` is the id of a probe this handover sent (a client's id never is: the
        match is exact, so a client may use any id, ``probe-...`` included)."""
        return rid in self.probes_sent

    def on_probe(self, rid: str, reply: dict[str, Any]) -> bool:
        """A reply to one of this handover's probes; True if it was one."""
        if rid == self.health_probe:
            self.health_probe = None
            if not reply.get("ok"):
                self.rollback(f"health probe failed: {reply.get('error')}")
            return True
        if rid not in self.probes:
            return False
        side, index = self.probes.pop(rid)
        self.probe_results.setdefault(index, {})[side] = reply
        return True

    def on_exit(self, ident: str, code: int | None) -> bool:
        """An incarnation exited; True when this handover dealt with it."""
        if self.done or ident != self.candidate:
            return False
        if self.phase in ("incarnate", "validate"):
            self.fail(self.phase, f"the candidate incarnation exited with {code}")
            return True
        if self.phase in ("switch", "drain", "probation"):
            self.rollback(f"the new incarnation exited with {code} during {self.phase}")
            return self.host.active() is not None
        return False

    # --- the loop's tick ------------------------------------------------------------

    def step(self, now: float) -> None:
        if self.done:
            return
        elapsed = now - self.phase_started
        cfg = self.host.config
        if self.phase == "incarnate" and elapsed > cfg.start_timeout:
            self.fail("incarnate", f"the candidate sent no Ready within {cfg.start_timeout:g}s")
        elif self.phase == "validate":
            if self.validation is not None and not self.probes:
                self._judge()
            elif elapsed > cfg.validate_timeout:
                self.fail("validate", f"no validation record within {cfg.validate_timeout:g}s")
        elif self.phase == "drain":
            if not self.old or self.host.in_flight(self.old) == 0 or elapsed > cfg.stop_grace:
                self._end(drained=self.drained, left=self.host.in_flight(self.old) if self.old else 0)
                self._enter("probation")
        elif self.phase == "probation":
            self._probation(now, elapsed)

    def _judge(self) -> None:
        record = self.validation or {}
        failures = list(record.get("failures", []))
        if not record.get("ok"):
            failures = failures or ["the candidate reported a failed validation"]
        warnings = []
        for index, sides in sorted(self.probe_results.items()):
            if "old" in sides and sides["old"] != sides["candidate"]:
                target, selector, _ = PROBES[index]
                # with --force the operator accepts that removing a package changes answers
                (warnings if self.force else failures).append(
                    f"probe {target} {selector} answered differently: "
                    f"{sides['candidate']!r} instead of {sides['old']!r}")
            elif "old" not in sides and not sides["candidate"].get("ok"):
                failures.append(f"probe {PROBES[index][0]} {PROBES[index][1]} failed")
        stale = record.get("methods_importing_removed") or []
        if stale and not self.force:
            failures.append(f"{len(stale)} method(s) still import removed packages: "
                            + "; ".join(f"{m.get('slot')} on {m.get('object')}" for m in stale[:5])
                            + " (redefine them, or evolve with --force)")
        if failures:
            self.fail("validate", "; ".join(failures))
            return
        if warnings:
            record = self.validation = dict(record, warnings=warnings)
        self._end(validation=record)
        self._switch()

    def _switch(self) -> None:
        assert self.candidate is not None
        assert self.env_after is not None
        self._enter("switch")
        self.log.append(self.id, "intent.switch", old=self.old, new=self.candidate,
                        env_before=self.env_before.id if self.env_before else None,
                        env_after=self.env_after.id)
        previous = self.host.switch_to(self.candidate, self.env_after)
        self._publish("handover.switched", old=previous, new=self.candidate,
                      env_id=self.env_after.id)
        self.drained = self.host.in_flight(previous) if previous else 0
        self.log.append(self.id, "switched", old=previous, new=self.candidate,
                        in_flight_on_old=self.drained)
        self._end(in_flight_on_old=self.drained)
        self._answer(True, {"handover": self.id, "outcome": "switched", "phase": "switch",
                            **self.summary()})
        self._enter("drain")

    def _probation(self, now: float, elapsed: float) -> None:
        if elapsed >= self.probation:
            self._end()
            self._retire()
            return
        if self.health_probe is not None and now - self.health_sent > self.host.config.heartbeat_timeout:
            self.rollback("health probe unanswered")
        elif self.health_probe is None and now - self.health_sent >= 1.0:
            self.health_probe = f"health-{self.id}-{int(now * 1000)}"
            self.health_sent = now
            self.probes_sent.add(self.health_probe)
            self.host.send_probe(self.candidate, self.health_probe, "genesis", "printString", [])

    def _retire(self) -> None:
        self._enter("retire")
        self.log.append(self.id, "intent.retire", old=self.old)
        if self.old:
            self.host.retire(self.old)
        self.log.append(self.id, "retired", old=self.old)
        self._end()
        self.host.prune_envs()
        self._complete("completed")

    # --- endings --------------------------------------------------------------------

    def rollback(self, reason: str) -> None:
        if self.done:
            return
        log.error("handover %s rolling back: %s", self.id, reason)
        self.log.append(self.id, "intent.rollback", reason=reason, to=self.old)
        self.host.switch_back(self.old, self.env_before, failed=self.candidate)
        self._publish("handover.rolled_back", to=self.host.active(), reason=reason)
        self.log.append(self.id, "rolled_back", reason=reason, to=self.old)
        self._complete("rolled_back", failed_phase=self.phase, reason=reason)

    def fail(self, phase: str, reason: str) -> None:
        if self.done:
            return
        log.error("handover %s failed in %s: %s", self.id, phase, reason)
        self.timings[phase] = round(time.monotonic() - self.phase_started, 4)
        self.log.append(self.id, "failed", phase=phase, reason=reason)
        if self.candidate:
            self.host.discard(self.candidate)
        self._answer(False, {"handover": self.id, "phase": phase, "reason": reason})
        self._complete("failed", failed_phase=phase, reason=reason)

    def _answer(self, ok: bool, body: dict[str, Any]) -> None:
        """Record the reply (the log first: a resend after a crash gets what this one
        would have), then give it."""
        if self.answered is None:
            self.answered = (ok, body)
            total = body.get("total", round(time.monotonic() - self.started, 4))
            self.log.append(self.id, ANSWERED, request=self.request, ok=ok, total=total)
            self.reply(ok, body)

    def summary(self) -> dict[str, Any]:
        return {
            "env_before": self.env_before.describe() if self.env_before else None,
            "env_after": self.env_after.describe() if self.env_after else None,
            "timings": dict(self.timings),
            "validation": self.validation,
            "total": round(time.monotonic() - self.started, 4),
        }

    def _complete(self, outcome: str, **extra: Any) -> None:
        self.done, self.outcome = True, outcome
        self.timings.setdefault(self.phase, round(time.monotonic() - self.phase_started, 4))
        self.log.append(self.id, "completed", outcome=outcome, add=self.add, remove=self.remove,
                        who=self.who, served=self._served() - self.served_before,
                        drained=self.drained, phases=dict(self.timings),
                        total=round(time.monotonic() - self.started, 4),
                        env_before=self.env_before.describe() if self.env_before else None,
                        env_after=self.env_after.describe() if self.env_after else None,
                        validation=self.validation, **extra)
        self._publish("handover.completed", outcome=outcome, **extra)
        self.host.ended(self)
