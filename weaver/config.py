"""Choosing a mind: from configuration keys or from the environment.

``MindConfig`` is the validated set of keys (the same names wherever the
configuration comes from); ``mind_from_config`` builds the backend it names;
``mind_from_env`` reads the ``BATOS_MIND_*`` variables and answers ``None``
when none is set, so the caller decides whether "no mind" is an error (it
raises ``NoMind()``, whose message says how to configure one).

Environment variables:

    BATOS_MIND_URL, BATOS_MIND_MODEL   an OpenAI-compatible server and model/adapter
    BATOS_MIND_API_KEY                 its API key (the variable name is configurable)
    BATOS_MIND_LOCAL=folder            a transformers model folder, in-process
    BATOS_MIND_REPLAY=file.jsonl       answers from a recording
    BATOS_MIND_RECORD=file.jsonl       with URL and MODEL: record the server's answers
    BATOS_MIND_TIMEOUT, BATOS_MIND_RETRIES, BATOS_MIND_STRUCTURED (1/0/auto)

Building a backend does no network I/O; a transformers backend loads its model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from weaver.chat import ChatBackend
from weaver.errors import BadMindConfig

__all__ = ["MindConfig", "mind_from_config", "mind_from_env"]

_SELECTORS = ("BATOS_MIND_URL", "BATOS_MIND_LOCAL", "BATOS_MIND_REPLAY", "BATOS_MIND_RECORD")


class MindConfig(BaseModel):
    """The keys that name a mind; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "transformers", "replay", "record"]
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "BATOS_MIND_API_KEY"
    path: str | None = None
    """The model folder (transformers) or the JSONL file (replay, record)."""
    timeout: float = 60.0
    retries: int = 2
    structured: bool | None = None

    @model_validator(mode="after")
    def _complete(self) -> MindConfig:
        needs = {
            "openai": ("base_url", "model"),
            "transformers": ("path",),
            "replay": ("path",),
            "record": ("path", "base_url", "model"),
        }[self.backend]
        missing = [name for name in needs if not getattr(self, name)]
        if missing:
            raise ValueError(f"backend {self.backend!r} needs {', '.join(missing)}")
        if self.timeout <= 0 or self.retries < 0:
            raise ValueError("timeout must be > 0 and retries >= 0")
        return self


def mind_from_config(cfg: MindConfig | Mapping) -> ChatBackend:
    """The backend ``cfg`` names. Raises ``BadMindConfig`` naming what is wrong."""
    if not isinstance(cfg, MindConfig):
        try:
            cfg = MindConfig.model_validate(dict(cfg))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
                for err in exc.errors()
            )
            raise BadMindConfig(f"the mind configuration is not valid: {problems}") from None
    if cfg.backend == "transformers":
        from weaver.local import TransformersBackend

        return TransformersBackend(cfg.path, model=cfg.model)
    if cfg.backend == "replay":
        from weaver.replay import ReplayBackend

        return ReplayBackend(cfg.path, model=cfg.model or "replay")
    from weaver.openai import OpenAIClient

    try:
        client = OpenAIClient(
            cfg.base_url,
            cfg.model,
            api_key_env=cfg.api_key_env,
            timeout=cfg.timeout,
            retries=cfg.retries,
            structured=cfg.structured,
        )
    except ValueError as exc:
        raise BadMindConfig(f"the mind configuration is not valid: {exc}") from None
    if cfg.backend == "record":
        from weaver.replay import Recorder

        return Recorder(client, cfg.path)
    return client


def _number(env: Mapping[str, str], name: str, kind: type, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise BadMindConfig(f"{name}={raw!r} is not a {kind.__name__}") from None


def _structured(env: Mapping[str, str]) -> bool | None:
    raw = env.get("BATOS_MIND_STRUCTURED", "").strip().lower()
    if raw in ("", "auto"):
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise BadMindConfig(f"BATOS_MIND_STRUCTURED={raw!r}: use 1, 0 or auto")


def mind_from_env(env: Mapping[str, str] = os.environ) -> ChatBackend | None:
    """The backend the ``BATOS_MIND_*`` variables name, or ``None`` when none is set.

    Raises ``BadMindConfig`` when they are set but contradict or lack each other.
    """
    given = {name: env[name].strip() for name in (*_SELECTORS, "BATOS_MIND_MODEL")
             if env.get(name, "").strip()}
    if not given:
        return None
    url, model = given.get("BATOS_MIND_URL"), given.get("BATOS_MIND_MODEL")
    kinds = [n for n in ("BATOS_MIND_LOCAL", "BATOS_MIND_REPLAY", "BATOS_MIND_RECORD") if n in given]
    if len(kinds) > 1 or ("BATOS_MIND_URL" in given and kinds and kinds != ["BATOS_MIND_RECORD"]):
        chosen = sorted(n for n in given if n != "BATOS_MIND_MODEL")
        raise BadMindConfig(
            f"{' and '.join(chosen)} are both set; set only one of BATOS_MIND_URL, "
            "BATOS_MIND_LOCAL, BATOS_MIND_REPLAY (BATOS_MIND_RECORD goes with BATOS_MIND_URL)"
        )
    common = {
        "timeout": _number(env, "BATOS_MIND_TIMEOUT", float, 60.0),
        "retries": int(_number(env, "BATOS_MIND_RETRIES", int, 2)),
        "structured": _structured(env),
    }
    if "BATOS_MIND_LOCAL" in given:
        cfg = {"backend": "transformers", "path": given["BATOS_MIND_LOCAL"], "model": model}
    elif "BATOS_MIND_REPLAY" in given:
        cfg = {"backend": "replay", "path": given["BATOS_MIND_REPLAY"], "model": model}
    else:
        if not url or not model:
            missing = "BATOS_MIND_URL" if not url else "BATOS_MIND_MODEL"
            raise BadMindConfig(
                f"{missing} is not set: a server mind needs both BATOS_MIND_URL "
                "(e.g. http://127.0.0.1:8000/v1) and BATOS_MIND_MODEL (a name from its /v1/models)"
            )
        cfg = {"backend": "openai", "base_url": url, "model": model, **common}
        if "BATOS_MIND_RECORD" in given:
            cfg.update(backend="record", path=given["BATOS_MIND_RECORD"])
    return mind_from_config(cfg)
