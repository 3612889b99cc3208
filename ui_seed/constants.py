"""Where the window's source lives and what it may import: ui_seed's constants.

Constants only, importing nothing, so the package root (which re-exports
them) stays import-light: the image bootstrap reads the window resource
without a display or Kivy installed.
"""

from __future__ import annotations

__all__ = ["ALLOWED_MODULES", "DISPLAY_SELECTOR", "RECEIVER", "WINDOW_RESOURCE"]

#: the package resource holding the seed window's source
WINDOW_RESOURCE = "window.py"
#: the object and selector that answer the window's source
RECEIVER = "genesis"
DISPLAY_SELECTOR = "display_yourself"
#: the top-level modules the window source may import
ALLOWED_MODULES = ("kivy", "ui_seed", "json", "math", "datetime", "difflib", "textwrap")
