"""Where packages come from, as pip sees it: the sources a spec that follows pip carries.

uv reads no pip configuration, so an env that must resolve what pip would (the
training env: the same wheels as the interpreter that builds it) names pip's
sources in its ``EnvSpec``. ``pip_sources()`` reads them from ``pip config list``
(which includes ``PIP_*`` variables): find-links folders, the index URL, extra
index URLs and constraint files, with ``index_strategy="unsafe-best-match"``
(pip's semantics: the best version across every index), as ``EnvSpec`` keyword
arguments. ``local_wheel_version`` finds the newest wheel of a project with a
local version label (``torch-2.5.1+cpu-cp311-...whl``) in find-links folders,
for this interpreter.

Runs ``python -m pip`` once per call (a subprocess, up to a minute); reads
folders; builds nothing. Standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["local_wheel_version", "pip_sources"]

_SETTING = re.compile(r"^[^.]*\.([a-z-]+)='(.*)'$")
_KEYS = ("find-links", "index-url", "extra-index-url", "constraint")


def _pip_config(python: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {key: [] for key in _KEYS}
    try:
        text = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                              text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return out
    for line in text.splitlines():
        found = _SETTING.match(line.strip())
        if found and found[1] in out:
            for value in found[2].split():
                if value not in out[found[1]]:
                    out[found[1]].append(value)
    return out


def pip_sources(python: str = sys.executable) -> dict[str, Any]:
    """pip's find-links, index URL, extra index URLs and constraints: ``EnvSpec`` fields."""
    pip = _pip_config(python)
    return {"find_links": pip["find-links"],
            "index_url": pip["index-url"][0] if pip["index-url"] else None,
            "extra_index_urls": pip["extra-index-url"], "constraints": pip["constraint"],
            "index_strategy": "unsafe-best-match"}


def local_wheel_version(find_links: list[str] | tuple[str, ...], project: str,
                        local: str) -> str | None:
    """The newest ``<project>-<version>+<local>`` wheel for this interpreter in the
    find-links folders: its version (``2.5.1+cpu``), or None."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    best: tuple[tuple[int, ...], str] | None = None
    for link in find_links:
        folder = Path(link[7:] if link.startswith("file://") else link)
        if not folder.is_dir():
            continue
        for wheel in folder.glob(f"{project}-*+{local}-{tag}-*.whl"):
            version = wheel.name.split("-")[1]
            key = tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0]))
            if best is None or key > best[0]:
                best = (key, version)
    return best[1] if best else None
