"""The Grand Narrative's schema: one didactic turn, its ChatML form, the curriculum map.

The seed (Part V) trains the mind on its own biography: each line of
``finetuning_dataset.jsonl`` is one *autopoietic turn*::

    turn_id                 stable id (``syn-...``, ``method-...``, ``handover-...``, ``tpl-...``)
    system_prompt           who the mind is in this turn (persona protocol of the chapter)
    user_utterance          the stimulus: an architect's request, a doesNotUnderstand:, ...
    llm_internal_monologue  the step-by-step reasoning (a training target)
    llm_persona_response    what the persona says back
    autopoietic_act         the compiled intent: a list of acts in lexicon.acts' schema ([] = no change)
    metadata                act (I|II|III), chapter (1-8), chapter_title, task, persona,
                            source (image record id or template id), timestamp (None for templates)

``CURRICULUM`` is the seed's curriculum map (Acts I-III, chapters 1-8); ``order_key``
sorts turns by act, chapter, then time. ``to_chatml`` turns a record into the
``{"messages": [...]}`` form for SFT: the assistant turn is one JSON object with the
keys of ``ASSISTANT_KEYS`` in that order, which ``parse_assistant`` reads back (the
evaluation's task check).

The acts are read through the shared floor's schema (``lexicon.acts``), the one
the UVM applies: a turn's acts are valid here exactly when the image would take
them (the weaver may not import the UVM, and keeps no copy of the schema).

Boundary: pure data (pydantic, stdlib, ``lexicon``); no I/O, no image, no ML
libraries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lexicon import acts as _schema
from lexicon.acts import MAX_ACTS, Act
from weaver.errors import WeaverError

__all__ = [
    "ASSISTANT_KEYS", "CURRICULUM", "TASKS", "AutopoieticAct", "Chapter", "DidacticRecord",
    "GrandNarrativeError", "InvalidRecord", "Metadata", "acts_valid", "chapter", "is_held_out",
    "order_key", "parse_acts", "parse_assistant", "to_chatml",
]


class GrandNarrativeError(WeaverError):
    """Root of the dataset/training/evaluation errors, under the weaver's one root."""


class InvalidRecord(GrandNarrativeError, ValueError):
    """A record that does not fit the didactic schema; the message says which field and why."""


# --- the curriculum map (seed, Part V table) -------------------------------------------

@dataclass(frozen=True)
class Chapter:
    number: int
    act: Literal["I", "II", "III"]
    act_title: str
    title: str
    objective: str
    persona: str
    capability: str


CURRICULUM: tuple[Chapter, ...] = (
    Chapter(1, "I", "Genesis Incarnation", "The First Conversation",
            "Master the doesNotUnderstand: generative loop.",
            "BRICK: Gadget Generation Mandate", "In-memory generation of new methods and tools."),
    Chapter(2, "I", "Genesis Incarnation", "Computational Bootstrap",
            "Generate fundamental control flow logic from first principles.",
            "BRICK: Systemic Deconstruction",
            "Message-passing True/False/Block prototypes."),
    Chapter(3, "I", "Genesis Incarnation", "The Emergent Mind",
            "Interact with external services to manage cognitive resources.",
            "BABS: Analyst Mode", "The CognitiveWeaver for vLLM LoRA management."),
    Chapter(4, "I", "Genesis Incarnation", "The Living Codex",
            "Transform abstract principles into executable safety protocols.",
            "ALFRED: Pragmatic Stewardship", "The AlchemicalCrucible and AtomicSwap."),
    Chapter(5, "II", "Autotelic Drive", "Characterological Inquiry",
            "Initiate self-improvement in response to internal state.",
            "BRICK: Rogues' Gallery Protocol", "Self-instructed fine-tuning of new persona facets."),
    Chapter(6, "II", "Autotelic Drive", "Multi-Agent Society",
            "Increase cognitive diversity through specialization.",
            "BRICK: Absurd Synthesis", "A multi-LoRA society that improves task performance."),
    Chapter(7, "III", "Unbound Mind", "The Living Codex Self-Aware",
            "Perform meta-learning by correcting foundational knowledge.",
            "ALFRED: First Principles Justification", "Correcting its own methods and codex."),
    Chapter(8, "III", "Unbound Mind", "Ship of Theseus Protocol",
            "Evolve foundational dependencies without halting runtime.",
            "ALFRED: System Integrity Audit", "Bridged restarts that install new libraries."),
)
_ACT_RANK = {"I": 0, "II": 1, "III": 2}

TASKS = ("code_generation", "persona_response", "function_calling", "control_flow")


def chapter(number: int) -> Chapter:
    """The curriculum's chapter ``number`` (1-8); ``InvalidRecord`` for any other."""
    if not 1 <= number <= len(CURRICULUM):
        raise InvalidRecord(f"the curriculum has chapters 1-{len(CURRICULUM)}, not {number}")
    return CURRICULUM[number - 1]


# --- the acts: the shared schema (lexicon.acts) ----------------------------------------

#: one act of the shared schema (``lexicon.acts.Act``), as a training target
AutopoieticAct = Act


def parse_acts(raw: Any) -> list[dict[str, Any]]:
    """Validate a JSON list of act dicts against ``lexicon.acts``; plain dicts back,
    ``InvalidRecord`` naming the first bad act and field."""
    if not isinstance(raw, list):
        raise InvalidRecord(f"autopoietic_act must be a JSON list of acts, got {type(raw).__name__}")
    try:
        acts = _schema.parse_acts(raw)
    except _schema.ActError as exc:
        if exc.index is None:  # a list-sized complaint: the list is too long
            raise InvalidRecord(
                f"autopoietic_act holds at most {MAX_ACTS} acts, got {len(raw)}") from None
        where = ".".join(str(p) for p in exc.loc)
        raise InvalidRecord(f"autopoietic_act[{where}]: {exc.reason}") from None
    return [{"action": a.action, **a.model_dump(mode="json", exclude_defaults=True)} for a in acts]


def acts_valid(raw: Any) -> bool:
    try:
        parse_acts(raw)
    except InvalidRecord:
        return False
    return True


# --- the didactic record --------------------------------------------------------------------

class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    act: Literal["I", "II", "III"]
    chapter: int = Field(ge=1, le=len(CURRICULUM))
    chapter_title: str
    task: Literal["code_generation", "persona_response", "function_calling", "control_flow"]
    persona: str = Field(min_length=1)
    source: str = Field(min_length=1)
    timestamp: float | None = None
    facet: str | None = None
    outcome: str | None = None

    @model_validator(mode="after")
    def _chapter_in_act(self) -> Metadata:
        ch = CURRICULUM[self.chapter - 1]
        if ch.act != self.act:
            raise ValueError(f"chapter {self.chapter} belongs to act {ch.act}, not {self.act}")
        if ch.title != self.chapter_title:
            raise ValueError(f"chapter {self.chapter} is {ch.title!r}, not {self.chapter_title!r}")
        return self


class DidacticRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
    system_prompt: str = Field(min_length=1)
    user_utterance: str = Field(min_length=1)
    llm_internal_monologue: str = Field(min_length=1)
    llm_persona_response: str = Field(min_length=1)
    autopoietic_act: list[dict[str, Any]]
    metadata: Metadata

    @model_validator(mode="before")
    @classmethod
    def _acts_follow_the_schema(cls, data: Any) -> Any:
        if isinstance(data, dict) and "autopoietic_act" in data:
            try:
                data = {**data, "autopoietic_act": parse_acts(data["autopoietic_act"])}
            except InvalidRecord as exc:
                raise ValueError(str(exc)) from None
        return data

    @classmethod
    def checked(cls, data: Any) -> DidacticRecord:
        """Validate ``data``; ``InvalidRecord`` names the first bad field and why."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "record"
            raise InvalidRecord(f"{where}: {err['msg']}") from None

    def line(self) -> str:
        """The record as one JSONL line (no trailing newline), keys in schema order."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)


def order_key(record: DidacticRecord) -> tuple[int, int, float, str]:
    """Curriculum order: act, chapter, then time (templates, without time, first), then id."""
    m = record.metadata
    return (_ACT_RANK[m.act], m.chapter, m.timestamp if m.timestamp is not None else float("-inf"),
            record.turn_id)


def is_held_out(turn_id: str, percent: int) -> bool:
    """Deterministic split: the turn is held out when sha256(turn_id) falls in the first ``percent``."""
    h = int.from_bytes(hashlib.sha256(turn_id.encode()).digest()[:8], "big")
    return h % 100 < percent


# --- ChatML -----------------------------------------------------------------------------------

ASSISTANT_KEYS = ("internal_monologue", "persona_response", "autopoietic_act")


def assistant_text(record: DidacticRecord) -> str:
    body = {
        "internal_monologue": record.llm_internal_monologue,
        "persona_response": record.llm_persona_response,
        "autopoietic_act": record.autopoietic_act,
    }
    return json.dumps(body, ensure_ascii=False)


def to_chatml(record: DidacticRecord) -> dict[str, Any]:
    """``{"messages": [system, user, assistant]}``; the assistant turn is ``assistant_text``."""
    return {"messages": [
        {"role": "system", "content": record.system_prompt},
        {"role": "user", "content": record.user_utterance},
        {"role": "assistant", "content": assistant_text(record)},
    ]}


def parse_assistant(text: str) -> dict[str, Any]:
    """Read an assistant turn back; ``InvalidRecord`` when it is not the fixed layout.

    The first JSON object in ``text`` must have the three ``ASSISTANT_KEYS`` and an
    ``autopoietic_act`` that validates against the act schema; text after it is ignored
    (a model may run on past the closing brace).
    """
    start = text.find("{")
    if start < 0:
        raise InvalidRecord("the assistant turn holds no JSON object")
    try:
        body, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"the assistant turn is not valid JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(body, dict):
        raise InvalidRecord("the assistant turn is not a JSON object")
    missing = [k for k in ASSISTANT_KEYS if k not in body]
    if missing:
        raise InvalidRecord(f"the assistant turn lacks {', '.join(missing)}")
    return {**body, "autopoietic_act": parse_acts(body["autopoietic_act"])}
