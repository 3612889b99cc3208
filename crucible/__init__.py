"""The AlchemicalCrucible: the staged review every self-modification passes.

Layers, bottom up: ``errors``, ``proposal``, ``verdict``, ``policy``;
``rules`` (the AST rules) under ``static`` (the stage's entry points; both
read and run nothing), ``trial`` (a throwaway worker process,
``trial_worker``), ``reviews`` (three personas of the mind); ``pipeline``
(the stages in order, the policy decides). The crucible imports the living
image (``uvm``) and nothing of the supervisor, the CLI, the mind or the UI:
the reviewer backend is handed in, duck-typed.

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
from .trial import ImageRef, TrialRunner
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
