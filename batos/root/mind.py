"""Assembling a mind: a weaver chat backend + the crucible -> a ``Synthesizer``.

Part of the composition root (``batos.root``): the incarnation process
(``batos.root.incarnation``) and the CLI's ``batos image`` build their mind
here; the UVM gets it whole (``uvm.synthesis.Synthesizer``, its parts
duck-typed) and imports nothing of ``weaver`` or ``crucible``. Configuration
is one plain mapping, from the supervisor's ``[mind]`` table (passed to
incarnations as ``BATOS_MIND_CONFIG``, JSON) or from the ``BATOS_MIND_*``
variables:

    backend, base_url, model, path, api_key_env, timeout, retries, structured
                            the chat backend (``weaver.config.MindConfig``)
    attempts                proposals per missing selector (first + repairs), default 2
    max_tokens              per answer, default 1024
    policy                  the crucible's policy (``crucible.Policy``: stage modes,
                            trial limits, extra allowed modules)
    max_loras, max_lora_rank  the server's LoRA budget (its --max-loras, --max-lora-rank),
                            for loading the facet's adapter; default 1 and 16

The crucible's trial stage runs against the same image the kernel uses: the
ZEO server (``zeo``) or the FileStorage file (``path``, opened read-only by
the trial process). A confined incarnation hands its fork-server (``spawner``,
``envs.spawner``) so trial workers start through it; ``confine`` says whether
workers lock themselves as the live process does (False only for
``--unconfined``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from uvm.errors import ImageError
from uvm.synthesis import Synthesizer

__all__ = ["MIND_KEYS", "build_mind", "close_mind", "config_from_env", "table_from_env"]

MIND_KEYS = {"attempts", "max_tokens", "policy", "facet", "max_loras", "max_lora_rank"}


def table_from_env(name: str, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """A config table the supervisor hands its incarnations as JSON in ``env[name]``; {} if unset."""
    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImageError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ImageError(f"{name} must be a JSON object (a config table)")
    return data


def config_from_env(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``BATOS_MIND_CONFIG`` if set, else {} (the backend then comes from BATOS_MIND_*)."""
    return table_from_env("BATOS_MIND_CONFIG", env)


def build_mind(
    config: Mapping[str, Any] | None = None,
    *,
    zeo: str | None = None,
    image_path: str | None = None,
    packages: Sequence[str] = (),
    env: Mapping[str, str] = os.environ,
    chat: Any = None,
    spawner: Any = None,
    confine: bool = True,
) -> Synthesizer | None:
    """The mind that ``config`` (or the environment) names, or None when none is configured.

    Raises the weaver's ``BadMindConfig`` or pydantic's errors (as ``ImageError``)
    when the configuration is there but wrong: a misconfigured mind is an
    operator error to report at start, not a silent "no mind".
    """
    from crucible import Crucible, ImageRef, Policy, proposal_schema
    from weaver.config import mind_from_config, mind_from_env

    config = dict(config if config is not None else config_from_env(env))
    options = {k: config.pop(k) for k in list(config) if k in MIND_KEYS}
    if chat is None:
        chat = mind_from_config(config) if config else mind_from_env(env)
    if chat is None:
        return None
    try:
        policy = Policy.model_validate(options.get("policy") or {})
    except Exception as exc:
        raise ImageError(f"the mind's crucible policy is not valid: {exc}") from None
    image = None
    if zeo or image_path:
        image = ImageRef(path=None if zeo else str(image_path), zeo=zeo,
                         allowed_packages=tuple(packages))
    crucible = Crucible(policy=policy, image=image, reviewer=chat, spawner=spawner,
                        confine=confine)
    return Synthesizer(
        chat, crucible, schema=proposal_schema(),
        attempts=int(options.get("attempts", 2)),
        max_tokens=int(options.get("max_tokens", 1024)),
        facet=str(options.get("facet", "code_generation")),
        load_adapter=_adapter_loader(chat, options),
    )


def _adapter_loader(chat: Any, options: Mapping[str, Any]) -> Any:
    """For a vLLM-style server: load the facet's adapter on demand (LRU under its budget)."""
    base_url = getattr(chat, "base_url", None)
    if not base_url:
        return None
    from weaver.adapters import AdapterInfo
    from weaver.lora import LoraRuntime

    runtime = LoraRuntime(base_url, max_adapters=options.get("max_loras"),
                          max_rank=options.get("max_lora_rank"))

    def load(info: dict[str, Any]) -> str:
        return runtime.ensure(AdapterInfo.model_validate(info))

    return load


def close_mind(mind: Synthesizer | None) -> None:
    """Stop what the mind holds (the crucible's trial workers, the backend's connections)."""
    if mind is None:
        return
    for part in (mind.crucible, mind.chat):
        close = getattr(part, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing is best effort; the process is ending
                pass
