"""The image's index and the current transactional cycle.

``Registry`` is the root's two BTrees: every object by uuid
(``batos.objects``) and the names the image gives some of them
(``batos.names``: name -> uuid). A message names its target by either.

``Cycle`` is what one message's transaction knows: its connection, the
registry seen through that connection, and who is acting (the author recorded
in method histories). The kernel sets it for the duration of one message on
the worker thread running it; primitives find it with ``current()``. It is a
``ContextVar``, so concurrent messages on different threads never see each
other's cycle.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from BTrees.OOBTree import OOBTree

from .errors import ImageError, InvalidValue, UnknownTarget
from .message_scope import LEFTOVER, collecting
from .obj import UvmObject

__all__ = ["Cycle", "Registry", "current", "is_uuid", "set_name_guard", "using_cycle"]

OBJECTS_KEY = "batos.objects"
NAMES_KEY = "batos.names"
# fullmatch: "$" would let a trailing newline through
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_REF = 256

#: Called as ``guard(obj, name)`` before ``name`` is pointed at ``obj``; raises to refuse.
#: Installed by ``uvm.protection`` (the Genesis names are not re-pointed by method code).
_name_guard: Callable[[UvmObject, str], None] | None = None


def set_name_guard(guard: Callable[[UvmObject, str], None] | None) -> None:
    global _name_guard
    _name_guard = guard


def is_uuid(value: Any) -> bool:
    """An exact ``str`` in the canonical uuid4 text form (what ``UvmObject`` gives)."""
    return type(value) is str and _UUID_RE.fullmatch(value) is not None


class Registry:
    """uuid -> object and name -> uuid, stored in the database root.

    Keys are exact ``str`` of bounded length and fixed alphabet (a uuid, or a
    name matching ``_NAME_RE``): a key whose class compares oddly could put a
    BTree out of order. A uuid belongs to one object: registering a second
    object under a uuid already taken (a forged identity) is refused.
    """

    def __init__(self, root: Any) -> None:
        try:
            self.objects: OOBTree = root[OBJECTS_KEY]
            self.names: OOBTree = root[NAMES_KEY]
        except KeyError as exc:
            raise ImageError(
                "this database holds no batos image: run 'batos bootstrap' to create one"
            ) from exc

    @staticmethod
    def ensure(root: Any) -> bool:
        """Create the index in ``root`` if absent; True if it was created."""
        created = False
        for key in (OBJECTS_KEY, NAMES_KEY):
            if key not in root:
                root[key] = OOBTree()
                created = True
        return created

    def register(self, obj: UvmObject, name: str | None = None) -> UvmObject:
        if type(obj) is not UvmObject:
            raise InvalidValue(f"only image objects are registered, not {type(obj).__name__}")
        uuid = obj._uuid
        if not is_uuid(uuid):
            raise InvalidValue(f"{uuid!r} is not a uuid: an object's identity is a uuid4 string")
        registered = self.objects.get(uuid)
        if registered is None:
            self.objects[uuid] = obj
        elif registered is not obj:
            raise InvalidValue(
                f"uuid {uuid} already belongs to another object of the image: an identity "
                "cannot be taken by a second object"
            )
        if name is not None:
            self.name(obj, name)
        return obj

    def name(self, obj: UvmObject, name: str) -> None:
        if type(name) is not str or not _NAME_RE.fullmatch(name) or _UUID_RE.fullmatch(name):
            raise InvalidValue(
                f"{name!r} is not a valid name: use a letter followed by up to 127 "
                "letters, digits, '_', '.' or '-' (a plain string)"
            )
        if _name_guard is not None:
            _name_guard(obj, name)
        self.register(obj)
        self.names[name] = obj._uuid

    def resolve(self, ref: Any) -> UvmObject:
        """The object a uuid or registered name refers to."""
        if type(ref) is UvmObject:
            return ref
        if type(ref) is dict and len(ref) == 1 and "$ref" in ref:
            ref = ref["$ref"]
        if type(ref) is not str or not ref or len(ref) > MAX_REF:
            raise UnknownTarget(
                f"a target is a uuid or a registered name (a plain string), got {_short(ref)}"
            )
        uuid = ref if _UUID_RE.fullmatch(ref) else self.names.get(ref)
        obj = self.objects.get(uuid) if uuid is not None else None
        if obj is None:
            known = ", ".join(list(self.names.keys())[:12])
            raise UnknownTarget(
                f"no object with uuid or name {ref!r} in the image (names include: {known})"
            )
        return obj

    def names_of(self, obj: UvmObject) -> list[str]:
        return [n for n, u in self.names.items() if u == obj._uuid]


def _short(value: Any) -> str:
    text = repr(value) if type(value) in (str, int, float, bool, type(None)) else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Cycle:
    """One message's transactional context."""

    connection: Any
    registry: Registry
    author: str
    created: list[UvmObject] = field(default_factory=list)
    #: the kernel's mind (``uvm.synthesis.Synthesizer``), or None: no synthesis
    mind: Any = None
    #: (receiver uuid, selector) of the top-level message being handed to
    #: doesNotUnderstand:, set by ``kernel.dispatch``; only that one may be synthesized
    not_understood: tuple[str, str] | None = None
    #: True while a proposal from the mind is being installed (``uvm.synthesis``, and the
    #: crucible's trial): the Genesis objects' protected slots and names are refused
    proposal: bool = False


_current: contextvars.ContextVar[Cycle] = contextvars.ContextVar("batos_cycle")


def current() -> Cycle:
    if collecting():
        raise ImageError(LEFTOVER)
    try:
        return _current.get()
    except LookupError:
        raise ImageError(
            "no message is being processed: image primitives run only inside a kernel send"
        ) from None


class using_cycle:  # noqa: N801 - used as a context manager, reads like a function
    """Make ``cycle`` current for the body of a ``with`` block."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle

    def __enter__(self) -> Cycle:
        self._token = _current.set(self.cycle)
        return self.cycle

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
