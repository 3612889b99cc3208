"""The seed Kivy UI that bootstrap plants behind ``display_yourself``.

The window's source lives in the image: ``genesis display_yourself`` answers it
as text, and ``batos ui`` (``ui_seed.runner``) checks it with the crucible's
static stage, runs it and shows it. ``window.py`` in this package is the first
version (bootstrap reads it as a resource) and the fallback when the image's
version cannot be fetched, checked or run.

Modules, bottom up (none but ``window`` and ``runner`` touch Kivy):
``errors`` (``UiError``, ``explain``), ``delivery`` (worker threads, delivery
to the UI thread, the ``Model`` base), ``events`` (the supervisor's event
stream on a thread), ``browse`` (object browser, console, method history),
``service`` (incarnations, evolve, audit), ``session`` (the root view model),
``models`` (the facade that re-exports the view models, for window sources
stored in images), ``window`` (the Kivy widgets, run from source), ``runner``
(fetch, check, run, fall back, screenshot).

This module stays import-light: constants only, no Kivy, so the image
bootstrap can read the window resource without a display or Kivy installed.
"""

from __future__ import annotations

__all__ = [
    "ALLOWED_MODULES",
    "DISPLAY_SELECTOR",
    "RECEIVER",
    "WINDOW_RESOURCE",
]

#: the package resource holding the seed window's source
WINDOW_RESOURCE = "window.py"
#: the object and selector that answer the window's source
RECEIVER = "genesis"
DISPLAY_SELECTOR = "display_yourself"
#: the top-level modules the window source may import
ALLOWED_MODULES = ("kivy", "ui_seed", "json", "math", "datetime", "difflib", "textwrap")
