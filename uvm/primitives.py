"""Primitives: the kernel's physics, the only way method code reaches the image.

Every method's globals hold the functions of ``PRIMITIVES`` (and nothing else
of the kernel). Their names are reserved: a method whose function has one of
these names is rejected, since it would shadow the primitive inside itself.
This module assembles the table from the layers below and installs it as
method code's globals (``uvm.methods.method_globals``) when it is imported:

    uvm.object_primitives   clone, slots, names, description, ``become:``
    uvm.method_primitives   define a method, read its history, roll it back
    uvm.acts                ``apply_acts``: a list of autopoietic_acts, atomically
    uvm.entropy             ``composite_entropy_of``: the Composite Entropy Metric
    uvm.facets              ``weaver_*``: the CognitiveWeaver's persistent half
    (here)                  the doors to the mind: ``synthesize``,
                            ``not_understood``, ``review_proposal``

The genesis methods on ``traits`` are thin sources that call these; a later
architect or mind can redefine those methods without touching the kernel.
Every primitive runs inside the current message's transaction
(``registry.current()``), validates what it is given, and raises the image's
own errors.
"""

from __future__ import annotations

from typing import Any

from . import acts as _acts
from . import facets, methods
from .entropy import composite_entropy
from .errors import BadArguments, DoesNotUnderstand, NeedsSynthesis, NoMind
from .method_primitives import define_method, method_history, rollback_method
from .obj import UvmObject, label
from .object_primitives import (
    become_object,
    clone_object,
    describe_object,
    image_object,
    name_object,
    object_named,
    object_responds_to,
    print_object,
    remove_slot,
    set_slot,
    slot_kind,
    slot_kinds,
    slot_names,
    truth,
    uuid_of,
)
from .registry import current

__all__ = ["PRIMITIVES", "slot_kind"]


def apply_acts(obj: UvmObject, acts: Any) -> dict[str, Any]:
    """Apply a list of autopoietic_acts to ``obj`` atomically (``uvm.acts``)."""
    return _acts.apply_acts(image_object(obj), acts)


def composite_entropy_of(obj: UvmObject, window_seconds: float = 3600.0) -> dict[str, Any]:
    """The image's Composite Entropy Metric over the last ``window_seconds`` (uvm.entropy)."""
    image_object(obj)
    return composite_entropy(current().connection.root(), window_seconds=window_seconds)


def _message(message: Any) -> tuple[str, list[Any]]:
    if not isinstance(message, dict) or not isinstance(message.get("selector"), str):
        raise BadArguments("doesNotUnderstand: takes a message {'selector': str, 'arguments': list}")
    args = message.get("arguments", [])
    return message["selector"], list(args) if isinstance(args, list | tuple) else [args]


def synthesize(obj: UvmObject, message: Any) -> Any:
    """doesNotUnderstand: with a mind: hand the message to the kernel for synthesis.

    Only the top-level message the kernel is dispatching may be synthesized
    (the mind is asked outside any transaction, so a method half-way through
    its own transaction cannot wait for it): anywhere else, and when no mind is
    configured, this raises the plain error instead.
    """
    o = image_object(obj)
    selector, args = _message(message)
    cycle = current()
    if cycle.mind is None:
        raise NoMind(
            f"{label(o)} does not understand {selector!r}, and no mind is configured to create "
            "it. Configure one for the incarnation (BATOS_MIND_URL and BATOS_MIND_MODEL for an "
            "OpenAI-compatible server such as vLLM, or BATOS_MIND_REPLAY=FILE; see "
            "docs/operations.md), or define the method with defineMethod:source:",
            selector=selector, receiver=o._uuid,
        )
    if cycle.not_understood != (o._uuid, selector):
        raise DoesNotUnderstand(
            f"{label(o)} does not understand {selector!r} (only a message sent from outside "
            "the image is synthesized, not one sent from inside a running method)",
            selector=selector, receiver=o._uuid,
        )
    raise NeedsSynthesis(o._uuid, selector, args)


def review_proposal(obj: UvmObject, proposal: Any) -> dict[str, Any]:
    """Run the crucible on a proposal for ``obj`` without installing it; answers the verdict.

    ``proposal`` is ``{"source": str | "acts": list, "selector": str,
    "arguments": list}``. Uses the incarnation's configured crucible.
    """
    o = image_object(obj)
    if not isinstance(proposal, dict) or not isinstance(proposal.get("selector"), str):
        raise BadArguments(
            "reviewProposal: takes {'selector': str, 'source': str (or 'acts': list), "
            "'arguments': list}"
        )
    mind = current().mind
    if mind is None or mind.crucible is None:
        raise NoMind(
            "no crucible is configured for this incarnation: configure a mind (see "
            "docs/operations.md) or run `batos crucible check --image`",
            selector="reviewProposal:", receiver=o._uuid,
        )
    body = {k: proposal[k] for k in ("thought", "source", "acts") if k in proposal}
    args = proposal.get("arguments", [])
    return mind.crucible.review(
        body, receiver=o._uuid, selector=proposal["selector"],
        args=list(args) if isinstance(args, list | tuple) else [args],
    ).to_plain()


def not_understood(obj: UvmObject, message: Any) -> None:
    """The default doesNotUnderstand: until a mind exists: a clear error, nothing changed."""
    selector = message.get("selector", "?") if isinstance(message, dict) else "?"
    raise DoesNotUnderstand(
        f"{label(image_object(obj))} does not understand {selector!r}, and no mind is configured to "
        "create it: define it with defineMethod:source: (or an applyActs: DEFINE_METHOD), "
        "or configure a mind (weaver)",
        selector=str(selector), receiver=obj._uuid,
    )


#: the CognitiveWeaver's primitives: the functions of ``uvm.facets`` under their own names
_WEAVER: dict[str, Any] = {
    "weaver_register_adapter": facets.register_adapter,
    "weaver_facet_for": facets.facet_for,
    "weaver_facet_object": facets.facet_object,
    "weaver_switch_facet": facets.switch_facet,
    "weaver_record_cycle": facets.record_cycle,
    "weaver_inquiry_config": facets.inquiry_config,
    "weaver_set_inquiry": facets.set_inquiry,
}

PRIMITIVES: dict[str, Any] = {
    **{f.__name__: f for f in (
        clone_object, set_slot, remove_slot, slot_names, slot_kinds, object_responds_to,
        print_object, uuid_of, describe_object, object_named, name_object, define_method,
        method_history, rollback_method, apply_acts, truth, not_understood, synthesize,
        become_object, review_proposal, composite_entropy_of,
    )},
    **_WEAVER,
}
methods.method_globals(PRIMITIVES)
