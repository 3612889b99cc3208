"""The texts the seed window draws, made from the view models (no Kivy).

``ui_seed/window.py`` (whose source lives in the image) lays the widgets out;
what they say comes from here, so the words are tested without a display, and
a window the image rewrites can use them too (``from ui_seed.captions import
...``). Every function is pure: it reads a model or a plain value and answers
a string, or a list of them. Called on the UI thread, like the window.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "INCARNATION_COLUMNS", "chain_text", "connection_text", "console_progress",
    "console_result", "error_text", "events_text", "evolve_status", "handover_lines",
    "incarnation_cells", "object_heading", "phase_line", "pretty", "quarantine_text",
    "supervisor_summary", "version_line",
]

SPIN = "|/-\\"
#: the incarnations table's headings, one per ``incarnation_cells`` value
INCARNATION_COLUMNS = ("id", "role", "state", "pid", "env", "uptime", "served", "packages")


def error_text(model: Any) -> str:
    """A model's error as one line, or ""."""
    return model.error.text if model.error is not None else ""


def pretty(value: Any) -> str:
    """A value as indented JSON (what JSON cannot say, as text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def connection_text(session: Any) -> str:
    """The endpoint, the supervisor's state and where the window came from."""
    return session.endpoint + "  " + session.state + ("  (window from " + session.source + ")")


def object_heading(view: Any) -> str:
    """The browser's heading: the object's label, uuid and names."""
    return view.label + "   " + view.uuid + "   names: " + ", ".join(view.names)


def console_progress(console: Any) -> str:
    """A spinner and what the console is waiting for, with the seconds so far."""
    elapsed = console.elapsed()
    spin = SPIN[int(elapsed * 4) % len(SPIN)]
    doing = ("the mind is writing " + repr(console.selector) + " (doesNotUnderstand:)"
             if console.synthesizing else "sending")
    return spin + " " + doing + "... " + str(round(elapsed, 1)) + "s"


def console_result(last: dict[str, Any]) -> str:
    """A console entry: the message sent, then its result or error, synthesis and verdict."""
    lines = [last["receiver"] + " " + last["selector"] + " " + json.dumps(last["args"])
             + "   (" + str(last["seconds"]) + "s)"]
    if last["error"] is not None:
        lines.append("ERROR " + last["error"].text)
    else:
        lines.append(pretty(last["result"]))
    if last["synthesized"]:
        lines.append("synthesized by doesNotUnderstand:")
    if last["verdict"] is not None:
        lines.append("crucible verdict: " + pretty(last["verdict"]))
    return "\n".join(lines)


def version_line(entry: dict[str, Any]) -> str:
    """A method version: its number, author and reason."""
    return ("v" + str(entry["version"]) + "  by " + str(entry.get("author")) + "  "
            + str(entry.get("reason") or ""))


def supervisor_summary(status: dict[str, Any]) -> str:
    """The supervisor's state, the active incarnation, messages served, a handover's phase."""
    handover = status.get("handover")
    return ("supervisor " + str(status.get("state")) + "   active " + str(status.get("active"))
            + "   served " + str(status.get("served"))
            + ("   handover " + str(handover.get("phase")) if handover else ""))


def incarnation_cells(inc: dict[str, Any]) -> list[str]:
    """One incarnation's row, in ``INCARNATION_COLUMNS`` order."""
    packages = inc.get("packages") or {}
    return [str(value) for value in (
        inc.get("id"), inc.get("role"), inc.get("state"), inc.get("pid"), inc.get("env_id"),
        inc.get("uptime"), inc.get("served"),
        str(len(packages)) + " (python " + str(inc.get("python")) + ")")]


def quarantine_text(lines: list[str]) -> str:
    """The quarantined methods and poison messages, or that there are none."""
    return "\n".join(lines) if lines else "quarantined: none"


def events_text(events: list[dict[str, Any]]) -> str:
    """The last six events, one line each."""
    recent = ["  " + e.get("kind", "?") + " " + json.dumps(e.get("data") or {})[:100]
              for e in events[-6:]]
    return "events:\n" + "\n".join(recent) if recent else "events: none yet"


def evolve_status(evolve: Any) -> str:
    """A handover running, its outcome and timings, or the error."""
    if evolve.busy:
        return "handover running..."
    if evolve.outcome is not None:
        return ("outcome: " + str(evolve.outcome.get("outcome")) + "  "
                + json.dumps(evolve.outcome.get("timings") or {})[:200])
    return error_text(evolve)


def phase_line(phase: dict[str, Any]) -> str:
    """A handover phase and how long it took ("..." while it runs)."""
    took = "..." if phase["seconds"] is None else str(phase["seconds"]) + "s"
    return str(phase["phase"]) + "   " + took


def chain_text(check: dict[str, Any]) -> str:
    """The handover log's chain verification."""
    return ("chain OK: " if check.get("ok") else "CHAIN BROKEN: ") + str(check.get("reason"))


def handover_lines(entry: dict[str, Any]) -> tuple[str, str]:
    """A handover of the log: its summary line, then its phases and reason."""
    phases = ", ".join(name + " " + str(round(seconds, 2)) + "s"
                       for name, seconds in (entry.get("phases") or {}).items())
    summary = (str(entry.get("handover")) + "  " + str(entry.get("kind")) + "  "
               + str(entry.get("outcome")) + "  total " + str(round(entry.get("total") or 0, 2))
               + "s" + "  by " + str(entry.get("who")))
    detail = ("    " + (phases or "no phases")
              + ("   reason: " + str(entry.get("reason")) if entry.get("reason") else ""))
    return summary, detail
