"""One record of the image unpickled strictly, its references collected on the way.

``Reader`` is the connection's own unpickling (ZODB's ``ObjectReader``, the
DB's class factory, references resolved to the connection's ghosts), with
two differences validation needs: every reference met is collected
(``refs``), and a class the class factory can only answer with ZODB's quiet
``Broken`` stand-in raises ``Unimportable`` (a candidate incarnation must
import every class its image names). ``load_record`` builds a fresh instance
with the record's state in one unpickler pass; it never enters the cache. The
unpickler is zodbpickle's C one with the strict lookup as its ``find_class``
(ZODB's wrapper adds two Python calls a global; the walk unpickles every record).

Boundary: reads records handed to it; loads nothing itself; writes nothing.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import zodbpickle.pickle
from ZODB.broken import Broken
from ZODB.serialize import ObjectReader

__all__ = ["Reader", "Unimportable"]


class Unimportable(Exception):
    """A class named in a record cannot be imported with this env's libraries."""


class _Unpickler(zodbpickle.pickle.Unpickler):
    """zodbpickle's C unpickler; ``find_class`` and ``persistent_load`` are set per
    instance (ZODB's own ``Unpickler`` reaches its ``find_global`` through two Python
    calls more per global)."""


class Reader(ObjectReader):
    """The connection's unpickling, plus: references are collected as they are met, and a
    class the DB's class factory can only answer with a ``Broken`` stand-in is an error
    (ZODB would quietly load a broken object; a candidate must not)."""

    def __init__(self, conn: Any) -> None:
        factory = conn.db().classFactory
        classes: dict[tuple[str, str], Any] = {}

        def strict(module: str, name: str) -> Any:
            cls = classes.get((module, name))
            if cls is None:
                cls = factory(conn, module, name)
                if isinstance(cls, type) and issubclass(cls, Broken):
                    raise Unimportable(f"{module}.{name}")
                classes[module, name] = cls
            return cls

        # conn._cache: references resolve to the connection's own ghosts, exactly as
        # when the connection itself loads the object (ZODB's multi-db code does the same)
        super().__init__(conn, conn._cache, lambda _conn, module, name: strict(module, name))
        self._strict = strict
        self._cached = conn._cache.get
        self.refs: list[bytes] = []
        self.obj: Any = None

    def _persistent_load(self, reference: Any) -> Any:
        # the references referencesf reports: (oid, class) or a bare oid; not weak/multi-db
        if type(reference) is tuple and len(reference) == 2 and type(reference[0]) is bytes:
            oid = reference[0]  # the common case: a ghost of a class the pickle named
            self.refs.append(oid)
            obj = self._cached(oid)
            return obj if obj is not None else self.load_persistent(oid, reference[1])
        oid = reference[0] if isinstance(reference, tuple) else reference
        if isinstance(oid, str):
            oid = oid.encode("ascii")
        if isinstance(oid, bytes):
            self.refs.append(oid)
        return super()._persistent_load(reference)

    def _get_unpickler(self, pickle: bytes) -> Any:
        unpickler = _Unpickler(BytesIO(pickle))
        unpickler.find_class = self._strict
        unpickler.persistent_load = self._persistent_load
        return unpickler

    def load_record(self, data: bytes) -> Any:
        """A fresh instance with the record's state: ``getGhost`` + ``setGhostState`` in
        one unpickler pass."""
        unpickler = self._get_unpickler(data)
        klass = unpickler.load()
        args: Any = ()
        if isinstance(klass, tuple):
            klass, args = klass
            if isinstance(klass, tuple):  # an old record: (module, name)
                klass = self._get_class(*klass)
        obj = klass.__new__(klass, *(args or ()))
        self.obj = obj
        obj.__setstate__(unpickler.load())
        return obj
