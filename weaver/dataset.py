"""The Grand Narrative builder: the image's records -> validated, ordered JSONL files.

Sources, each turned into didactic turns (``weaver.narrative.DidacticRecord``):

* **synthesis records** (``uvm.records.export_records(db)["synthesis"]``): an installed
  synthesis is a turn whose act is the proposal's acts, or one ``DEFINE_METHOD`` of its
  source; every attempt the crucible rejected is a review turn in chapter 4 (The Living
  Codex) with no act; a synthesis that ended in an error with no proposal is skipped
  (reported). Chapter: control flow (booleans, blocks, their selectors) -> 2; the weaver,
  adapters, facets -> 3; the crucible, checks -> 4; anything else -> 1.
* **method versions** (``["methods"]``) not already told by a synthesis: genesis' own
  methods -> chapter 2; a rollback (``rollback to version N``) -> 7 as ``ROLLBACK_METHOD``;
  a later version by anyone -> 7 (a correction); a first version -> by the names as above.
* **handovers** (rows of ``supervisor.handover_report.summarize``) -> chapter 8, no act; one
  still in progress is skipped.
* **templates** (``weaver.curriculum``) for chapters no lived turn reached (or all, or none).

The system prompt of every turn is the chapter's (``curriculum.system_prompt``): it asks
for the fixed assistant layout the ChatML form uses, whatever prompt the mind had then;
the user utterance of a synthesis is the mind's own user message.

Every turn is validated; one that fails, or a source record that cannot be read, is
listed in ``skipped`` with its source and the reason, never kept. Output (``build``)::

    finetuning_dataset.jsonl   every turn, didactic form, curriculum order
    finetuning_chatml.jsonl    the training split, {"messages": [...]}, same order
    heldout_chatml.jsonl       the held-out split (sha256 of turn_id; >= 1 line)
    manifest.json              counts per chapter, split, data_digest (sha256 of the
                               training file), skipped records with reasons

Boundary: plain data in, files out; imports neither the UVM nor the supervisor (the CLI
reads the image and the handover log and passes their plain data here).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .curriculum import system_prompt, templates
from .narrative import (
    CURRICULUM,
    DidacticRecord,
    GrandNarrativeError,
    InvalidRecord,
    chapter,
    is_held_out,
    order_key,
    to_chatml,
)

__all__ = [
    "CHATML_FILE", "DATASET_FILE", "HELDOUT_FILE", "MANIFEST_FILE", "DatasetError", "Narrative",
    "Skipped", "build", "collect", "load_chatml", "sha256_file",
]

DATASET_FILE = "finetuning_dataset.jsonl"
CHATML_FILE = "finetuning_chatml.jsonl"
HELDOUT_FILE = "heldout_chatml.jsonl"
MANIFEST_FILE = "manifest.json"
DEFAULT_HELD_OUT = 15

CONTROL_SELECTORS = {"ifTrue:ifFalse:", "ifTrue:", "ifFalse:", "not", "and:", "or:", "whileTrue:",
                     "value", "timesRepeat:", "truthValue", "isNil"}
CONTROL_OBJECTS = {"true", "false", "block", "nil"}
MIND_WORDS = ("weaver", "lora", "adapter", "facet")
CODEX_WORDS = ("crucible", "checks", "atomicswap")
ROLLBACK = re.compile(r"rollback to version (\d+)")


class DatasetError(GrandNarrativeError):
    """The dataset cannot be built or read (nothing to write, unreadable folder)."""


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass
class Narrative:
    records: list[DidacticRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


# --- sources -> raw turns ---------------------------------------------------------------

def _turn_id(prefix: str, *parts: Any) -> str:
    text = "-".join(str(p) for p in parts)
    clean = re.sub(r"[^A-Za-z0-9._:@-]", "_", text)
    if len(clean) > 150:
        clean = clean[:100] + "." + hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{prefix}-{clean}"


def _turn(tid: str, ch: int, task: str, user: str, thought: str, reply: str, acts: Any,
          source: str, ts: float | None, *, facet: str | None = None,
          outcome: str | None = None) -> dict[str, Any]:
    c = chapter(ch)
    return {
        "turn_id": tid, "system_prompt": system_prompt(ch), "user_utterance": user,
        "llm_internal_monologue": thought, "llm_persona_response": reply, "autopoietic_act": acts,
        "metadata": {"act": c.act, "chapter": ch, "chapter_title": c.title, "task": task,
                     "persona": c.persona, "source": source, "timestamp": ts, "facet": facet,
                     "outcome": outcome},
    }


def _chapter_for(name: str | None, selector: str) -> tuple[int, str]:
    words = f"{name or ''} {selector}".lower()
    if (name or "") in CONTROL_OBJECTS or selector in CONTROL_SELECTORS:
        return 2, "control_flow"
    if any(w in words for w in MIND_WORDS):
        return 3, "function_calling"
    if any(w in words for w in CODEX_WORDS):
        return 4, "code_generation"
    return 1, "code_generation"


def _user_message(prompt: Any) -> str | None:
    users = [m.get("content") for m in prompt or [] if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) and users[-1].strip() else None


def _synthesis_turns(rec: dict[str, Any]) -> list[dict[str, Any]]:
    sid, selector, ts = rec["id"], rec["selector"], float(rec["timestamp"])
    who = rec.get("receiver_name") or rec["receiver"]
    user = _user_message(rec.get("prompt")) or (
        f"doesNotUnderstand: {selector} sent to {who} with arguments "
        f"{json.dumps(rec.get('arguments', []))}.")
    turns = []
    for i, attempt in enumerate(rec.get("attempts") or []):
        verdict, proposal = attempt.get("verdict"), attempt.get("proposal")
        if verdict is None or verdict.get("approved") or proposal is None:
            continue
        reasons = [str(r) for r in verdict.get("reasons") or []] or ["no reason given"]
        shown = proposal.get("source") or json.dumps(proposal.get("acts"))
        turns.append(_turn(
            _turn_id("review", sid, i), 4, "persona_response",
            f"Review this proposal for {selector} on {who}:\n{shown}",
            f"The crucible examined attempt {i + 1}. " + " ".join(reasons),
            "Rejected: " + "; ".join(reasons), [], f"synthesis:{sid}#attempt{i}", ts + i * 1e-3,
            facet=rec.get("facet"), outcome="rejected"))
    outcome = rec["outcome"]
    if outcome != "installed":
        if not turns:
            err = rec.get("error") or {}
            raise InvalidRecord(f"synthesis ended {outcome!r} with no reviewed proposal"
                                + (f": {err.get('type')}: {err.get('message')}" if err else ""))
        return turns
    final = next((a for a in reversed(rec.get("attempts") or [])
                  if (a.get("verdict") or {}).get("approved") and a.get("proposal")), None)
    if final is None:
        raise InvalidRecord("installed synthesis without an approved proposal")
    proposal = final["proposal"]
    method = rec.get("method") or {}
    if proposal.get("acts"):
        acts = proposal["acts"]
    elif proposal.get("source"):
        acts = [{"action": "DEFINE_METHOD", "target": who, "selector": method.get("selector", selector),
                 "source": proposal["source"], "reason": f"doesNotUnderstand: {selector}"}]
    else:
        raise InvalidRecord("approved proposal has neither source nor acts")
    ch, task = _chapter_for(rec.get("receiver_name"), selector)
    thought = (proposal.get("thought") or "").strip() or (
        f"{who} does not understand {selector}; the message is a request to create it.")
    version = f" (version {method['version']})" if method.get("version") else ""
    reply = f"{who} now understands {method.get('selector', selector)}{version}."
    turns.append(_turn(_turn_id("syn", sid), ch, task, user, thought, reply, acts,
                       f"synthesis:{sid}", ts + 1, facet=rec.get("facet"), outcome="installed"))
    return turns


def _method_turn(m: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    name, selector, n = m.get("object_name"), m["selector"], int(v["version"])
    who = name or m["object"]
    reason, author = str(v.get("reason") or ""), str(v.get("author") or "unknown")
    back = ROLLBACK.search(reason)
    if back:
        ch, task = 7, "control_flow"
        acts = [{"action": "ROLLBACK_METHOD", "target": who, "selector": selector,
                 "version": int(back.group(1)), "reason": reason}]
        user = f"Return {selector} on {who} to version {back.group(1)}."
        thought = (f"Version {n - 1} of {selector} is not what {who} should answer. Rollback "
                   f"appends version {back.group(1)} again as version {n}: history is kept.")
    else:
        if author == "genesis":
            ch, task = 2, "control_flow" if (name in CONTROL_OBJECTS) else "code_generation"
        elif n > 1:
            ch, task = 7, "code_generation"
        else:
            ch, task = _chapter_for(name, selector)
        acts = [{"action": "DEFINE_METHOD", "target": who, "selector": selector,
                 "source": v["source"], **({"reason": reason} if reason else {})}]
        user = f"{who} should understand {selector}." + (f" ({reason})" if reason else "")
        thought = (f"{'A new version of' if n > 1 else 'A first'} method {selector} on {who}, "
                   f"written by {author}. " + (f"Why: {reason}. " if reason else "")
                   + "A method is source in a slot: one def with the receiver first.")
    reply = f"{who} answers {selector} with version {n}."
    return _turn(_turn_id("method", who, selector, f"v{n}"), ch, task, user, thought, reply, acts,
                 f"method:{m['object']}/{selector}/v{n}", float(v["timestamp"]), outcome="installed")


def _handover_turn(row: dict[str, Any]) -> dict[str, Any]:
    hid, outcome = row["handover"], row.get("outcome")
    if outcome in (None, "in progress"):
        raise InvalidRecord("handover still in progress")
    if row.get("kind") == "rollback":
        user = "Roll the environment back to an earlier generation."
    else:
        add, remove = row.get("add") or [], row.get("remove") or []
        user = ("Evolve the environment: add " + (", ".join(add) or "nothing")
                + "; remove " + (", ".join(remove) or "nothing") + ".")
    phases = row.get("phases") or {}
    steps = ", ".join(f"{p} {float(s):.1f}s" for p, s in phases.items()) or "no phases recorded"
    thought = ("The Ship of Theseus: build a new environment, start a candidate on the same image, "
               f"validate it, switch in one step, drain, then probation. Phases: {steps}.")
    if row.get("reason"):
        thought += f" It failed in {row.get('failed_phase')}: {row['reason']}."
    reply = f"Handover {hid} ({row.get('kind', 'evolve')}): {outcome}."
    return _turn(_turn_id("handover", hid), 8, "persona_response", user, thought, reply, [],
                 f"handover:{hid}", float(row["started"]), outcome=str(outcome))


def _safely(source: str, make: Any, skipped: list[Skipped]) -> list[dict[str, Any]]:
    try:
        out = make()
    except InvalidRecord as exc:
        skipped.append(Skipped(source, str(exc)))
        return []
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        skipped.append(Skipped(source, f"malformed record: {what}"))
        return []
    return out if isinstance(out, list) else [out]


def _label(kind: str, rec: Any, key: str) -> str:
    return f"{kind}:{rec.get(key, '?')}" if isinstance(rec, dict) else f"{kind}:<{type(rec).__name__}>"


def collect(export: dict[str, Any] | None = None, handovers: Iterable[dict[str, Any]] = (), *,
            with_templates: Literal["missing", "all", "none"] = "missing") -> Narrative:
    """Validated turns from the sources, in curriculum order, and what was skipped and why."""
    skipped: list[Skipped] = []
    raw: list[dict[str, Any]] = []
    export = export or {}
    told: set[tuple[str, str, int]] = set()
    for rec in export.get("synthesis") or []:
        raw += _safely(_label("synthesis", rec, "id"), lambda r=rec: _synthesis_turns(r), skipped)
        if isinstance(rec, dict) and rec.get("outcome") == "installed" and rec.get("method"):
            told.add((str(rec.get("receiver")), str(rec["method"].get("selector")),
                      int(rec["method"].get("version") or 0)))
    for m in export.get("methods") or []:
        versions = m.get("versions") if isinstance(m, dict) else None
        if not isinstance(versions, list):
            skipped.append(Skipped(_label("method", m, "selector"), "malformed record: no versions list"))
            continue
        for v in versions:
            key = (str(m.get("object")), str(m.get("selector")), int(v.get("version") or 0)
                   if isinstance(v, dict) else 0)
            if key in told:
                continue
            src = f"method:{m.get('object')}/{m.get('selector')}/v{key[2]}"
            raw += _safely(src, lambda m=m, v=v: _method_turn(m, v), skipped)
    for row in handovers:
        raw += _safely(_label("handover", row, "handover"), lambda r=row: _handover_turn(r), skipped)
    return _validated(raw, skipped, with_templates)


def _validated(raw: list[dict[str, Any]], skipped: list[Skipped], with_templates: str) -> Narrative:
    out = Narrative(skipped=skipped)
    seen: set[str] = set()

    def add(items: list[dict[str, Any]]) -> None:
        for item in items:
            source = (item.get("metadata") or {}).get("source") or item.get("turn_id") or "?"
            try:
                rec = DidacticRecord.checked(item)
            except InvalidRecord as exc:
                skipped.append(Skipped(str(source), str(exc)))
                continue
            if rec.turn_id in seen:
                skipped.append(Skipped(str(source), f"duplicate turn_id {rec.turn_id}"))
                continue
            seen.add(rec.turn_id)
            out.records.append(rec)

    add(raw)
    lived = {r.metadata.chapter for r in out.records}
    if with_templates == "all":
        add(templates())
    elif with_templates == "missing":
        add(templates(c.number for c in CURRICULUM if c.number not in lived))
    out.records.sort(key=order_key)
    return out


# --- files ----------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write(path: Path, lines: Iterable[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def split(records: list[DidacticRecord], percent: int) -> tuple[list[DidacticRecord], list[DidacticRecord]]:
    """(train, held_out) by ``is_held_out``; at least one turn on each side when there are two."""
    held = [r for r in records if is_held_out(r.turn_id, percent)]
    if not held and len(records) >= 2:
        # the smallest hash is the one a larger percent would take first
        first = min(records, key=lambda r: hashlib.sha256(r.turn_id.encode()).digest()[:8])
        held = [first]
    if len(held) == len(records) and len(records) >= 2:
        held = held[:-1]
    ids = {r.turn_id for r in held}
    return [r for r in records if r.turn_id not in ids], held


def build(out_dir: str | os.PathLike[str], narrative: Narrative, *,
          held_out_percent: int = DEFAULT_HELD_OUT) -> dict[str, Any]:
    """Write the four files of the module docstring into ``out_dir``; returns the manifest."""
    if not 0 < held_out_percent < 100:
        raise DatasetError(f"held_out_percent must be between 1 and 99, got {held_out_percent}")
    if len(narrative.records) < 2:
        raise DatasetError(f"a dataset needs at least 2 valid turns (one to train, one held out); "
                           f"got {len(narrative.records)}, skipped {len(narrative.skipped)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, held = split(narrative.records, held_out_percent)
    _write(out / DATASET_FILE, (r.line() for r in narrative.records))
    _write(out / CHATML_FILE, (json.dumps(to_chatml(r), ensure_ascii=False) for r in train))
    _write(out / HELDOUT_FILE, (json.dumps(to_chatml(r), ensure_ascii=False) for r in held))
    chapters = Counter(r.metadata.chapter for r in narrative.records)
    manifest = {
        "format": 1,
        "turns": len(narrative.records), "train": len(train), "held_out": len(held),
        "held_out_percent": held_out_percent,
        "held_out_ids": [r.turn_id for r in held],
        "chapters": {str(c.number): {"act": c.act, "title": c.title, "turns": chapters.get(c.number, 0),
                                     "templates": sum(1 for r in narrative.records
                                                      if r.metadata.chapter == c.number
                                                      and r.metadata.timestamp is None)}
                     for c in CURRICULUM},
        "data_digest": sha256_file(out / CHATML_FILE),
        "dataset_digest": sha256_file(out / DATASET_FILE),
        "heldout_digest": sha256_file(out / HELDOUT_FILE),
        "skipped": [asdict(s) for s in narrative.skipped],
    }
    _write(out / MANIFEST_FILE, [json.dumps(manifest, indent=1)])
    return manifest


def load_chatml(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The ``{"messages": [...]}`` lines of a ChatML file; ``DatasetError`` names a bad line."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}; build it with `batos dataset build`") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
            raise DatasetError(f"{path}:{n}: expected {{\"messages\": [...]}}")
        rows.append(row)
    return rows
