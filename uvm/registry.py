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
from dataclasses import dataclass, field
from typing import Any

from BTrees.OOBTree import OOBTree

from .errors import ImageError, InvalidValue, UnknownTarget
from .obj import UvmObject

__all__ = ["Cycle", "Registry", "current", "using_cycle"]

OBJECTS_KEY = "batos.objects"
NAMES_KEY = "batos.names"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Registry:
    """uuid -> object and name -> uuid, stored in the database root."""

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
        self.objects[obj._uuid] = obj
        if name is not None:
            self.name(obj, name)
        return obj

    def name(self, obj: UvmObject, name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name) or _UUID_RE.match(name):
            raise InvalidValue(
                f"{name!r} is not a valid name: use a letter followed by up to 127 "
                "letters, digits, '_', '.' or '-'"
            )
        if obj._uuid not in self.objects:
            self.objects[obj._uuid] = obj
        self.names[name] = obj._uuid

    def resolve(self, ref: Any) -> UvmObject:
        """The object a uuid or registered name refers to."""
        if isinstance(ref, UvmObject):
            return ref
        if isinstance(ref, dict) and len(ref) == 1 and "$ref" in ref:
            ref = ref["$ref"]
        if not isinstance(ref, str) or not ref:
            raise UnknownTarget(f"a target is a uuid or a registered name, got {ref!r}")
        uuid = ref if _UUID_RE.match(ref) else self.names.get(ref)
        obj = self.objects.get(uuid) if uuid is not None else None
        if obj is None:
            known = ", ".join(list(self.names.keys())[:12])
            raise UnknownTarget(
                f"no object with uuid or name {ref!r} in the image (names include: {known})"
            )
        return obj

    def names_of(self, obj: UvmObject) -> list[str]:
        return [n for n, u in self.names.items() if u == obj._uuid]


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


_current: contextvars.ContextVar[Cycle] = contextvars.ContextVar("batos_cycle")


def current() -> Cycle:
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
