"""The UVM: the living image and the kernel that runs messages against it.

Layers, bottom up (each imports only those below it):

    errors, selectors          vocabulary
    regex_guard, bounded,      what ``import`` gives method code: frozen capability
    message_scope,             namespaces (json and re bounded, the regex guard
    capabilities, allowlist    timing patterns, decimal and random per message),
                               plus the env's packages whole
    containers                 the image's dicts and lists: every write converted
    slot_cache                 where delegation found a slot, remembered until the chain
                               may change
    obj                        UvmObject and delegation lookup; slots' stored forms
    guard_values,              what method code may hold (every guard's last check);
    guard_writes               what its writes may reach, converting into containers
    guards, method_policy      method code's run-time guards (attributes, items,
                               writes); its compile policy (what a source may say)
    quarantine_mark            the quarantine's mark on a method, checked before it runs
    methods                    Method: versioned source, restricted compile
    registry                   uuid/name index; the current message's cycle
    values, conversion         plain data <-> image values at the boundary; an older
                               image's containers converted, stored forms checked
    protection                 Genesis slots and names only a person changes
    quarantine                 methods that killed an incarnation, kept from running
    object_primitives,         the primitives on objects (clone, slots, names,
    method_primitives          become:) and on their methods (define, rollback)
    acts                       autopoietic_acts applied (their schema: lexicon.acts)
    entropy, weaver_records,   the Composite Entropy Metric; the CognitiveWeaver's
    facets                     persistent half (adapters, facets switched by become:)
    primitives                 the table of what method code may call
    records, prompt,           the mind's side of doesNotUnderstand: (the chat
    synthesis                  backend and crucible come in duck-typed)
    limits, watchdog, budget   per-message CPU/wall/memory budgets; the watchdog
                               thread that stops a message over its budget
    integrity                  a message commits only what its own code changed
    dispatch                   one message in the current cycle, under its budget:
                               the one path of live messages and trials
    replies                    exactly-once replies kept in the image
    pickles, image             the class allowlist of records; opening storages and
                               catching up with ZEO (freshness by transaction id)
    attempts, flights          the kernel's tries (transaction's attempts, only conflicts
                               retried); one synthesis per receiver and selector at a time
    own_transactions           the kernel's own reads and writes (quarantine, listings)
    kernel, front              one message = one transaction; asyncio front
    genesis_checks,            the Genesis table (objects, parents, slots, what only a
    genesis_table              person changes) and its self-checks, as method sources
    genesis                    Genesis bootstrap and verify
    env_imports,               validation's parts: the env's packages import and are
    record_reader,             allowed; one record unpickled strictly (no Broken); records
    record_feed                read at one snapshot, pipelined on the ZEO connection
    image_walk                 every reachable object unpickled, digested, methods compiled
    validation                 a candidate incarnation proving itself on the image
    budget_link                the incarnation's side of budgets and quarantine
    control                    an incarnation's control frames: Stop, Quarantine, Validate
    lanes                      request lanes: one DEALER per thread, each request received,
                               run and answered there
    incarnation                serving the image on the backend, the mind and the inquiry
                               loop injected (batos.root.incarnation is the process)

The public API is what ``__all__`` lists here.
"""

from .errors import (
    BadArguments,
    DoesNotUnderstand,
    ImageError,
    ImageLocked,
    InvalidAct,
    InvalidRequest,
    InvalidValue,
    MethodFailed,
    MethodSourceError,
    NoMind,
    RetriesExhausted,
    StorageUnavailable,
    SynthesisFailed,
    TransientError,
    UnknownTarget,
    UnserializableResult,
    UVMError,
)
from .front import AsyncKernel
from .genesis import GENESIS, bootstrap, verify
from .image import open_db
from .kernel import Kernel
from .methods import Method
from .obj import UvmObject, find_slot
from .selectors import PARENT_SLOT, selector_for, slot_name

__all__ = [
    "GENESIS",
    "PARENT_SLOT",
    "AsyncKernel",
    "BadArguments",
    "DoesNotUnderstand",
    "ImageError",
    "ImageLocked",
    "InvalidAct",
    "InvalidRequest",
    "InvalidValue",
    "Kernel",
    "Method",
    "MethodFailed",
    "MethodSourceError",
    "NoMind",
    "RetriesExhausted",
    "StorageUnavailable",
    "SynthesisFailed",
    "TransientError",
    "UVMError",
    "UnknownTarget",
    "UnserializableResult",
    "UvmObject",
    "bootstrap",
    "find_slot",
    "open_db",
    "selector_for",
    "slot_name",
    "verify",
]
