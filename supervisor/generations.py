"""Environment generations: which env a rollback returns to, which envs to keep, what a
removed package took with it, and the handover a crashed supervisor left unfinished.

Functions over the envs folder (``envs.list_envs``), ``current-env.json`` and the
handover log; no sockets, no processes. ``supervisor.evolution`` calls them from the
loop's thread (``recover`` before the loop starts); each reads a few small files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from envs import EnvSpec, list_envs, remove_env

from .config import Config, Home
from .handover_entries import COMPLETED, RECOVERED
from .handover_log import HandoverLog
from .handover_report import interrupted, summarize
from .incarnations import EnvInfo, envs_dir, save_current_spec

__all__ = ["modules_of", "prune", "recover", "rollback_spec"]

log = logging.getLogger("batos.supervisor.evolution")


def rollback_spec(config: Config, home: Home, hlog: HandoverLog, current: str | None,
                  env_id: str | None) -> EnvSpec:
    """The spec of ``env_id``, or of the env the last completed handover left (one that
    served), never one that only failed validation. ``ValueError`` names the known envs."""
    known = {e.id: e for e in list_envs(envs_dir(config, home))}
    if env_id is None:
        for row in reversed(summarize(hlog.path)):
            before = row.get("env_before")
            before = before.get("id") if isinstance(before, dict) else before
            if row.get("outcome") == "completed" and before and before != current and before in known:
                env_id = before
                break
        else:
            raise ValueError("there is no previous environment that served to roll back to "
                             f"(known envs: {', '.join(sorted(known)) or 'none'})")
    target = known.get(env_id)
    if target is None:
        raise ValueError(f"no environment {env_id!r}; known: {', '.join(sorted(known))}")
    record = json.loads((target.path / "batos-env.json").read_text())
    return EnvSpec.from_dict(record["spec"])


def modules_of(env: EnvInfo | None, names: list[str]) -> list[str]:
    """Top-level modules the distributions ``names`` provide in ``env``."""
    if not names or env is None or not env.path:
        return []
    wanted = {n.lower().replace("_", "-") for n in names}
    modules: set[str] = set()
    for site in Path(env.path).glob("lib/python*/site-packages"):
        for dist in metadata.distributions(path=[str(site)]):
            name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
            if name not in wanted:
                continue
            top = dist.read_text("top_level.txt")
            if top:
                modules.update(line.strip() for line in top.splitlines() if line.strip())
            else:
                for file in dist.files or []:
                    part = str(file).split("/")[0]
                    if part.endswith(".py"):
                        modules.add(part[:-3])
                    elif not part.endswith((".dist-info", ".data")) and part != "..":
                        modules.add(part)
    return sorted(modules)


def prune(config: Config, home: Home, in_use: Iterable[str]) -> None:
    """Remove envs beyond ``keep_generations`` (newest first), never one in use."""
    folder = envs_dir(config, home)
    known = sorted(list_envs(folder), key=lambda e: e.built_at, reverse=True)
    used = set(in_use)
    keep = {e.id for e in known if e.id in used}
    for env in known:
        if env.id in keep:
            continue
        if len(keep) < config.keep_generations + 1:
            keep.add(env.id)
        else:
            log.info("removing env %s (beyond %d generations)", env.id, config.keep_generations)
            remove_env(folder, env.id)


def recover(config: Config, home: Home, hlog: HandoverLog) -> dict[str, Any] | None:
    """At start: finish or revert a handover a previous supervisor left unfinished.

    The log alone decides (``handover_report.interrupted``); the env it keeps is
    recorded as current before any incarnation starts.
    """
    found = interrupted(hlog.path)
    if found is None:
        return None
    keep = found.get("keep_env")
    record = envs_dir(config, home) / str(keep) / "batos-env.json"
    if keep and record.exists():
        save_current_spec(home, json.loads(record.read_text())["spec"])
    elif found["action"] == "revert" and keep is None:
        save_current_spec(home, None)  # the configured spec was the one serving
    finish = found["action"] == "finish"
    hlog.append(found["handover"], RECOVERED, found=found, action=found["action"])
    hlog.append(found["handover"], COMPLETED,
                outcome="completed" if finish else "interrupted", after_restart=True,
                reason=found["why"], env_before=found.get("env_before"),
                env_after=found.get("env_after"), failed_phase=None if finish else found.get("phase"))
    log.warning("recovered an interrupted handover", extra={
        "handover": found["handover"], "action": found["action"], "why": found["why"]})
    return found
