"""LoRA adapters as registry entries: what an adapter is, and the name it goes by.

An adapter is a PEFT LoRA folder (``adapter_config.json`` plus its weights). Its name
is derived from the sha256 of those files, ``<facet>-<first 12 hex>``, so a name is
never reused for different weights: a retrained facet gets a new name, and the same
weights copied elsewhere keep theirs. ``AdapterInfo`` is the registry entry the
CognitiveWeaver keeps for each adapter (plain data; the image stores its
``model_dump(mode="json")``); ``describe_adapter`` builds one from a folder.

Boundary: reads files only; talks to no server (``weaver.lora`` does) and needs
neither torch nor peft.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from weaver.errors import AdapterInvalid

__all__ = ["AdapterInfo", "adapter_digest", "adapter_files", "adapter_name", "describe_adapter"]

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
FACET = re.compile(r"^[a-z0-9][a-z0-9_]*(-[a-z0-9_]+)*$")
_CHUNK = 1 << 20


class AdapterInfo(BaseModel):
    """One adapter in the registry. ``rank`` is the largest rank of any of its modules."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    base_model: str
    rank: int = Field(ge=1)
    size_bytes: int = Field(ge=0)
    facet: str
    data_digest: str = ""
    eval_scores: dict[str, float] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    digest: str = ""


def adapter_files(path: str | Path) -> list[Path]:
    """The files that make an adapter: its config and its weights (not READMEs)."""
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterInvalid(f"{folder} is not a folder; an adapter is a PEFT LoRA folder")
    config = folder / CONFIG
    if not config.is_file():
        raise AdapterInvalid(
            f"{folder} has no {CONFIG}: not a PEFT adapter (save one with "
            "PeftModel.save_pretrained)"
        )
    weights = [folder / name for name in WEIGHTS if (folder / name).is_file()]
    if not weights:
        raise AdapterInvalid(f"{folder} has no adapter weights ({' or '.join(WEIGHTS)})")
    return [config, *weights]


def adapter_digest(path: str | Path) -> str:
    """sha256 over the adapter's files, each framed by its name and size."""
    digest = hashlib.sha256()
    for file in adapter_files(path):
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def adapter_name(facet: str, digest: str) -> str:
    """``<facet>-<first 12 hex of the digest>``."""
    return f"{facet}-{digest[:12]}"


def describe_adapter(
    path: str | Path,
    facet: str = "lora",
    *,
    data_digest: str = "",
    eval_scores: dict[str, float] | None = None,
    created: datetime | None = None,
) -> AdapterInfo:
    """Read a PEFT LoRA folder into an ``AdapterInfo`` named by its content hash."""
    if not FACET.match(facet):
        raise ValueError(
            f"facet {facet!r} must be lower-case letters, digits, '_' and single '-' "
            "(it becomes part of the adapter's name)"
        )
    folder = Path(path).resolve()
    files = adapter_files(folder)
    config = _read_config(folder / CONFIG)
    digest = adapter_digest(folder)
    extra: dict[str, Any] = {"created": created} if created else {}
    return AdapterInfo(
        name=adapter_name(facet, digest),
        path=str(folder),
        base_model=str(config.get("base_model_name_or_path") or ""),
        rank=_rank(config, folder),
        size_bytes=sum(f.stat().st_size for f in files),
        facet=facet,
        data_digest=data_digest,
        eval_scores=dict(eval_scores or {}),
        digest=digest,
        **extra,
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterInvalid(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise AdapterInvalid(f"{path} is not a JSON object")
    kind = str(config.get("peft_type", "")).upper()
    if kind != "LORA":
        raise AdapterInvalid(f"{path} describes a {kind or 'unknown'} adapter, not LORA")
    return config


def _rank(config: dict[str, Any], folder: Path) -> int:
    ranks = [config.get("r")]
    pattern = config.get("rank_pattern") or {}
    if isinstance(pattern, dict):
        ranks.extend(pattern.values())
    found = [r for r in ranks if isinstance(r, int) and r > 0]
    if not found:
        raise AdapterInvalid(f"{folder / CONFIG} gives no LoRA rank 'r'")
    return max(found)
