"""Helpers for the crucible's integration tests: the image digest, and whether a process is gone.

The real ZEO server is ``tests.integration.zeo_fixtures.zeo_address``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def image_state(db: Any, path: Path) -> tuple[bytes, int]:
    """What must not move when a trial runs: the last transaction id and the file's size."""
    return db.storage.lastTransaction(), path.stat().st_size


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1].startswith("Z")  # a zombie is gone too
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, it was read
        return True
