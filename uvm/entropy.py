"""The Composite Entropy Metric (CEM): how diverse, how structured and how new the image is.

Three parts, each a number in [0, 1], read from the image in the current
transaction (nothing is written):

``h_cog``, cognitive diversity
    Shannon entropy of facet usage within the window: the ``facet`` of every
    synthesis record (``uvm.records``) whose timestamp falls in it, normalized
    by ``log(k)`` where ``k`` is the number of facets the image knows (those
    used in the window plus those the CognitiveWeaver holds in its ``facets``
    slot). Uniform use of every known facet gives 1; one facet for everything,
    or no use at all, gives 0.

``structure``, structural complexity
    How evenly behaviour and state are spread over the objects: the mean of
    two normalized entropies over the registry's objects, one of the own data
    slots per object and one of the own methods per object, each divided by
    ``log(number of objects)``. Everything in one object gives 0; the same
    number of slots (and methods) everywhere gives 1.

``novelty``, solution novelty
    The share of method versions created within the window among all method
    versions in the image. Versions written by ``genesis`` (the bootstrap and
    its upgrades) are never new: planting the kernel's physics is not a
    solution the system found.

``cem = w_cog * h_cog + w_struct * structure + w_nov * novelty``, with the
weights normalized to sum 1 (so ``cem`` is in [0, 1] too). Default weights:
``h_cog`` 0.4, ``structure`` 0.3, ``novelty`` 0.3: diversity of thought is the
part the Characterological Inquiry Loop can change by training a facet, so it
weighs most; the other two keep a merely busy image from looking diverse.

Cost: one pass over the registry (each object and each of its methods' version
lists is loaded once) plus a key range of the synthesis log for the window;
about O(objects). Runs on the caller's thread in the caller's transaction.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import BadArguments
from .methods import Method
from .registry import NAMES_KEY, OBJECTS_KEY
from .selectors import PARENT_SLOT

__all__ = ["DEFAULT_WEIGHTS", "DEFAULT_WINDOW", "composite_entropy", "normalized_entropy"]

DEFAULT_WEIGHTS: dict[str, float] = {"h_cog": 0.4, "structure": 0.3, "novelty": 0.3}
DEFAULT_WINDOW = 3600.0
SYNTHESIS_KEY = "batos.synthesis"  # uvm.records.SYNTHESIS_KEY; records sit above this layer
WEAVER_NAME = "weaver"
GENESIS_AUTHOR = "genesis"


def normalized_entropy(counts: Iterable[float], k: int | None = None) -> float:
    """Shannon entropy of ``counts`` divided by ``log(k)`` (default: the number of counts).

    0 for fewer than two categories or no mass at all.
    """
    values = [c for c in counts if c > 0]
    total = sum(values)
    k = len(values) if k is None else k
    if k < 2 or total <= 0:
        return 0.0
    h = -sum((c / total) * math.log(c / total) for c in values)
    return max(0.0, min(1.0, h / math.log(k)))


def _weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    chosen = dict(DEFAULT_WEIGHTS if weights is None else weights)
    if set(chosen) != set(DEFAULT_WEIGHTS):
        raise BadArguments(
            f"CEM weights name exactly {sorted(DEFAULT_WEIGHTS)}, got {sorted(chosen)}"
        )
    for key, value in chosen.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise BadArguments(f"CEM weight {key!r} must be a number >= 0, got {value!r}")
    total = float(sum(chosen.values()))
    if total <= 0:
        raise BadArguments("CEM weights must not all be 0")
    return {key: value / total for key, value in chosen.items()}


def _facet_usage(root: Any, start: float) -> tuple[Counter[str], int]:
    """Facet -> uses within the window, and how many records fell in it."""
    usage: Counter[str] = Counter()
    tree = root.get(SYNTHESIS_KEY)
    if tree is None:
        return usage, 0
    # record ids begin with their timestamp ("%.6f-<hex>"), so the window is a key range
    read = 0
    for record in tree.values(min=f"{start:.6f}"):
        stamp = record.get("timestamp")
        if isinstance(stamp, int | float) and stamp < start:
            continue
        read += 1
        facet = record.get("facet")
        if isinstance(facet, str) and facet:
            usage[facet] += 1
    return usage, read


def _known_facets(objects: Any, names: Any) -> set[str]:
    uuid = names.get(WEAVER_NAME)
    weaver = objects.get(uuid) if uuid is not None else None
    facets = weaver._slots.get("facets") if weaver is not None else None
    if not isinstance(facets, Mapping):
        return set()
    return {key for key in facets if isinstance(key, str)}


def composite_entropy(
    root: Any,
    *,
    window_seconds: float = DEFAULT_WINDOW,
    now: float | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The CEM of the image under ``root`` (a ZODB root mapping), with its parts and counts."""
    if isinstance(window_seconds, bool) or not isinstance(window_seconds, int | float) \
            or window_seconds <= 0:
        raise BadArguments(f"the CEM window is a number of seconds > 0, got {window_seconds!r}")
    chosen = _weights(weights)
    now = time.time() if now is None else float(now)
    start = now - float(window_seconds)
    objects = root.get(OBJECTS_KEY)
    names = root.get(NAMES_KEY)
    if objects is None or names is None:
        raise BadArguments("this database holds no batos image: run 'batos bootstrap'")

    slot_counts: list[int] = []
    method_counts: list[int] = []
    versions_total = 0
    versions_new = 0
    for obj in objects.values():
        data = methods = 0
        for name, value in obj._slots.items():
            if isinstance(value, Method):
                methods += 1
                for version in value.versions:
                    versions_total += 1
                    stamp = version.get("timestamp", 0.0)
                    if stamp >= start and stamp <= now and version.get("author") != GENESIS_AUTHOR:
                        versions_new += 1
            elif name != PARENT_SLOT:
                data += 1
        slot_counts.append(data)
        method_counts.append(methods)

    n_objects = len(slot_counts)
    structure_slots = normalized_entropy(slot_counts, n_objects)
    structure_methods = normalized_entropy(method_counts, n_objects)
    structure = (structure_slots + structure_methods) / 2

    usage, records_read = _facet_usage(root, start)
    known = set(usage) | _known_facets(objects, names)
    h_cog = normalized_entropy(usage.values(), len(known))

    novelty = versions_new / versions_total if versions_total else 0.0
    parts = {"h_cog": h_cog, "structure": structure, "novelty": novelty}
    cem = sum(chosen[key] * parts[key] for key in chosen)
    return {
        "cem": round(cem, 6),
        **{key: round(value, 6) for key, value in parts.items()},
        "weights": chosen,
        "window_seconds": float(window_seconds),
        "now": now,
        "detail": {
            "structure_slots": round(structure_slots, 6),
            "structure_methods": round(structure_methods, 6),
        },
        "counts": {
            "objects": n_objects,
            "slots": sum(slot_counts),
            "methods": sum(method_counts),
            "method_versions": versions_total,
            "new_method_versions": versions_new,
            "synthesis_records_in_window": records_read,
            "facet_usage": dict(sorted(usage.items())),
            "facets_known": sorted(known),
        },
    }
