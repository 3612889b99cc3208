"""The rule for a slot's name, shared by whoever writes a slot or checks an act.

``uvm.obj`` checks it on every slot written in the image; ``lexicon.acts``
checks the slot names an act carries before anything applies. Both say the
same thing because both call ``slot_name_problem``: a name is refused with
the same words wherever it is written.

A slot name is a non-empty ``str`` in NFKC form that does not start with ``_``.
NFKC because Python normalises the identifiers it parses: ``self.\\uff3fslots``
in a method's source *is* ``self._slots``, so a slot spelled that way would be
one no source can name, and a text check for ``_`` would miss it. A name that
is not in NFKC form is refused rather than normalised (as the UVM's guards
refuse such attribute names), so a slot is always reachable by the name it
shows.

Boundary: the standard library only; no errors of any layer (a caller raises
its own, with the words ``slot_name_problem`` answers).
"""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["check_slot_name", "slot_name_problem"]


def slot_name_problem(name: Any) -> str | None:
    """None if ``name`` may name a slot, else the sentence that says why it may not."""
    if type(name) is not str or not name or name.startswith("_"):
        return (f"slot name {name!r} is not allowed: a slot name is a non-empty string "
                "that does not start with '_'")
    if not name.isascii() and unicodedata.normalize("NFKC", name) != name:
        return (f"slot name {name!r} is not allowed: it is not in NFKC form (it normalises "
                f"to {unicodedata.normalize('NFKC', name)!r}, the name Python would read "
                "in a method's source); spell it in NFKC form")
    return None


def check_slot_name(name: Any) -> str:
    """``name`` if it may name a slot, else ``ValueError`` saying why (``slot_name_problem``)."""
    problem = slot_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name
