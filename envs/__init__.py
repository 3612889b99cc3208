"""The toolkit for children and environments: uv envs, the OS walls, stopping a child.

Environments: an ``EnvSpec`` says what an env holds (interpreter, PEP 508
requirements, the batos source installed editable, find-links folders, and for a
spec that follows pip, its indexes, constraints and folders used in place); its
``id`` is a content hash, so ``evolve`` (same spec plus changes,
``spec.with_changes``) names a new env and building an unchanged spec again reuses
the old one. ``build_env`` makes the env with the ``uv`` binary (a subprocess,
``envs.uv_run``), records what uv resolved in ``batos-env.json`` and returns an
``Env``; ``list_envs``/``remove_env`` let the supervisor keep the last N
generations. ``envs.sources`` reads pip's sources for a spec.

Children: ``envs.children`` stops any child with escalation (SIGTERM to its group,
a grace, SIGKILL, reap), for every layer; ``envs.vllm`` describes how a vLLM server
is launched (the supervisor's and the weaver's); ``envs.sandbox`` wraps a command in
bubblewrap, ``envs.confine`` locks a process (seccomp, rlimits), and
``envs.spawner``/``envs.forkserver`` let a locked process start children from a
fixed table.

Boundary: this package sits beside ``bridge`` on the floor above ``lexicon`` and must
import nothing of ``uvm``, ``weaver``, ``crucible``, ``ui_seed``, ``supervisor`` or
``batos`` (``tests/unit/test_layering.py``): the standard library, pydantic, psutil,
ormsgpack (the fork-server's messages), httpx (``envs.vllm``'s readiness probe),
``packaging`` when present, and the ``uv``
package only to locate its binary. It builds, describes and stops; it never starts
an incarnation, never imports what it installs, and never decides which env is
current or which to delete.

    errors -> spec -> uv_run -> build        sources, children, vllm
    errors -> forkserver -> spawner (-> children)        errors -> sandbox, confine
"""

from __future__ import annotations

from envs.build import ENV_RECORD, BuildWatch, Env, build_env, find_uv, list_envs, remove_env
from envs.errors import BuildFailed, EnvError, InvalidSpec, OfflineMissing, UvNotFound
from envs.spec import EnvSpec, canonical_name, normalize_requirement

__all__ = [
    "ENV_RECORD",
    "BuildFailed",
    "BuildWatch",
    "Env",
    "EnvError",
    "EnvSpec",
    "InvalidSpec",
    "OfflineMissing",
    "UvNotFound",
    "build_env",
    "canonical_name",
    "find_uv",
    "list_envs",
    "normalize_requirement",
    "remove_env",
]
