"""The mind's side of doesNotUnderstand: ask, judge, repair, install, record.

When a message sent from outside finds no slot, the genesis
``doesNotUnderstand:`` calls the ``synthesize`` primitive, which raises
``NeedsSynthesis``; the kernel aborts the message's transaction and calls
``Synthesizer.plan`` **outside any transaction**:

1. read the receiver (``uvm.prompt.context_for``) in an aborted transaction;
2. ask the mind (a ``weaver`` chat backend) for a proposal: one function for
   the missing selector, or a list of autopoietic_acts, as JSON under the
   crucible's proposal schema (the server enforces it where it can);
3. hand it to the crucible (static policy, trial run in a separate process,
   persona reviews, as its policy says);
4. rejected: send it back once more with the reasons (``attempts`` in all),
   then give up: the attempt history is committed as a ``rejected`` record
   on its own and the client gets ``SynthesisFailed`` with the reasons;
5. approved: the kernel runs the original message again in a new
   transaction in which ``Plan.install`` first installs the proposal (a
   method authored ``mind`` whose version carries the prompt digest, model,
   verdict and record id) and writes the ``installed`` record; the message's
   effects, the method and the record commit together, or nothing does.

The chat backend and the crucible are given, duck-typed: this module imports
neither ``weaver`` nor ``crucible`` (the composition root, ``batos.root.mind``,
assembles them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from . import prompt
from .acts import apply_acts
from .errors import DoesNotUnderstand, NeedsSynthesis, SynthesisFailed, UVMError
from .facets import facet_for
from .methods import Method
from .obj import UvmObject, find_slot, write_slot
from .object_primitives import plain_copy
from .protection import MIND_AUTHOR, check_slot
from .records import SynthesisLog, new_record_id
from .registry import Cycle
from .selectors import slot_name

__all__ = ["Plan", "Synthesizer", "install_proposal"]

log = logging.getLogger("batos.mind")

RAW_CHARS = 20_000


@dataclass
class Plan:
    """An approved proposal, ready to install inside the message's transaction."""

    need: NeedsSynthesis
    proposal: dict[str, Any]
    record: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def install(self, cycle: Cycle, receiver: UvmObject) -> None:
        obj = cycle.registry.resolve(self.need.receiver)
        slot = slot_name(self.need.selector)
        try:
            find_slot(obj, slot)
        except DoesNotUnderstand:
            pass
        else:  # someone defined it meanwhile (another process); theirs answers
            self.record["outcome"] = "superseded"
            SynthesisLog(cycle.connection.root()).add(self.record)
            return
        install_proposal(
            cycle, obj, self.need.selector, self.proposal, meta=self.meta,
            reason=f"synthesized for {self.need.selector!r}: "
            + str(self.proposal.get("thought", ""))[:300],
        )
        self.record["outcome"] = "installed"
        self.record["method"] = {"selector": self.need.selector, "slot": slot}
        self._stored = SynthesisLog(cycle.connection.root()).add(self.record)

    def installed(self, cycle: Cycle, result: Any) -> None:
        stored = getattr(self, "_stored", None)
        if stored is not None:
            log_ = SynthesisLog(cycle.connection.root())
            entry = log_.get(stored)
            if entry is not None:
                entry["result"] = prompt._short(result, 2000)


def install_proposal(
    cycle: Cycle,
    receiver: UvmObject,
    selector: str,
    proposal: dict[str, Any],
    *,
    meta: dict[str, Any] | None = None,
    reason: str = "",
) -> None:
    """Install a proposal from the mind in ``cycle``'s transaction, as the mind.

    ``proposal`` holds ``source`` (one function, installed as ``receiver``'s own
    method for ``selector``: a new version if the receiver has one) or ``acts``
    (applied with ``receiver`` as the default target). The version's author is
    ``mind`` and its ``meta`` is what the kernel's synthesis gives (prompt
    digest, model, verdict, record), never what the proposal says. While it runs
    the cycle is marked a proposal (``Cycle.proposal``), so the Genesis objects'
    protected slots and names are refused (``uvm.protection``). The live path
    (``Plan.install``) and the crucible's trial both install through here.
    """
    author, flag = cycle.author, cycle.proposal
    cycle.author, cycle.proposal = MIND_AUTHOR, True
    try:
        source = proposal.get("source")
        if source is not None:
            slot = slot_name(selector)
            existing = receiver._slots.get(slot)
            if isinstance(existing, Method):
                check_slot(receiver, slot, "redefine")
                existing.define(source, author=MIND_AUTHOR, reason=reason, meta=meta)
            else:
                write_slot(receiver, slot, Method(source, author=MIND_AUTHOR, reason=reason,
                                                  meta=meta))
        else:
            apply_acts(receiver, proposal.get("acts"))
    finally:
        cycle.author, cycle.proposal = author, flag


class Synthesizer:
    """Turns a not-understood message into an approved proposal, or ``SynthesisFailed``.

    ``chat``: an object with ``chat(messages, *, schema, schema_name,
    max_tokens, temperature, model) -> answer`` where the answer has
    ``text``, ``parsed`` and ``model`` (``weaver.chat.ChatBackend``).
    ``crucible``: an object with ``review(proposal, *, receiver, selector,
    args, context) -> verdict`` (``approved``, ``reasons``, ``to_plain()``),
    or None to install whatever parses (recorded as unreviewed; for tests of
    the plumbing only). ``schema``: the JSON schema of a proposal.
    ``load_adapter(info) -> model name``: loads a registered adapter on the
    model server (the CognitiveWeaver's runtime, ``weaver.lora.LoraRuntime``).
    When given, the adapter the image's ``weaver`` object names for ``facet``
    answers the request (``model=<adapter>``); when none is named, or it
    cannot be loaded (logged and recorded), the backend's base model does.
    """

    def __init__(
        self,
        chat: Any,
        crucible: Any,
        *,
        schema: dict[str, Any] | None = None,
        attempts: int = 2,
        facet: str = "code_generation",
        load_adapter: Any = None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        principles: str = prompt.PRINCIPLES,
        deadline: float = 600.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.chat = chat
        self.crucible = crucible
        self.schema = schema
        self.attempts = attempts
        self.facet = facet
        self.load_adapter = load_adapter
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.principles = principles
        #: how long a second request for the same selector waits for the first
        self.deadline = deadline

    # -- the kernel's entry points -------------------------------------------------

    def plan(self, kernel: Any, need: NeedsSynthesis, *, author: str = "") -> Plan:
        started = time.monotonic()
        context = kernel.read(
            lambda cycle: prompt.context_for(cycle, need.receiver, need.selector, need.arguments)
        )
        chat = prompt.messages(context, principles=self.principles)
        model, facet_note = self._facet_model(kernel)
        record: dict[str, Any] = {
            "id": new_record_id(),
            "timestamp": time.time(),
            "receiver": need.receiver,
            "receiver_name": context["names"][0] if context["names"] else None,
            "selector": need.selector,
            "arguments": context["arguments"],
            "facet": self.facet,
            "model": model or getattr(self.chat, "model", ""),
            "prompt": chat,
            "prompt_digest": prompt.digest(chat),
            "asked_by": author,
            "facet_note": facet_note,
            "attempts": [],
            "outcome": None,
            "method": None,
            "result": None,
            "error": None,
        }
        reasons: list[str] = []
        timings: dict[str, float] = {"prompt_ms": (time.monotonic() - started) * 1000}
        for number in range(1, self.attempts + 1):
            attempt: dict[str, Any] = {"number": number, "raw": "", "proposal": None,
                                       "verdict": None, "error": None}
            record["attempts"].append(attempt)
            t0 = time.monotonic()
            try:
                answer = self.chat.chat(
                    chat, schema=self.schema, schema_name="proposal",
                    max_tokens=self.max_tokens, temperature=self.temperature, model=model,
                )
            except Exception as exc:  # the weaver's errors; the mind may be down or babbling
                attempt["error"] = f"{type(exc).__name__}: {exc}"
                attempt["raw"] = str(getattr(exc, "text", ""))[:RAW_CHARS]
                reasons = [f"mind: {attempt['error']}"]
                if not _worth_repairing(exc):
                    break
                chat = chat + prompt.repair(attempt["raw"], reasons)
                continue
            finally:
                timings[f"mind_{number}_ms"] = (time.monotonic() - t0) * 1000
            attempt["raw"] = str(answer.text)[:RAW_CHARS]
            record["model"] = getattr(answer, "model", None) or record["model"]
            proposal, problem = _proposal(answer.parsed)
            if problem:
                reasons = [f"answer: {problem}"]
                attempt["error"] = problem
                chat = chat + prompt.repair(attempt["raw"], reasons)
                continue
            attempt["proposal"] = proposal
            t1 = time.monotonic()
            approved, reasons, verdict = self._review(proposal, need, context)
            timings[f"crucible_{number}_ms"] = (time.monotonic() - t1) * 1000
            attempt["verdict"] = verdict
            if approved:
                record["timings"] = timings
                meta = {
                    "record": record["id"],
                    "prompt_digest": record["prompt_digest"],
                    "model": record["model"],
                    "facet": self.facet,
                    "verdict": _verdict_summary(verdict),
                }
                return Plan(need, proposal, record, meta)
            chat = chat + prompt.repair(attempt["raw"], reasons)
        record["timings"] = timings
        record["outcome"] = "rejected"
        rid = self._keep(kernel, record)
        n = len(record["attempts"])
        raise SynthesisFailed(
            f"{need.selector!r} is not understood and the mind's {n} proposal(s) for it were "
            f"rejected: " + "; ".join(reasons[:6]) + f" (synthesis record {rid}). "
            "Define the method yourself with defineMethod:source:, or try another model.",
            reasons=reasons, record=rid,
        )

    def failed(self, kernel: Any, plan: Plan, exc: UVMError) -> None:
        """The approved proposal did not survive the real run: keep that in the record."""
        plan.record["outcome"] = "error"
        plan.record["error"] = {"type": type(exc).__name__, "message": str(exc)[:2000]}
        try:
            self._keep(kernel, plan.record)
        except Exception:  # the record is secondary to the client's error
            log.exception("could not keep synthesis record %s", plan.record["id"])

    # -- helpers ---------------------------------------------------------------------

    def _facet_model(self, kernel: Any) -> tuple[str | None, str]:
        """The adapter serving this mind's facet, loaded; (None, why) for the base model."""
        if self.load_adapter is None:
            return None, ""

        def lookup(cycle: Cycle) -> dict[str, Any] | None:
            try:
                weaver = cycle.registry.resolve("weaver")
            except UVMError:
                return None
            name = facet_for(weaver, self.facet)
            adapters = weaver._slots.get("adapters") or {}
            # a deep plain copy: nothing of the image outlives the read's connection
            return plain_copy(adapters[name]) if name and name in adapters else None

        info = kernel.read(lookup)
        if info is None:
            return None, "no adapter for the facet: base model"
        try:
            return self.load_adapter(info), f"adapter {info['name']}"
        except Exception as exc:  # the base model still answers; the record says why
            log.warning("adapter %s for %s not loaded: %s", info.get("name"), self.facet, exc)
            return None, f"adapter {info.get('name')} not loaded ({exc}): base model"

    def _review(
        self, proposal: dict[str, Any], need: NeedsSynthesis, context: dict[str, Any]
    ) -> tuple[bool, list[str], dict[str, Any] | None]:
        if self.crucible is None:
            return True, [], {"approved": True, "stages": [], "reasons": [],
                              "note": "no crucible configured: unreviewed"}
        try:
            verdict = self.crucible.review(
                proposal, receiver=need.receiver, selector=need.selector,
                args=list(need.arguments), context=context.get("label", ""),
            )
        except Exception as exc:
            return False, [f"crucible: {type(exc).__name__}: {exc}"], None
        plain = verdict.to_plain()
        return bool(verdict.approved), list(verdict.reasons), plain

    def _keep(self, kernel: Any, record: dict[str, Any]) -> str:
        return kernel.write(
            lambda cycle: SynthesisLog(cycle.connection.root()).add(record),
            author=MIND_AUTHOR, note=f"synthesis record {record['selector']}",
        )


def _worth_repairing(exc: Exception) -> bool:
    # An unreachable or timed-out server will not improve by asking again now;
    # an answer that did not parse may.
    return type(exc).__name__ in {"BadAnswer"}


def _proposal(parsed: Any) -> tuple[dict[str, Any], str]:
    if not isinstance(parsed, dict):
        return {}, f"expected a JSON object with 'source' or 'acts', got {type(parsed).__name__}"
    source, acts = parsed.get("source"), parsed.get("acts")
    if isinstance(source, str) and source.strip():
        return {"thought": str(parsed.get("thought", ""))[:4000], "source": source}, ""
    if isinstance(acts, list) and acts:
        return {"thought": str(parsed.get("thought", ""))[:4000], "acts": acts}, ""
    return {}, "the answer has neither a non-empty 'source' string nor a non-empty 'acts' list"


def _verdict_summary(verdict: dict[str, Any] | None) -> dict[str, Any]:
    if not verdict:
        return {}
    return {
        "approved": verdict.get("approved"),
        "stages": {s.get("stage"): s.get("status") for s in verdict.get("stages", [])},
    }
