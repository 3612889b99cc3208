"""``status``: the whole picture, for operators and UIs (``batos status``).

Request: ``StatusRequest`` ``{"kind": "status", "id"}``; answered even when degraded.

Reply: the supervisor (pid, uptime, home, endpoints, events, curve), its ``state`` and
why (``reason``), the ``active`` incarnation and every incarnation (pid, env, packages,
uptime, requests served), the active ``env``, ``routing`` (in flight, pending, the
newest transaction id a reply carried), the recent poison messages (``poisoned``, newest
first, with the deaths and where their quarantine stands) and the quarantined methods
the incarnations report
(``quarantined``: None until one reports), ``restarts`` (recent, total, degraded
since), the ZEO server, the running ``handover``, requests ``served``, the handover
log's path and head, ``confinement`` (``[sandbox]`` mode and what is enforced) and the
vLLM server (``vllm``: None when the supervisor runs none).
"""

from __future__ import annotations

import os
import time
from typing import Any

from .desk import Asked, Desk
from .incarnations import confinement

__all__ = ["KIND", "handle", "status"]

KIND = "status"


def handle(desk: Desk, asked: Asked) -> None:
    desk.answer(asked, status(desk, asked.now))


def status(desk: Desk, now: float) -> dict[str, Any]:
    pool, routing = desk.pool, desk.routing
    return {
        "state": pool.state,
        "reason": pool.reason,
        "supervisor": {
            "pid": os.getpid(), "uptime": round(time.time() - desk.started, 3),
            "home": str(desk.home.root), "endpoints": desk.sockets.endpoints,
            "events": desk.home.events, "curve": desk.sockets.curve,
        },
        "active": routing.active,
        "incarnations": [inc.status(now) for inc in pool.incarnations.values()],
        "env": None if pool.env is None else pool.env.describe(),
        "routing": {"inflight": len(routing.inflight), "pending": len(routing.pending),
                    "newest": routing.newest.hex() if routing.newest else None},
        "poisoned": routing.poison.recent(now),
        "quarantined": routing.poison.reported(now),
        "restarts": {
            "recent": pool.policy.recent(now), "total": pool.policy.total,
            "degraded": pool.policy.degraded,
        },
        "zeo": {"pid": desk.zeo.pid, "address": desk.zeo.address, "restarts": desk.zeo.restarts},
        "handover": desk.evolution.describe(),
        "served": pool.served,
        "handover_log": {"path": str(desk.hlog.path), "head": list(desk.hlog.head)},
        "confinement": confinement(desk.config),  # H1b: [sandbox] mode and what is enforced
        "vllm": desk.vllm.status() if desk.config.vllm.enabled else None,
    }
