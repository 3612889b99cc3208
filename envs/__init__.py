"""Environments for UVM incarnations, built with uv: one folder per spec id.

An ``EnvSpec`` says what an env holds (interpreter, PEP 508 requirements, the
batos source installed editable, find-links folders); its ``id`` is a content
hash, so ``evolve`` (same spec plus changes, ``spec.with_changes``) names a new
env and building an unchanged spec again reuses the old one. ``build_env``
makes the env with the ``uv`` binary (a subprocess), records what uv resolved
in ``batos-env.json`` and returns an ``Env``; ``list_envs``/``remove_env`` let
the supervisor keep the last N generations.

Boundary: this package sits beside ``supervisor`` and ``bridge`` and must import
nothing of ``uvm``, ``weaver``, ``crucible``, ``ui_seed``, ``supervisor`` or
``batos`` (``tests/unit/test_layering.py``): the standard library, pydantic,
``packaging`` when present, and the ``uv`` package only to locate its binary.
It builds and records; it never starts an incarnation, never imports what it
installs, and never decides which env is current or which to delete.

    errors -> spec -> build
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
