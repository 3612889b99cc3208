"""The weaver object's records: its adapters and the inquiry loop's settings and cycles.

Part of the CognitiveWeaver's persistent half (``uvm.facets`` tells the whole
of it): the functions behind ``registerAdapter:``, ``recordCycle:``,
``inquiryConfig`` and ``setInquiry:to:`` (method code reaches them as the
``weaver_*`` primitives), and the checks of what they are given. Every record
is plain data, validated before it is written:

    adapters   name -> adapter info (``ADAPTER_FIELDS``: name, path, base_model,
               rank, size_bytes, facet, data_digest, eval_scores, created,
               digest); a name is never reused for different weights
    inquiry    the loop's settings (``DEFAULT_INQUIRY``), set one at a time, each
               checked; a person's or the kernel's decision (``uvm.protection``)
    cycles     the loop's cycle summaries, newest last, at most ``MAX_CYCLES``

They run on the message's worker thread, inside its transaction.
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
from .obj import UvmObject, storable, write_slot
from .protection import check_member

__all__ = [
    "ADAPTER_FIELDS", "DEFAULT_INQUIRY", "MAX_CYCLES", "REQUIRED_FIELDS", "facet_name",
    "inquiry_config", "own_container", "record_cycle", "register_adapter", "set_inquiry",
    "weaver_object",
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



# --- helpers ----------------------------------------------------------------------------


def weaver_object(obj: Any) -> UvmObject:
    """``obj`` if it is an image object (the weaver), else ``BadArguments``."""
    if not isinstance(obj, UvmObject):
        raise BadArguments(f"the receiver must be an image object, got {type(obj).__name__}")
    return obj


def own_container(obj: UvmObject, slot: str, kind: type) -> Any:
    """The receiver's own container slot, created empty when missing or of another kind."""
    value = obj._slots.get(slot)
    if not isinstance(value, kind):
        write_slot(obj, slot, {} if kind is PersistentMapping else [])
        value = obj._slots[slot]
    return value


def facet_name(facet: Any) -> str:
    """``facet`` if it names a facet (a non-empty string of at most 128), else ``BadArguments``."""
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
        "facet": facet_name(info["facet"]),
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
    w = weaver_object(weaver)
    entry = _adapter_entry(info)
    adapters = own_container(w, "adapters", PersistentMapping)
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


# --- the inquiry loop's record and settings ---------------------------------------------


def record_cycle(weaver: Any, summary: Any) -> Any:
    """Append one cycle's summary (newest last, at most ``MAX_CYCLES``); answers it as kept."""
    w = weaver_object(weaver)
    if not isinstance(summary, dict | PersistentMapping):
        raise BadArguments(f"recordCycle: takes a dict summary, got {type(summary).__name__}")
    entry = dict(summary)
    entry.setdefault("recorded", time.time())
    cycles = own_container(w, "cycles", PersistentList)
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
    w = weaver_object(weaver)
    stored = w._slots.get("inquiry")
    config = dict(DEFAULT_INQUIRY)
    if isinstance(stored, PersistentMapping):
        config.update({k: v for k, v in stored.items() if k in DEFAULT_INQUIRY})
    return config


def set_inquiry(weaver: Any, key: Any, value: Any) -> dict[str, Any]:
    """Validate and set one setting; answers the whole configuration."""
    w = weaver_object(weaver)
    if key not in DEFAULT_INQUIRY:
        raise BadArguments(
            f"{key!r} is not an inquiry setting; the settings are {', '.join(DEFAULT_INQUIRY)}"
        )
    checked = _check_setting(key, value)
    check_member(w, "weaver.inquiry", f"set the inquiry setting {key!r} of")
    inquiry = own_container(w, "inquiry", PersistentMapping)
    inquiry.data[key] = checked  # a scalar; permitted (and logged) once, just above
    inquiry._p_changed = True
    return inquiry_config(w)
