"""``evolve``: change the incarnation's libraries through a validated handover.

Request: ``EvolveRequest`` ``{"kind": "evolve", "id", "add": [requirement],
"remove": [requirement], "offline", "find_links": [url], "force", "probation",
"who"}``: the current env spec with ``add`` and ``remove`` applied (and ``find_links``
added) is built and handed over to (``supervisor.handover``).

Reply, once the switch happened: ``{"handover", "outcome": "switched", "phase",
"env_before", "env_after", "timings", "validation", "total"}`` (probation goes on
after it); ``{"outcome": "unchanged", "env", "message"}`` when the spec already
serves. Errors: ``HandoverFailed`` naming the phase and why, ``Busy`` while another
handover runs, ``Unavailable`` when nothing serves or the supervisor is stopping,
``InvalidRequest`` for a spec that cannot be (or ``env.mode = "current"``).

Idempotent by ``id`` (``Evolution.recall``): a resend while its handover runs joins
it; a resend after it was answered gets the same reply again (from the handover log,
also after a restart); never a second handover. Only a request that started a
handover or was answered ``unchanged`` is recorded: a refused one (``Busy``,
``Unavailable``, ``InvalidRequest``) may be resent with its id and is judged anew.
"""

from __future__ import annotations

from envs import EnvError, EnvSpec

from .desk import Asked, Desk
from .errors import RequestRefused

__all__ = ["KIND", "handle"]

KIND = "evolve"


def handle(desk: Desk, asked: Asked) -> None:
    request = asked.request
    answer = desk.handover_answer(asked)
    try:
        if desk.evolution.recall(request.id, KIND, asked.envelope, answer):
            return None
        spec = desk.evolution.admit(KIND)
        after = spec.with_changes(add=request.add, remove=request.remove)
        if request.find_links:
            data = after.to_dict()
            data["find_links"] = list(data.get("find_links") or []) + list(request.find_links)
            after = EnvSpec.from_dict(data)
    except RequestRefused as exc:
        return desk.refuse(asked, exc.type, exc.message)
    except (EnvError, ValueError) as exc:
        return desk.refuse(asked, "InvalidRequest", str(exc))
    desk.evolution.start(
        KIND, after, answer, request=request.id, asker=asked.envelope, who=request.who or "local",
        add=list(request.add), remove=list(request.remove), force=request.force,
        offline=request.offline or None, probation=request.probation)
