"""``batos status``'s short form: the supervisor's status reply as a dozen lines.

``short_status(result)`` shows the state (and why, when not serving), the active env,
one row per incarnation (id, role, state, pid, env, requests served, busy, uptime),
restarts, the running handover, the handover log's head (the anchor ``batos handovers
--verify --anchor`` checks against), recent poison messages and quarantined methods
when there are any, and the endpoints. Everything else (packages, routing, ZEO,
confinement, vLLM, the image's entropy) is in ``--verbose`` and ``--json``.

Boundary: pure formatting of the reply's data; a field an older supervisor lacks is
shown as ``?``, never an error.
"""

from __future__ import annotations

from typing import Any

__all__ = ["duration", "short_status"]


def duration(seconds: Any) -> str:
    """``42s``, ``5m 03s``, ``2h 07m``, ``3d 04h``."""
    if not isinstance(seconds, int | float):
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{s}s" if seconds >= 1 else f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def short_status(status: Any) -> str:
    if not isinstance(status, dict):
        return repr(status)
    sup = status.get("supervisor") or {}
    state = str(status.get("state", "?"))
    if status.get("reason") and state != "serving":
        state += f" ({status['reason']})"
    lines = [f"state:       {state}",
             f"supervisor:  pid {sup.get('pid', '?')}, up {duration(sup.get('uptime'))}, "
             f"home {sup.get('home', '?')}"]
    env = status.get("env")
    if isinstance(env, dict):
        lines.append(f"env:         {env.get('id', '?')} ({len(env.get('packages') or {})} "
                     "packages)")
    else:
        lines.append("env:         none")
    lines += _members(status)
    restarts = status.get("restarts") or {}
    degraded = ", DEGRADED" if restarts.get("degraded") else ""
    lines.append(f"restarts:    {restarts.get('recent', '?')} recent, "
                 f"{restarts.get('total', '?')} total{degraded}")
    running = status.get("handover")
    if isinstance(running, dict):
        lines.append(f"handover:    {running.get('id')} ({running.get('kind')}) in phase "
                     f"{running.get('phase')} for {duration(running.get('elapsed'))}, asked by "
                     f"{running.get('who') or '?'}")
    else:
        lines.append("handover:    none running")
    head = (status.get("handover_log") or {}).get("head")
    if isinstance(head, list | tuple) and len(head) == 2:
        seq, digest = head
        shown = "empty" if seq < 0 else f"seq {seq}, sha256 {str(digest)[:16]}"
        lines.append(f"handover log: {shown} (history: batos handovers)")
    lines += _troubles(status)
    endpoints = ", ".join(sup.get("endpoints") or []) or "?"
    lines.append(f"endpoints:   {endpoints}; events {sup.get('events', '?')}")
    return "\n".join(lines)


def _members(status: dict[str, Any]) -> list[str]:
    incarnations = status.get("incarnations") or []
    if not incarnations:
        return ["incarnations: none"]
    rows = [["ID", "ROLE", "STATE", "PID", "ENV", "SERVED", "BUSY", "LANES", "UP"]]
    for inc in incarnations:
        mark = "*" if inc.get("id") == status.get("active") else ""
        rows.append([f"{inc.get('id', '?')}{mark}", str(inc.get("role", "?")),
                     str(inc.get("state", "?")), str(inc.get("pid", "?")),
                     str(inc.get("env_id", "?"))[:16], str(inc.get("served", "?")),
                     str(inc.get("busy", "?")), _lanes(inc), duration(inc.get("uptime"))])
    return ["incarnations: (* serves new requests)", *_table(rows)]


def _lanes(inc: dict[str, Any]) -> str:
    """Attached lanes of all (``4/4``), ``-`` for none (requests go to main), ``?`` unknown."""
    lanes, attached = inc.get("lanes"), inc.get("attached")
    if not isinstance(lanes, int) or not isinstance(attached, list):
        return "?"
    return f"{len(attached)}/{lanes}" if lanes else "-"


def _troubles(status: dict[str, Any]) -> list[str]:
    lines = []
    poisoned = status.get("poisoned") or []
    if poisoned:
        lines.append(f"poisoned:    {len(poisoned)} recent request(s) killed incarnations "
                     "(batos status --verbose)")
    quarantined = status.get("quarantined") or {}
    count = quarantined.get("count") if isinstance(quarantined, dict) else None
    if count:
        lines.append(f"quarantined: {count} method(s) (batos quarantine list)")
    return lines
