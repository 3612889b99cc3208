"""The AlchemicalCrucible: the staged review every self-modification passes.

Layers, bottom up: ``errors``, ``proposal``, ``verdict``, ``policy``;
the static rules, which read and run nothing: ``parsing`` (a source within
limits), ``forbidden`` (the refused words, as data), ``rules`` (the code),
``text_rules`` (docstrings and comments), under ``static`` (the stage's entry
points); the trial: ``trial_launch`` (a worker's argv, environment, sandbox),
``trial_frames`` (the pipe frames), ``trial_process`` (the worker handles and
the thread that starts them), under ``trial`` (``TrialRunner``: the stage),
with ``trial_worker`` the worker process itself; ``reviews`` (three personas
of the mind); ``pipeline`` (the stages in order, the policy decides). The
crucible may import the shared floor (``lexicon``), ``envs`` and the living
image (``uvm``) only; nothing of the supervisor, the command line, the
composition root, the weaver or the UI: the reviewer backend is handed in,
duck-typed.

    from crucible import Crucible, ImageRef, Policy
    with Crucible(image=ImageRef(path="live_image.fs")) as c:
        verdict = c.review("def double(self, x):\\n    return 2 * x\\n",
                           receiver="genesis", selector="double:", args=[21])
"""

from .errors import (
    CrucibleError,
    InvalidProposal,
    ReviewerUnavailable,
    TransientError,
    TrialUnavailable,
)
from .pipeline import Crucible, review
from .policy import Mode, Policy, TrialLimits
from .proposal import Proposal, proposal_schema
from .static import check_ui_source
from .trial import TrialRunner
from .trial_launch import ImageRef
from .verdict import StageVerdict, Status, Verdict

__all__ = [
    "Crucible",
    "CrucibleError",
    "ImageRef",
    "InvalidProposal",
    "Mode",
    "Policy",
    "Proposal",
    "ReviewerUnavailable",
    "StageVerdict",
    "Status",
    "TransientError",
    "TrialLimits",
    "TrialRunner",
    "TrialUnavailable",
    "Verdict",
    "check_ui_source",
    "proposal_schema",
    "review",
]
