"""The CognitiveWeaver's persistent half: the ``weaver`` object, its facets and adapters.

The runtime half (``weaver/``: loading adapters on the vLLM server, training)
holds no state of its own that must survive; what was decided lives here, in
the image, and changes only inside messages (one transaction each):

``weaver``, a Genesis object (parent ``traits``), with slots

    adapters   name -> adapter info (plain data: name, path, base_model, rank,
               size_bytes, facet, data_digest, eval_scores, created, digest);
               a name is never reused for different weights
    facets     facet name (e.g. "code generation") -> its facet object
    inquiry    the Characterological Inquiry Loop's settings (``DEFAULT_INQUIRY``)
    cycles     summaries of the loop's cycles, newest last, at most ``MAX_CYCLES``

A facet object (parent ``traits``; ``name`` "facet:<facet>", not a registered
name) has ``facet``, ``adapter`` (an adapter name, or None for the base model)
and ``since``. ``switchFacet:to:`` never edits it in place: it clones it with
the new adapter and swaps the two with ``become:`` in the same transaction, so
every reference to the facet object (the ``facets`` mapping, a router's slot)
sees the new adapter at once, and an abort leaves both as they were. After the
swap the facet object's ``previous`` slot refers to the clone, which now holds
the former state with ``until`` set: the facet's history is a chain.

The inquiry settings and which adapter serves a facet are the operator's and
the kernel's decisions (``uvm.protection``): ``setInquiry:to:`` and
``switchFacet:to:`` apply only as a request sent straight to the weaver (by a
person, or by the inquiry loop through the kernel), logged in the Genesis
change log; never in a proposal from the mind or under other method code. The
``inquiry`` and ``facets`` slots are protected like the Genesis methods, the
facet objects the weaver holds are its members (each slot protected,
``become:`` with one refused).

This module holds the weaver's Genesis slots (``WEAVER_SLOTS``, planted by
``uvm.genesis``) and the functions behind its primitives (``uvm.primitives``
wraps them, so method code reaches them as ``weaver_*``). They run on the
message's worker thread, inside its transaction (``registry.current()``).
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from persistent.list import PersistentList
from persistent.mapping import PersistentMapping

from .errors import BadArguments
from .obj import UvmObject, label, storable, write_slot
from .primitives import clone_object
from .protection import check_member, is_member
from .registry import current
from .selectors import PARENT_SLOT

__all__ = [
    "ADAPTER_FIELDS",
    "DEFAULT_INQUIRY",
    "MAX_CYCLES",
    "WEAVER_MEMBERS",
    "WEAVER_PROTECTED",
    "WEAVER_SLOTS",
    "facet_for",
    "facet_object",
    "inquiry_config",
    "record_cycle",
    "register_adapter",
    "set_inquiry",
    "switch_facet",
]

MAX_CYCLES = 200
DEFAULT_INQUIRY: dict[str, Any] = {
    "enabled": False,       # the off switch: the loop runs only when this is True
    "idle_seconds": 300,    # no client request for this long = idle
    "threshold": 0.35,      # a cycle starts only while the CEM is below this
    "min_interval": 3600,   # seconds between the starts of two cycles
    "max_steps": 20,        # training steps of one cycle
    "budget_seconds": 1800,  # wall-clock budget of one cycle
}
REQUIRED_FIELDS = ("name", "path", "base_model", "rank", "size_bytes", "facet")
ADAPTER_FIELDS = (*REQUIRED_FIELDS, "data_digest", "eval_scores", "created", "digest")
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


#: the weaver's data slots that only its Genesis methods change, on a person's request
#: or the kernel's (the inquiry loop's) message: never a proposal, never method code
WEAVER_PROTECTED = frozenset({"inquiry", "facets"})
#: the weaver's member objects (``uvm.protection.declare_members``): the facet objects
#: its ``facets`` mapping holds, named "facet:<facet>"
WEAVER_MEMBERS = ("facets", "facet:")


def _m(source: str) -> str:
    return source.strip() + "\n"


WEAVER_SLOTS: dict[str, Any] = {
    "name": "weaver",
    "description": "The CognitiveWeaver's registry: LoRA adapters, the facet objects that say "
                   "which adapter serves each persona facet, and the inquiry loop's settings "
                   "and cycles. The runtime (weaver/) loads what this records.",
    "adapters": {},
    "facets": {},
    "inquiry": dict(DEFAULT_INQUIRY),
    "cycles": [],
    "registerAdapter": _m('''
def registerAdapter(self, info):
    """Record an adapter (plain data, see uvm.facets); answers its name. A name already
    registered for other weights is refused."""
    return weaver_register_adapter(self, info)
'''),
    "facetFor": _m('''
def facetFor(self, facet):
    """The adapter name that serves facet, or None for the base model."""
    return weaver_facet_for(self, facet)
'''),
    "facetObject": _m('''
def facetObject(self, facet):
    """The facet object of facet (created, with the base model, on first use)."""
    return weaver_facet_object(self, facet)
'''),
    "switchFacet_to": _m('''
def switchFacet_to(self, facet, adapter):
    """Serve facet with a registered adapter (None: the base model), by become:;
    answers the previous adapter name."""
    return weaver_switch_facet(self, facet, adapter)
'''),
    "recordCycle": _m('''
def recordCycle(self, summary):
    """Append one inquiry cycle's summary (a dict; newest last, the oldest dropped past
    200); answers the summary as kept."""
    return weaver_record_cycle(self, summary)
'''),
    "inquiryConfig": _m('''
def inquiryConfig(self):
    """The inquiry loop's settings, defaults filled in."""
    return weaver_inquiry_config(self)
'''),
    "setInquiry_to": _m('''
def setInquiry_to(self, key, value):
    """Set one inquiry setting (validated); answers the whole configuration."""
    return weaver_set_inquiry(self, key, value)
'''),
}


# --- helpers ----------------------------------------------------------------------------


def _weaver(obj: Any) -> UvmObject:
    if not isinstance(obj, UvmObject):
        raise BadArguments(f"the receiver must be an image object, got {type(obj).__name__}")
    return obj


def _own(obj: UvmObject, slot: str, kind: type) -> Any:
    """The receiver's own container slot, created empty when missing or of another kind."""
    value = obj._slots.get(slot)
    if not isinstance(value, kind):
        write_slot(obj, slot, {} if kind is PersistentMapping else [])
        value = obj._slots[slot]
    return value


def _facet_name(facet: Any) -> str:
    if not isinstance(facet, str) or not facet.strip() or len(facet) > 128:
        raise BadArguments(
            f"a facet is named by a non-empty string of at most 128 characters, got {facet!r}"
        )
    return facet


def _number(key: str, value: Any, *, low: float, high: float = math.inf,
            open_low: bool = False, integer: bool = False) -> float | int:
    kind = int if integer else int | float
    ok = not isinstance(value, bool) and isinstance(value, kind)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        what = "an integer" if integer else "a number"
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        upper = f" and <= {high:g}" if high != math.inf else ""
        raise BadArguments(f"{key!r} must be {what} {bound}{upper}, got {value!r}")
    return value


def _string(key: str, value: Any, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value) or len(value) > 4096:
        need = "a string" if empty else "a non-empty string"
        raise BadArguments(f"adapter field {key!r} must be {need} (at most 4096), got {value!r}")
    return value


# --- adapters ---------------------------------------------------------------------------


def _adapter_entry(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict | PersistentMapping):
        raise BadArguments(
            "registerAdapter: takes the adapter's info as a dict with "
            f"{', '.join(REQUIRED_FIELDS)} (and optionally data_digest, eval_scores, created, "
            f"digest), got {type(info).__name__}"
        )
    missing = [key for key in REQUIRED_FIELDS if key not in info]
    unknown = sorted(set(info) - set(ADAPTER_FIELDS))
    if missing or unknown:
        raise BadArguments(
            "adapter info: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
            ) + f" (the fields are {', '.join(ADAPTER_FIELDS)})"
        )
    name = info["name"]
    if not isinstance(name, str) or not _ADAPTER_NAME.match(name):
        raise BadArguments(
            f"adapter name {name!r} must be 1-128 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit (weaver.adapters names them <facet>-<hash>)"
        )
    scores = info.get("eval_scores", {})
    if not isinstance(scores, dict | PersistentMapping) or not all(
        isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int | float)
        for k, v in scores.items()
    ):
        raise BadArguments(f"adapter field 'eval_scores' maps names to numbers, got {scores!r}")
    created = info.get("created") or datetime.now(UTC).isoformat()
    if isinstance(created, bool) or not isinstance(created, str | int | float):
        raise BadArguments(f"adapter field 'created' is an ISO time or Unix seconds, got {created!r}")
    return {
        "name": name,
        "path": _string("path", info["path"], empty=False),
        "base_model": _string("base_model", info["base_model"]),
        "rank": _number("rank", info["rank"], low=1, integer=True),
        "size_bytes": _number("size_bytes", info["size_bytes"], low=0, integer=True),
        "facet": _facet_name(info["facet"]),
        "data_digest": _string("data_digest", info.get("data_digest", "")),
        "eval_scores": {k: float(v) for k, v in scores.items()},
        "created": created,
        "digest": _string("digest", info.get("digest", "")),
    }


def register_adapter(weaver: Any, info: Any) -> str:
    """Validate ``info`` and record it under its name; answers the name.

    Registering the same weights again (same name, path and digest) changes
    nothing; a name already registered for another path or digest is refused.
    """
    w = _weaver(weaver)
    entry = _adapter_entry(info)
    adapters = _own(w, "adapters", PersistentMapping)
    old = adapters.get(entry["name"])
    if old is not None:
        if old.get("path") == entry["path"] and old.get("digest", "") == entry["digest"]:
            return entry["name"]
        raise BadArguments(
            f"adapter name {entry['name']!r} is already registered for {old.get('path')!r} "
            f"(digest {old.get('digest', '')[:12] or 'none'}); a name is never reused for "
            "other weights: register these under their own content-hash name "
            "(weaver.adapters.describe_adapter)"
        )
    adapters[entry["name"]] = storable(entry)
    return entry["name"]


# --- facets -----------------------------------------------------------------------------


def facet_for(weaver: Any, facet: Any) -> str | None:
    """The adapter serving ``facet``, None for the base model (read-only: creates nothing)."""
    w = _weaver(weaver)
    facets = w._slots.get("facets")
    holder = facets.get(_facet_name(facet)) if isinstance(facets, PersistentMapping) else None
    if not isinstance(holder, UvmObject):
        return None
    adapter = holder._slots.get("adapter")
    return adapter if isinstance(adapter, str) else None


def facet_object(weaver: Any, facet: Any) -> UvmObject:
    """The facet object of ``facet``, created (serving the base model) when missing."""
    w = _weaver(weaver)
    name = _facet_name(facet)
    facets = _own(w, "facets", PersistentMapping)
    holder = facets.get(name)
    if isinstance(holder, UvmObject):
        return holder
    holder = UvmObject()
    cycle = current()
    for slot, value in (("name", f"facet:{name}"), ("facet", name), ("adapter", None),
                        ("since", time.time()),
                        (PARENT_SLOT, cycle.registry.resolve("traits"))):
        write_slot(holder, slot, value)
    cycle.registry.register(holder)
    cycle.created.append(holder)
    # a new facet serves the base model: no decision, so anyone may create one; written
    # past the in-place guard of the protected ``facets`` slot (a stored form already)
    facets.data[name] = holder
    facets._p_changed = True
    return holder


def switch_facet(weaver: Any, facet: Any, adapter: Any) -> str | None:
    """Make ``adapter`` (registered, or None for the base model) serve ``facet``, by
    ``become:``; answers the adapter that served it before."""
    w = _weaver(weaver)
    name = _facet_name(facet)
    facets = w._slots.get("facets")
    existing = facets.get(name) if isinstance(facets, PersistentMapping) else None
    # the Genesis weaver's facets, or one of its facet objects a clone still shares
    check_member(None if is_member(existing) else w, "weaver.facets",
                 f"switch facet {name!r} of")
    if adapter is not None:
        adapters = w._slots.get("adapters")
        if not isinstance(adapter, str) or not isinstance(adapters, PersistentMapping) \
                or adapter not in adapters:
            known = ", ".join(sorted(adapters)[:12]) if isinstance(adapters, PersistentMapping) \
                else ""
            raise BadArguments(
                f"adapter {adapter!r} is not registered with {label(w)}: send registerAdapter: "
                f"first (registered: {known or 'none'}), or None for the base model"
            )
    holder = facet_object(w, name)
    previous = holder._slots.get("adapter")
    if previous == adapter:
        return previous
    now = time.time()
    fresh = clone_object(holder)
    write_slot(fresh, "name", f"facet:{name}")
    write_slot(fresh, "adapter", adapter)
    write_slot(fresh, "since", now)
    # after the swap ``holder`` holds these slots, and ``fresh`` the former state:
    write_slot(fresh, "previous", fresh)
    fresh._slots.pop("until", None)
    # become: (as ``become_object``), done here: the permission was checked above, and
    # become: with a facet object the weaver holds is refused to everyone else
    holder._slots, fresh._slots = fresh._slots, holder._slots
    holder._p_changed = True
    fresh._p_changed = True
    write_slot(fresh, "until", now)
    return previous if isinstance(previous, str) else None


# --- the inquiry loop's record and settings ---------------------------------------------


def record_cycle(weaver: Any, summary: Any) -> Any:
    """Append one cycle's summary (newest last, at most ``MAX_CYCLES``); answers it as kept."""
    w = _weaver(weaver)
    if not isinstance(summary, dict | PersistentMapping):
        raise BadArguments(f"recordCycle: takes a dict summary, got {type(summary).__name__}")
    entry = dict(summary)
    entry.setdefault("recorded", time.time())
    cycles = _own(w, "cycles", PersistentList)
    stored = storable(entry)
    cycles.append(stored)
    excess = len(cycles) - MAX_CYCLES
    if excess > 0:
        del cycles[:excess]
    return stored


def _check_setting(key: str, value: Any) -> Any:
    if key == "enabled":
        if not isinstance(value, bool):
            raise BadArguments(f"'enabled' is true or false, got {value!r}")
        return value
    if key == "threshold":
        return _number(key, value, low=0, high=1)
    if key == "max_steps":
        return _number(key, value, low=1, integer=True)
    if key == "min_interval":
        return _number(key, value, low=0)
    return _number(key, value, low=0, open_low=True)  # idle_seconds, budget_seconds


def inquiry_config(weaver: Any) -> dict[str, Any]:
    """The loop's settings: ``DEFAULT_INQUIRY`` overlaid with what the image holds."""
    w = _weaver(weaver)
    stored = w._slots.get("inquiry")
    config = dict(DEFAULT_INQUIRY)
    if isinstance(stored, PersistentMapping):
        config.update({k: v for k, v in stored.items() if k in DEFAULT_INQUIRY})
    return config


def set_inquiry(weaver: Any, key: Any, value: Any) -> dict[str, Any]:
    """Validate and set one setting; answers the whole configuration."""
    w = _weaver(weaver)
    if key not in DEFAULT_INQUIRY:
        raise BadArguments(
            f"{key!r} is not an inquiry setting; the settings are {', '.join(DEFAULT_INQUIRY)}"
        )
    checked = _check_setting(key, value)
    check_member(w, "weaver.inquiry", f"set the inquiry setting {key!r} of")
    inquiry = _own(w, "inquiry", PersistentMapping)
    inquiry.data[key] = checked  # a scalar; permitted (and logged) once, just above
    inquiry._p_changed = True
    return inquiry_config(w)
