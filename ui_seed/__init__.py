"""The seed Kivy UI that bootstrap plants behind ``display_yourself``.

The window's source lives in the image: ``genesis display_yourself`` answers it
as text, and ``batos ui`` (``ui_seed.runner``) checks it with the crucible's
static stage, runs it and shows it. ``window.py`` in this package is the first
version (bootstrap reads it as a resource) and the fallback when the image's
version cannot be fetched, checked or run.

Modules, bottom up, each importing only those before it (none but ``window``
and ``runner`` touch Kivy): ``constants`` (where the window's source lives,
what it may import), ``errors`` (the ``UiSeedError`` root, ``UiError`` and
``explain``), ``delivery`` (worker threads, delivery to the UI thread, the
``Model`` base and the ``Host`` a model sees of its session), ``events`` (the
supervisor's event stream on a thread), ``browse`` (object browser, console,
method history), ``service`` (incarnations, evolve, audit), ``session`` (the
root view model, which owns the others), ``models`` (the facade that
re-exports the view models, for window sources stored in images),
``captions`` (the texts the window draws, from the models), ``window`` (the
Kivy widgets, run from source), ``runner`` (fetch, check, run, fall back,
screenshot). ui_seed imports ``bridge`` and, lazily, ``crucible``; nothing of
the supervisor, the weaver or the command line.

This module stays import-light: it re-exports ``constants`` only, no Kivy, so
the image bootstrap can read the window resource without a display or Kivy
installed.
"""

from __future__ import annotations

from .constants import ALLOWED_MODULES, DISPLAY_SELECTOR, RECEIVER, WINDOW_RESOURCE

__all__ = [
    "ALLOWED_MODULES",
    "DISPLAY_SELECTOR",
    "RECEIVER",
    "WINDOW_RESOURCE",
]
