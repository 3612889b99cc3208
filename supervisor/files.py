"""Durable file writes for the supervisor's own records (handover log, current env).

``fsync_dir`` makes a rename or a new file in ``folder`` survive a power loss;
``replace_durably`` writes a whole file so that readers see the old content
or the new one, never a mix, and the new one is on disk when it returns.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "replace_durably"]


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(target: Path, text: str) -> None:
    tmp = target.with_suffix(target.suffix + ".tmp")
    with open(tmp, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)
