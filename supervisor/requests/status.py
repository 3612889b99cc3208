"""Requests the supervisor answers itself, without an incarnation.

``ping``: ``{"pong": true, "pid", "uptime", "state"}``; answered even when
degraded, so it tells "the supervisor is up" apart from "the image is served".

``status``: the whole picture for operators and UIs: the supervisor (pid,
uptime, home, endpoints, state and why), the active incarnation and every
incarnation (pid, env, packages, uptime, requests served), routing (in
flight, pending), restarts (recent, total, degraded since), the ZEO server, the
recent poison messages (``poisoned``, newest first, with the deaths and where
their quarantine stands) and the quarantined methods the incarnations report
(``quarantined``: None until one reports).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from bridge.messages import ErrorInfo, PingRequest, Reply, StatusRequest

from .incarnations import confinement

if TYPE_CHECKING:
    from .server import Supervisor

__all__ = ["answer", "status"]


def answer(sup: Supervisor, request: Any, now: float) -> Reply:
    if isinstance(request, PingRequest):
        return Reply(id=request.id, ok=True, result={
            "pong": True, "pid": os.getpid(), "uptime": round(time.time() - sup.started, 3),
            "state": sup.state,
        })
    if isinstance(request, StatusRequest):
        return Reply(id=request.id, ok=True, result=status(sup, now))
    return Reply(id=request.id, ok=False, error=ErrorInfo(
        type="InvalidMessage", message=f"the supervisor does not answer {request.kind!r}",
        where="supervisor"))


def status(sup: Supervisor, now: float) -> dict[str, Any]:
    endpoints = [sup.config.endpoint] + ([sup.home.frontend_ipc] if sup.config.ipc_frontend else [])
    return {
        "state": sup.state,
        "reason": sup.reason,
        "supervisor": {
            "pid": os.getpid(), "uptime": round(time.time() - sup.started, 3),
            "home": str(sup.home.root), "endpoints": endpoints, "events": sup.home.events,
            "curve": sup.authenticator is not None,
        },
        "active": sup.routing.active,
        "incarnations": [inc.status(now) for inc in sup.incarnations.values()],
        "env": None if sup.env is None else sup.env.describe(),
        "routing": {"inflight": len(sup.routing.inflight), "pending": len(sup.routing.pending)},
        "poisoned": sup.routing.poison.recent(now),
        "quarantined": sup.routing.poison.reported(now),
        "restarts": {
            "recent": sup.policy.recent(now), "total": sup.policy.total,
            "degraded": sup.policy.degraded,
        },
        "zeo": {"pid": sup.zeo.pid, "address": sup.zeo.address, "restarts": sup.zeo.restarts},
        "handover": None if sup.handover is None else {
            "id": sup.handover.id, "kind": sup.handover.kind, "phase": sup.handover.phase,
            "who": sup.handover.who, "elapsed": round(time.monotonic() - sup.handover.started, 3),
        },
        "served": sup.served_total,
        "handover_log": {"path": str(sup.hlog.path), "head": list(sup.hlog.head)},
        "confinement": confinement(sup.config),  # H1b: [sandbox] mode and what is enforced
    }
