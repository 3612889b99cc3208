"""The handover log read back: one row per handover, the recovery decision, the report.

``summarize`` groups the entries (format: ``handover_entries``) by handover
and makes one row each: who asked for what (and the request's id: None in
logs written before it was recorded), the outcome, the phases' times, the envs
before and after; an evolve that needed no handover (``unchanged``) has no row. ``report`` is what ``batos handovers --json``
prints and the UI gets over the bridge: the rows and the chain check
(``handover_chain.verify``).

Recovery (``interrupted``) looks at the last handover only; if it has no
``completed`` entry the supervisor died inside it. Rules, first match wins:

    intent.rollback or rolled_back     -> revert: a rollback had been decided
    failed (phase other than retire)   -> revert: the new env did not prove itself
    no intent.switch                   -> revert: the old env was active; the candidate
                                          died with the supervisor
    intent.switch, no switched         -> revert: the switch is one in-memory assignment in
                                          the dead process; both envs passed validation on
                                          this image, so reverting is safe
    switched (retired or not)          -> finish: the new env passed validation and was
                                          serving; keep it, write completed (after_restart)

Recovery is idempotent: a supervisor that dies while recovering decides the
same again, since ``recovered`` alone changes nothing; ``completed`` closes it.

Boundary: reads only, so the CLI uses it with the supervisor stopped; it
decides, the supervisor acts (and writes ``recovered``/``completed`` through
the writer, ``handover_log``). A read error becomes ``HomeError``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .handover_chain import verify
from .handover_entries import (
    COMPLETED,
    FAILED,
    INTENT_ROLLBACK,
    INTENT_SWITCH,
    NOT_HANDOVERS,
    PHASE_END,
    PHASE_START,
    PHASES,
    REQUESTED,
    RETIRED,
    ROLLED_BACK,
    SWITCHED,
    read_entries,
)

__all__ = ["interrupted", "report", "summarize"]


def _env_id(env: Any) -> str | None:
    return env.get("id") if isinstance(env, dict) else env


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, list | tuple) else [value]


def _built_env(entries: list[dict[str, Any]]) -> Any:
    """The env the build phase reported (``env``; ``env_after`` accepted too)."""
    for e in entries:
        if e["event"] == PHASE_END and e["data"].get("phase") == "build":
            return e["data"].get("env") or e["data"].get("env_after")
    return None


def _grouped(path: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """The entries by handover, in the order the handovers began; records that are no
    handover (``NOT_HANDOVERS``: an evolve that changed nothing) left out."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in read_entries(path):
        groups.setdefault(entry["handover"], []).append(entry)
    return {hid: entries for hid, entries in groups.items()
            if any(e["event"] not in NOT_HANDOVERS for e in entries)}


def _row(hid: str, entries: list[dict[str, Any]], last: bool) -> dict[str, Any]:
    first = {}
    for e in entries:
        first.setdefault(e["event"], e["data"])
    asked, done, fail = first.get(REQUESTED, {}), first.get(COMPLETED), first.get(FAILED, {})
    phases: dict[str, float] = {}
    starts: dict[str, float] = {}
    for e in entries:
        name = e["data"].get("phase")
        if e["event"] == PHASE_START:
            starts[name] = e["ts"]
        elif e["event"] == PHASE_END:
            phases[name] = e["data"].get("duration", e["ts"] - starts.get(name, e["ts"]))
    done = done or {}
    phases.update(done.get("phases") or {})
    switch = first.get(INTENT_SWITCH, {})
    rollback = first.get(INTENT_ROLLBACK) or first.get(ROLLED_BACK) or {}
    return {
        "handover": hid, "kind": asked.get("kind", "evolve"), "started": entries[0]["ts"],
        "request": asked.get("request"),
        "who": asked.get("who", done.get("who")),
        "add": _as_list(asked.get("add", done.get("add"))),
        "remove": _as_list(asked.get("remove", done.get("remove"))),
        "outcome": done.get("outcome", "in progress" if last else "interrupted"),
        "after_restart": bool(done.get("after_restart")),
        "total": done.get("total", entries[-1]["ts"] - entries[0]["ts"]),
        "phases": {p: phases[p] for p in (*PHASES, *sorted(set(phases) - set(PHASES))) if p in phases},
        "served": done.get("served"), "in_flight": done.get("in_flight"), "drained": done.get("drained"),
        "env_before": done.get("env_before") or asked.get("env_before") or switch.get("env_before"),
        "env_after": done.get("env_after") or _built_env(entries) or switch.get("env_after"),
        "validation": done.get("validation"),
        "failed_phase": fail.get("phase") or rollback.get("phase") or done.get("failed_phase"),
        "reason": fail.get("reason") or rollback.get("reason") or done.get("reason"),
    }


def summarize(path: str | os.PathLike[str], last: int | None = None) -> list[dict[str, Any]]:
    """One row per handover, oldest first; ``last`` keeps the newest N."""
    groups = _grouped(path)
    ids = list(groups)
    rows = [_row(hid, groups[hid], hid == ids[-1]) for hid in ids]
    return rows[-last:] if last else rows


def interrupted(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last handover if it has no ``completed`` entry, with the recovery decision; else None."""
    groups = _grouped(path)
    if not groups:
        return None
    hid, entries = list(groups.items())[-1]
    seen = {e["event"]: e["data"] for e in entries}  # the last of each event
    if COMPLETED in seen:
        return None
    phase, phase_ended = None, False
    for e in entries:
        if e["event"] in (PHASE_START, PHASE_END):
            phase, phase_ended = e["data"].get("phase"), e["event"] == PHASE_END
    fail = seen.get(FAILED)
    if INTENT_ROLLBACK in seen or ROLLED_BACK in seen:
        action, why = "revert", "a rollback had been decided"
    elif fail is not None and fail.get("phase") != "retire":
        action, why = "revert", f"failed in {fail.get('phase')}: {fail.get('reason')}"
    elif INTENT_SWITCH not in seen:
        action, why = "revert", "never switched: the old env was serving"
    elif SWITCHED not in seen:
        action, why = "revert", "the switch was not recorded as done: nothing was routed by it"
    else:
        action, why = "finish", "switched: the new env passed validation and was serving"
    switch = seen.get(INTENT_SWITCH, {})
    before = _env_id(switch.get("env_before")) or _env_id(seen.get(REQUESTED, {}).get("env_before"))
    after = _env_id(switch.get("env_after")) or _env_id(_built_env(entries))
    return {
        "handover": hid, "seq": entries[-1]["seq"], "last_event": entries[-1]["event"],
        "phase": phase, "phase_ended": phase_ended,
        "intent_switch": INTENT_SWITCH in seen, "switched": SWITCHED in seen,
        "intent_rollback": INTENT_ROLLBACK in seen, "rolled_back": ROLLED_BACK in seen,
        "retired": RETIRED in seen, "failed": fail,
        "action": action, "why": why, "env_before": before, "env_after": after,
        "keep_env": after if action == "finish" else before,
        "old_incarnation": switch.get("old"), "new_incarnation": switch.get("new"),
    }


def report(path: str | os.PathLike[str], *, last: int | None = None, check: bool = True,
           anchor: tuple[int, str] | None = None) -> dict[str, Any]:
    """Plain data for ``batos handovers --json`` and the bridge's reply: rows, and the chain check."""
    checked = dataclasses.asdict(verify(path, anchor=anchor)) if check or anchor else None
    return {"handovers": summarize(path, last), "verify": checked}
