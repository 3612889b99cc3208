"""Where batos keeps its state: the home folder and the image path.

Home is ``--home``, else ``$BATOS_HOME``, else the user state directory
(``$XDG_STATE_HOME/batos``, defaulting to ``~/.local/state/batos``). It holds
the image (``live_image.fs``), and later the envs, logs, sockets and config.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IMAGE_FILE", "default_image", "resolve_home"]

IMAGE_FILE = "live_image.fs"


def resolve_home(home: str | None = None) -> Path:
    if home:
        return Path(home).expanduser()
    env = os.environ.get("BATOS_HOME")
    if env:
        return Path(env).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "batos"


def default_image(image: str | None = None, home: str | None = None) -> Path:
    """``--image`` if given, else ``<home>/live_image.fs``."""
    return Path(image).expanduser() if image else resolve_home(home) / IMAGE_FILE
