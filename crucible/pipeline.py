"""The AlchemicalCrucible: static, trial, reviews; the policy decides.

``Crucible.review`` runs the stages in order of cost and danger:

1. *static* (``crucible.static``): reads the proposal, runs nothing of it;
2. *trial* (``crucible.trial``): runs it in a throwaway process on the
   receiver's current state with the real arguments, always aborted;
3. *reviews* (``crucible.reviews``): the logic, ethics and utility personas.

A required stage that fails ends the run: later stages are recorded as
``off`` with ``detail.skipped`` (hostile code that static rejected is never
run; a method that crashed is not shown to reviewers). Without an image the
trial is ``off``, never a pass, and rejects when the policy requires it.
``approved`` is true when every required stage passed (``verdict.decide``).

A ``Crucible`` owns a ``TrialRunner`` (and so a warm worker process) for the
image it was given: keep one per image and ``close()`` it, or use it as a
context manager. ``review`` may be called from several threads at once.
"""

from __future__ import annotations

from typing import Any

from .policy import REVIEWERS, Mode, Policy
from .proposal import Proposal, coerce
from .reviews import review_persona, stage_name
from .static import check_proposal, check_ui_source
from .trial import TrialRunner
from .trial_launch import ImageRef
from .verdict import StageVerdict, Verdict, decide

__all__ = ["Crucible", "check_ui_source", "review", "selector_of"]


def _off(stage: str, reason: str, *, skipped: bool = False, required: bool = False) -> StageVerdict:
    return StageVerdict(stage=stage, status="off", required=required, reasons=[reason],
                        detail={"skipped": True} if skipped else {})


class Crucible:
    def __init__(self, *, policy: Policy | None = None, image: ImageRef | None = None,
                 reviewer: Any = None, spawner: Any = None, confine: bool = True) -> None:
        # spawner/confine: how trial workers start and lock (crucible.trial.TrialRunner)
        self.policy = policy or Policy()
        self.image = image
        self.reviewer = reviewer
        self._runner = (TrialRunner(image, self.policy.limits, spawner=spawner, confine=confine)
                        if image is not None and self.policy.trial != "off" else None)

    def __enter__(self) -> Crucible:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()

    def static(self, proposal: Proposal | dict[str, Any] | str, *, selector: str) -> StageVerdict:
        mode = self.policy.static
        if mode == "off":
            return _off("static", "turned off by the policy")
        return check_proposal(coerce(proposal), selector=selector, policy=self.policy,
                              required=mode == "required")

    def trial(self, proposal: Proposal, *, receiver: str, selector: str,
              args: list[Any]) -> StageVerdict:
        mode = self.policy.trial
        if mode == "off":
            return _off("trial", "turned off by the policy")
        if self._runner is None:
            return _off("trial", "no image was given to run the trial against",
                        required=mode == "required")
        return self._runner.run(proposal, receiver=receiver, selector=selector, args=args,
                                required=mode == "required")

    def review(self, proposal: Proposal | dict[str, Any] | str, *, receiver: str, selector: str,
               args: list[Any] | None = None, context: str = "") -> Verdict:
        """Every stage's verdict on ``proposal`` as the way to answer ``selector`` on ``receiver``."""
        proposal = coerce(proposal)
        args = list(args or [])
        stages: list[StageVerdict] = []
        stopped: str | None = None

        def run(name: str, mode: Mode, thunk: Any) -> None:
            nonlocal stopped
            if stopped is not None and mode != "off":
                stages.append(_off(name, f"not run: the required {stopped} stage did not pass",
                                   skipped=True))
                return
            verdict = thunk()
            stages.append(verdict)
            if verdict.required and not verdict.passed:
                stopped = verdict.stage

        run("static", self.policy.static, lambda: self.static(proposal, selector=selector))
        run("trial", self.policy.trial,
            lambda: self.trial(proposal, receiver=receiver, selector=selector, args=args))
        for persona in REVIEWERS:
            mode = self.policy.review_mode(persona)
            run(stage_name(persona), mode, lambda p=persona, m=mode: review_persona(
                self.reviewer, p, proposal, mode=m, receiver=receiver, selector=selector,
                args=args, context=context, findings=list(stages)))
        return decide(stages)


def selector_of(proposal: Proposal) -> str:
    """The selector a one-function source answers: the function's name."""
    import ast

    try:
        tree = ast.parse(proposal.source or "")
    except (SyntaxError, ValueError):
        tree = None
    funcs = [n for n in (tree.body if tree else []) if isinstance(n, ast.FunctionDef)]
    if len(funcs) != 1:
        raise ValueError("give the selector: it cannot be read from a source that is not exactly "
                         "one function")
    return funcs[0].name


def review(source: Proposal | dict[str, Any] | str, receiver: str, args: list[Any] | None = None,
           *, selector: str | None = None, image: ImageRef | str | None = None,
           policy: Policy | None = None, reviewer: Any = None, context: str = "") -> Verdict:
    """Review one proposal with a crucible made for the call (see ``Crucible.review``).

    ``selector`` defaults to the function's name; ``image`` may be an
    ``ImageRef`` or a FileStorage path.
    """
    proposal = coerce(source)
    if selector is None:
        selector = selector_of(proposal)
    if isinstance(image, str):
        image = ImageRef(path=image)
    with Crucible(policy=policy, image=image, reviewer=reviewer) as crucible:
        return crucible.review(proposal, receiver=receiver, selector=selector, args=args,
                               context=context)
