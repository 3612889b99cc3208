"""``batos evolve`` / ``batos rollback``: send the request and show its handover as it runs.

The supervisor publishes a handover's phases on its event stream (topic ``handover``:
``handover.phase``, ``handover.switched``, ``handover.rolled_back``,
``handover.completed``). ``follow`` subscribes to that stream *before* it sends the
request, so no phase is missed, then waits for the reply while it shows the events of
this request's handover up to the switch (or the failure), where the reply is given
(drain, probation and retire come after it: ``batos status`` shows them): those whose
``data.request`` is the request's id (protocol
1.0), or, from a supervisor that does not name the request yet, the first handover
whose ``build`` phase begins after the request was sent. On stderr one line per event
(the phase and the seconds since sending); with ``--json`` one JSON object per line
on stdout, each event, then the reply as the last line. At the end the human form is
``summary``'s few lines, not the two environments' package lists.

The stream is an ``ipc://`` socket on the supervisor's host (``status`` names it): a
client elsewhere cannot reach it, says so in one line and only waits for the reply.
The request is resent with the same id on a timeout (the ``Client``'s retries): the
supervisor answers a resend of a running or finished handover's id with that
handover's outcome, never starting a second one.

Threads: the request runs in a worker thread with its own ``Client`` (ZMQ sockets are
per thread); the event socket is read in the calling thread. Boundary: presentation
only: it decides nothing about the handover.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import output

__all__ = ["EventFeed", "Follower", "follow", "package_changes", "summary"]

#: how long to wait for the events the reply implies, once the reply is in
SETTLE_SECONDS = 1.0
#: the events at the reply's moment: nothing after them is shown
LAST_SHOWN = frozenset({"handover.switched", "handover.completed"})
HANDSHAKE_SECONDS = 2.0


class EventFeed:
    """A SUB socket on the supervisor's event stream, topic ``handover``; ``open`` answers
    it once the connection's handshake is done, or a reason it cannot be reached."""

    def __init__(self, sock: Any, ctx: Any) -> None:
        self._sock, self._ctx = sock, ctx

    @classmethod
    def open(cls, address: str | None) -> EventFeed | str:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        if not address:
            return "the supervisor did not name its event stream"
        scheme, _, path = address.partition("://")
        if scheme == "ipc":
            try:
                is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
            except OSError:
                is_socket = False
            if not is_socket:
                return f"its event stream {address} is not on this machine"
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"handover")
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            sock.connect(address)
            connected = bool(monitor.poll(int(HANDSHAKE_SECONDS * 1000)))
            if connected:
                recv_monitor_message(monitor)
        except zmq.ZMQError as exc:
            connected, address = False, f"{address} ({exc})"
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
        if not connected:
            sock.close(linger=0)
            ctx.term()
            return f"no connection to its event stream {address}"
        return cls(sock, ctx)

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event within ``timeout`` seconds, else None (garbled ones skipped)."""
        from bridge.codec import unpack
        from bridge.errors import ProtocolError

        if not self._sock.poll(max(0, int(timeout * 1000))):
            return None
        frames = self._sock.recv_multipart()
        try:
            event = unpack(frames[-1])
        except ProtocolError:
            return None
        return event if isinstance(event.get("kind"), str) else None

    def close(self) -> None:
        self._sock.close(linger=0)
        self._ctx.term()


class Follower:
    """Which handover events are this request's (see the module docstring)."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.handover: str | None = None

    def ours(self, event: dict[str, Any]) -> bool:
        kind = event.get("kind", "")
        data = event.get("data") or {}
        if not kind.startswith("handover.") or not isinstance(data, dict):
            return False
        hid = data.get("handover")
        if "request" in data:  # protocol 1.0: every handover event names its request
            if data["request"] != self.request_id:
                return False
            self.handover = hid or self.handover
            return True
        if self.handover is None:  # an older supervisor: the first handover begun after sending
            if kind == "handover.phase" and data.get("phase") == "build" and hid:
                self.handover = hid
                return True
            return False
        return hid in (None, self.handover)  # one handover runs at a time


def follow(args: argparse.Namespace, message: Any, connect: Callable[[], Any],
           events: str | None) -> int:
    """Send ``message`` (an evolve or rollback) through ``connect()``'s client, show its
    handover from the stream at ``events``, print the outcome; answers the exit code."""
    from bridge.errors import BridgeError, Timeout

    feed = EventFeed.open(events)
    if isinstance(feed, str):
        if not output.wants_json(args):
            print(f"batos {args.command_name}: no progress to show: {feed}; "
                  "waiting for the reply", file=sys.stderr, flush=True)
        feed = None
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            with connect() as client:
                outcome["reply"] = client.request(message)
        except BaseException as exc:  # handed to the main thread, which reports it
            outcome["error"] = exc
        finally:
            done.set()

    started = time.monotonic()
    follower = Follower(message.id)
    view = _View(args, started)
    threading.Thread(target=ask, name="batos-request", daemon=True).start()
    try:
        while not done.is_set():
            if feed is None:
                done.wait()
                break
            event = feed.next(0.1)
            if event is not None and follower.ours(event):
                view.event(event)
        reply = outcome.get("reply")
        if feed is not None and reply is not None:
            _settle(feed, follower, view, reply)
    except KeyboardInterrupt:
        hid = f" {follower.handover}" if follower.handover else ""
        return output.fail(args, "Interrupted", f"stopped waiting; the handover{hid} goes on "
                           "(see `batos status`, `batos handovers`)", code=130)
    finally:
        if feed is not None:
            feed.close()
    error = outcome.get("error")
    if isinstance(error, Timeout | BridgeError):
        return output.fail(args, type(error).__name__, str(error), code=output.EXIT_UNREACHABLE)
    if error is not None:
        raise error
    return view.reply(reply, time.monotonic() - started)


def _settle(feed: EventFeed, follower: Follower, view: _View, reply: Any) -> None:
    """After the reply: the events sent just before it (another socket, so they may
    trail it) up to the one the reply implies, for at most ``SETTLE_SECONDS`` (all of
    it only for a resend answered from the record, whose events went out long ago)."""
    result = reply.result if reply.ok and isinstance(reply.result, dict) else {}
    if reply.ok and result.get("outcome") != "switched":
        return  # nothing ran ("unchanged")
    if not reply.ok and reply.error.type != "HandoverFailed":
        return  # refused before a handover began (Busy, Unavailable, InvalidRequest)
    if follower.handover is None and isinstance(result.get("handover"), str):
        follower.handover = result["handover"]
    wanted = "handover.switched" if reply.ok else "handover.completed"
    deadline = time.monotonic() + SETTLE_SECONDS
    while wanted not in view.seen and (left := deadline - time.monotonic()) > 0:
        event = feed.next(left)
        if event is not None and follower.ours(event):
            view.event(event)


class _View:
    """What the user sees: a line per event, then the outcome."""

    def __init__(self, args: argparse.Namespace, started: float) -> None:
        self.args = args
        self.started = started
        self.seen: set[str] = set()
        self._phase: tuple[str, float] | None = None

    def event(self, event: dict[str, Any]) -> None:
        """Show ``event``, unless the reply's moment has passed: the reply is given at
        the switch (or the failure); drain, probation and retire are ``status``'s to show."""
        if self.seen & LAST_SHOWN:
            return
        self.seen.add(event["kind"])
        output.emit_line(self.args, event, self._line(event))

    def _line(self, event: dict[str, Any]) -> str:
        now = time.monotonic() - self.started
        data, kind = event.get("data") or {}, event["kind"]
        text = f"{kind.removeprefix('handover.')}"
        if kind == "handover.phase":
            text = str(data.get("phase"))
            if self._phase is not None:
                text = f"{text:<10} ({self._phase[0]} took {now - self._phase[1]:.1f}s)"
            self._phase = (str(data.get("phase")), now)
        elif kind == "handover.switched":
            text = f"switched to incarnation {data.get('new')} (env {short(data.get('env_id'))})"
        elif kind == "handover.rolled_back":
            text = f"rolled back to incarnation {data.get('to')}"
        elif kind == "handover.completed":
            text = f"completed: {data.get('outcome')}" + (
                f" in {data['failed_phase']}: {data.get('reason')}" if data.get("failed_phase") else "")
        return f"[{now:6.1f}s] {text}"

    def reply(self, reply: Any, seconds: float) -> int:
        if output.wants_json(self.args):
            print(json.dumps(output.jsonable(wire(reply))), flush=True)
        if not reply.ok:
            return output.fail(self.args, reply.error.type, reply.error.message,
                               where=reply.error.where, id=reply.id)
        if not output.wants_json(self.args):
            text = summary(self.args.command_name, reply.result, seconds)
            if text:
                print(text)
        return 0


def wire(reply: Any) -> dict[str, Any]:
    """A reply as protocol 1.0 has it: ``result`` or ``error``, never both."""
    body = {"result": reply.result} if reply.ok else {"error": reply.error.model_dump()}
    return {"v": reply.v, "id": reply.id, "ok": reply.ok, **body}


def short(env_id: Any) -> str:
    return str(env_id)[:12] if env_id else "?"


def package_changes(before: dict[str, str] | None,
                    after: dict[str, str] | None) -> list[tuple[str, str, str | None, str | None]]:
    """``(sign, name, old, new)``, sorted by name: ``+`` added, ``-`` removed, ``~`` changed."""
    before, after = before or {}, after or {}
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changes.append(("+" if old is None else "-" if new is None else "~", name, old, new))
    return changes


def summary(command: str, result: Any, seconds: float) -> str:
    """The few lines a person reads after an evolve or rollback (the reply's ``result``)."""
    if not isinstance(result, dict):
        return json.dumps(output.jsonable(result))
    if result.get("outcome") == "unchanged":
        env = result.get("env") or {}
        return f"unchanged: {result.get('message', 'nothing to do')} (env {short(env.get('id'))})"
    before, after = result.get("env_before") or {}, result.get("env_after") or {}
    total = result.get("total", seconds)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in (result.get("timings") or {}).items()
                        if isinstance(v, int | float))
    lines = [f"{result.get('outcome', 'done')}: {command} {result.get('handover', '')} in "
             f"{total:.1f}s" + (f" ({timings})" if timings else ""),
             f"env {short(before.get('id'))} -> {short(after.get('id'))}"]
    changes = package_changes(before.get("packages"), after.get("packages"))
    for sign, name, old, new in changes:
        lines.append(f"  {sign} {name} " + (new if sign == "+" else old if sign == "-"
                                             else f"{old} -> {new}"))
    if not changes:
        lines.append("  no package changed")
    lines += _validation_lines(result.get("validation"))
    lines.append("the old incarnation stays on probation; `batos status` shows the handover")
    return "\n".join(lines)


def _validation_lines(record: Any) -> list[str]:
    if not isinstance(record, dict):
        return []
    checks = record.get("checks") or {}
    passed = sum(1 for outcome in checks.values() if outcome == "ok")
    imports = record.get("imports") or {}
    counts = [f"{record.get('objects', '?')} objects", f"{record.get('methods', '?')} methods",
              f"{sum(1 for v in imports.values() if v == 'ok')}/{len(imports)} modules import",
              f"{passed}/{len(checks)} self-checks ok"]
    lines = ["validated: " + ", ".join(counts)]
    lines += [f"  warning: {w}" for w in record.get("warnings") or []]
    stale = record.get("methods_importing_removed") or []
    if stale:
        lines.append(f"  {len(stale)} method(s) still import removed packages (--force)")
    return lines


def events_address(status: Any) -> str | None:
    """The event stream's address from a ``status`` result."""
    supervisor = status.get("supervisor") if isinstance(status, dict) else None
    return supervisor.get("events") if isinstance(supervisor, dict) else None
