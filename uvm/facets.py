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
``uvm.genesis``) and the facet objects; its records (adapters, the inquiry
settings and cycles) are ``uvm.weaver_records``', re-exported here. Method
code reaches both through the ``weaver_*`` primitives (``uvm.primitives``).
They run on the message's worker thread, inside its transaction
(``registry.current()``).
"""

from __future__ import annotations

import time
from typing import Any

from persistent.mapping import PersistentMapping

from .errors import BadArguments
from .obj import UvmObject, label, write_slot
from .object_primitives import clone_object
from .protection import check_member, is_member
from .registry import current
from .selectors import PARENT_SLOT
from .weaver_records import (
    ADAPTER_FIELDS,
    DEFAULT_INQUIRY,
    MAX_CYCLES,
    facet_name,
    inquiry_config,
    own_container,
    record_cycle,
    register_adapter,
    set_inquiry,
    weaver_object,
)

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


# --- facets -----------------------------------------------------------------------------


def facet_for(weaver: Any, facet: Any) -> str | None:
    """The adapter serving ``facet``, None for the base model (read-only: creates nothing)."""
    w = weaver_object(weaver)
    facets = w._slots.get("facets")
    holder = facets.get(facet_name(facet)) if isinstance(facets, PersistentMapping) else None
    if not isinstance(holder, UvmObject):
        return None
    adapter = holder._slots.get("adapter")
    return adapter if isinstance(adapter, str) else None


def facet_object(weaver: Any, facet: Any) -> UvmObject:
    """The facet object of ``facet``, created (serving the base model) when missing."""
    w = weaver_object(weaver)
    name = facet_name(facet)
    facets = own_container(w, "facets", PersistentMapping)
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
    w = weaver_object(weaver)
    name = facet_name(facet)
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
