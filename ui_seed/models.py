"""View models of the UI: state, errors and bridge calls, without Kivy (a facade).

The window (``window.py``, run from the image) draws these models and calls
their methods; everything it shows comes from here, so the logic is tested
without a display. ``Session`` is the root: one per window, connected to one
supervisor endpoint.

The models live in one module per concept; this module re-exports their
names, because window sources already stored in images import
``ui_seed.models``. It defines nothing of its own.

- ``errors``: ``UiError``, ``explain`` (what a bridge call raised, for the user);
- ``delivery``: ``Worker`` threads, ``deliver`` and ``Mailbox``, the ``Model`` base
  (the thread boundary: state changes only on the UI thread);
- ``browse``: ``Browser``, ``Console``, ``History`` (the image's objects);
- ``service``: ``Incarnations``, ``Evolve``, ``Audit`` (the supervisor's side);
- ``session``: ``Session``, the root that owns the worker and every model.
"""

from __future__ import annotations

from .browse import MAX_REFS as MAX_REFS
from .browse import SEND_TIMEOUT as SEND_TIMEOUT
from .browse import (
    Browser,
    Console,
    History,
    ObjectView,
    SlotView,
    diff_versions,
    parse_args,
    render_value,
)
from .browse import load_object as load_object
from .browse import refs_in as refs_in
from .delivery import Deliver as Deliver
from .delivery import Job as Job
from .delivery import Mailbox, Model, Worker
from .errors import UiError, explain
from .errors import invalid as invalid
from .service import HANDOVER_TIMEOUT as HANDOVER_TIMEOUT
from .service import MAX_EVENTS as MAX_EVENTS
from .service import Audit, Evolve, Incarnations
from .session import Session
from .session import log as log

__all__ = [
    "Audit",
    "Browser",
    "Console",
    "Evolve",
    "History",
    "Incarnations",
    "Mailbox",
    "Model",
    "ObjectView",
    "Session",
    "SlotView",
    "UiError",
    "Worker",
    "diff_versions",
    "explain",
    "parse_args",
    "render_value",
]
