"""``rollback``: hand over to an earlier generation's environment (a new handover).

Request: ``RollbackRequest`` ``{"kind": "rollback", "id", "env_id": str | None,
"force", "probation", "who"}``: ``env_id`` is an env under the envs folder; None: the
one the last completed handover left (an env that served, never one that only failed
validation). What the target env lacks counts as removed (methods importing it block
the handover unless ``force``).

Reply and errors as for ``evolve`` (``supervisor.request_evolve``); an unknown
``env_id``, or no earlier env, is ``InvalidRequest`` naming the known envs.
Idempotent by ``id`` as ``evolve`` is: a resend joins the running handover or gets
its recorded reply; never a second handover.
"""

from __future__ import annotations

from envs import EnvError

from .desk import Asked, Desk
from .errors import RequestRefused
from .incarnations import EnvInfo

__all__ = ["KIND", "handle"]

KIND = "rollback"


def handle(desk: Desk, asked: Asked) -> None:
    request = asked.request
    answer = desk.handover_answer(asked)
    try:
        if desk.evolution.recall(request.id, KIND, asked.envelope, answer):
            return None
        desk.evolution.admit(KIND)
        after = desk.evolution.rollback_spec(request.env_id)
    except RequestRefused as exc:
        return desk.refuse(asked, exc.type, exc.message)
    except (EnvError, ValueError) as exc:
        return desk.refuse(asked, "InvalidRequest", str(exc))
    env = desk.pool.env
    assert env is not None  # admitted: an incarnation serves
    target = EnvInfo(id="", python="", spec=after.to_dict())
    removed = sorted(set(env.requirement_names) - set(target.requirement_names))
    desk.evolution.start(
        KIND, after, answer, request=request.id, asker=asked.envelope,
        who=request.who or "local", add=[], remove=removed, force=request.force, offline=None,
        probation=request.probation)
