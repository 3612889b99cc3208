"""The crucible's errors: one root, drawn here.

A proposal that fails a stage is not an error: it is a ``Verdict`` with
``approved=False``. Errors are for what stops the crucible from judging at all:

    CrucibleError
    +-- InvalidProposal        the proposal is not a proposal (neither source nor
    |                          acts, both, wrong types); fix it and ask again
    +-- TrialUnavailable       a trial worker could not be started or talked to
    |                          (also TransientError: the next trial may work)
    +-- ReviewerUnavailable    the reviewer backend raised instead of answering
                               (also TransientError)

``TransientError`` marks errors where asking again may succeed, like ZODB's
``ConflictError``: the shared floor's one mixin (``lexicon.errors``, re-exported
here), the same every layer uses. Every error has ``to_dict()``: the
``{type, message}`` pair.
"""

from __future__ import annotations

from lexicon.errors import TransientError

__all__ = [
    "CrucibleError",
    "InvalidProposal",
    "ReviewerUnavailable",
    "TransientError",
    "TrialUnavailable",
]


class CrucibleError(Exception):
    """Root of every error the crucible raises."""

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "message": str(self)}


class InvalidProposal(CrucibleError, ValueError):
    """What was handed to the crucible is not a proposal it can judge."""


class TrialUnavailable(CrucibleError, TransientError):
    """No trial worker could be started or reached; the proposal was not judged."""


class ReviewerUnavailable(CrucibleError, TransientError):
    """The reviewer backend failed instead of answering."""
