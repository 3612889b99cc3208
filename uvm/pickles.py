"""What the image's records may name: one class allowlist, checked on every load and store.

A ZODB record is two pickles (the class, then the state), and unpickling a pickle runs
whatever its globals name: ``os.system`` reduced with an argument, ``builtins.eval``,
``copyreg._reconstructor`` on a class whose ``__setstate__`` does something. So every
database batos opens (``uvm.image.open_db``: the incarnation, the CLI, validation and
the crucible's trial worker) is an ``ImageDB``:

* **load**: its ``classFactory`` answers only the classes in ``ALLOWED`` (the
  ones batos stores) and raises ``ForbiddenClass`` for any other global,
  without importing or calling it. In the installed ZODB every global of a
  record goes through that hook: the record's class, each global inside the
  state pickle (the unpickler's ``find_class``), and the class carried by a
  persistent reference (``ObjectReader.load_persistent``/``_get_class``).
  Each connection's reader (``_ImageReader``) turns a forbidden class named
  by a persistent reference into an inert ghost, so the referrer still loads
  and only the object itself fails, with a ``ForbiddenClass`` (an
  ``ImageError``) naming its oid: a message that touches it fails, the rest
  of the image still serves;
* **store**: each connection reads back every pickle it is about to write
  with the same allowlist (the globals are collected, nothing is built from
  them) and refuses the commit with ``InvalidValue`` naming the object and the
  class. Slot writes are checked earlier (``uvm.obj.storable``); this catches
  what a method put into a persistent list or mapping in place. So the
  image never holds a record that the load side would refuse.

No builtin global is allowed: plain data (None, bool, int, float, str, bytes, tuples,
lists, dicts) pickles without any. The allowed classes construct nothing but plain
state when a pickle calls them (``Method`` needs keyword arguments a pickle cannot
give; ``UvmObject`` checks its slots).

Not covered here: ZODB's conflict resolution unpickles states with its own resolver
(``ZODB.ConflictResolution.find_global``, in the ZEO server's process); those states
were written by an ``ImageConnection``, so they name only allowed classes.
"""

from __future__ import annotations

import importlib
import logging
from functools import partial
from io import BytesIO
from typing import Any

from persistent import Persistent
from transaction.interfaces import TransientError
from ZODB._compat import PersistentUnpickler
from ZODB.DB import DB
from ZODB.POSException import POSError, StateLoadError
from ZODB.serialize import ObjectReader
from ZODB.utils import oid_repr

from .errors import ForbiddenClass, InvalidValue

__all__ = ["ALLOWED", "ForbiddenClass", "ImageDB", "class_factory", "forbidden_records",
           "globals_of"]

#: (module, name) of every class an image record may name: what batos stores.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("uvm.obj", "UvmObject"),
    ("uvm.methods", "Method"),
    ("uvm.obj", "ImageMapping"),  # a slot's dicts and lists, converting every write
    ("uvm.obj", "ImageList"),
    # ZODB's root object and the kernel's records; an older image's slots too (its
    # containers are converted by uvm.conversion at the next bootstrap)
    ("persistent.mapping", "PersistentMapping"),
    ("persistent.list", "PersistentList"),
    ("BTrees.OOBTree", "OOBTree"),  # registry, replies, synthesis records
    ("BTrees.OOBTree", "OOBucket"),
    # the names older ZODB versions wrote for the same two classes
    ("ZODB.PersistentMapping", "PersistentMapping"),
    ("ZODB.PersistentList", "PersistentList"),
})


def _forbidden(module: Any, name: Any) -> ForbiddenClass:
    return ForbiddenClass(
        f"the global {module}.{name} is not a class the image allows (uvm.pickles.ALLOWED); "
        "it was neither imported nor called",
        module=str(module), name=str(name),
    )


_classes: dict[tuple[str, str], Any] = {}


def class_factory(connection: Any, module: str, name: str) -> Any:
    """``DB.classFactory``: the class for an allowed (module, name), else ``ForbiddenClass``."""
    cls = _classes.get((module, name))  # only allowed pairs are ever cached
    if cls is not None:
        return cls
    if type(module) is not str or type(name) is not str or (module, name) not in ALLOWED:
        raise _forbidden(module, name)
    try:
        cls = _classes[module, name] = getattr(importlib.import_module(module), name)
        return cls
    except (ImportError, AttributeError):
        # an allowed class this process lacks: ZODB's Broken stand-in, as before
        from ZODB.broken import find_global

        return find_global(module, name)


class _Stub:
    """What a global stands for while a pickle is only read for the names it holds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def globals_of(record: bytes) -> list[tuple[str, str]]:
    """The globals a record's pickles name, in order, each checked against ``ALLOWED``.

    Raises ``ForbiddenClass`` at the first one not allowed. Nothing named is
    imported or called: every global stands for an inert stub while the
    pickles are read.
    """
    found: list[tuple[str, str]] = []

    def find_global(module: str, name: str) -> Any:
        if type(module) is not str or type(name) is not str or (module, name) not in ALLOWED:
            raise _forbidden(module, name)
        found.append((module, name))
        return _Stub

    unpickler = PersistentUnpickler(find_global, lambda reference: None, BytesIO(record))
    unpickler.load()
    unpickler.load()
    return found


def _cause(exc: BaseException) -> ForbiddenClass | None:
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, ForbiddenClass):
            return exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return None


class _OneLine(logging.Filter):
    """ZODB logs every failed load with a traceback; a refusal is expected and explained by
    the ``ForbiddenClass`` the caller gets, so its log line loses the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _cause(record.exc_info[1]) is not None:
            record.exc_info = None
            record.exc_text = None
            record.msg = f"{record.msg}: its record names a class the image does not allow"
        return True


logging.getLogger("ZODB.Connection").addFilter(_OneLine())


def _not_loaded(oid: Any, found: ForbiddenClass) -> ForbiddenClass:
    where = oid_repr(oid) if isinstance(oid, bytes) else "?"
    return ForbiddenClass(
        f"object {where} was not loaded: its record names {found.module}.{found.name}, "
        "which is not a class the image allows (a stored value may not run code); "
        "`batos verify` lists every such object",
        module=found.module, name=found.name, oid=where,
    )


_PLAIN = frozenset({str, bytes, int, float, bool, type(None), tuple, list, dict})  # never refs


class _CheckedWriter:
    """ZODB's ``ObjectWriter``, with each pickle checked before it is stored."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        named = writer.persistent_id

        def persistent_id(obj: Any) -> Any:
            if type(obj) in _PLAIN:  # most of a record: a quick exit
                return None
            # a reference to a refused ghost keeps naming the class its record names,
            # as a plain (module, name) pair: the referrer can still be written
            if isinstance(obj, _Refused) and obj._p_oid is not None:
                return obj._p_oid, type(obj)._refused
            return named(obj)

        writer._p.persistent_id = persistent_id

    def __iter__(self) -> Any:
        return iter(self._writer)  # the live stack of new objects, as ZODB iterates it

    def serialize(self, obj: Any) -> bytes:
        record = self._writer.serialize(obj)
        try:
            globals_of(record)
        except ForbiddenClass as exc:
            raise InvalidValue(_unstorable(obj, exc)) from None
        except Exception as exc:  # a pickle our own writer made should always read back
            raise InvalidValue(f"{_describe(obj)} produced a record that does not read back: "
                               f"{type(exc).__name__}: {exc}") from exc
        return record


def _describe(obj: Any) -> str:
    cls = type(obj)
    oid = obj._p_oid
    what = f"{cls.__module__}.{cls.__qualname__}"
    uuid = obj.__dict__.get("_uuid") if hasattr(obj, "__dict__") else None
    return f"object {oid_repr(oid) if oid else 'new'} ({what}{', uuid ' + uuid if uuid else ''})"


def _unstorable(obj: Any, exc: ForbiddenClass) -> str:
    return (f"{_describe(obj)} holds a value of class {exc.module}.{exc.name}, which the image "
            "does not store: keep None, bool, int, float, str, bytes, lists, dicts with string "
            "keys and image objects in slots and in the lists and dicts they hold; nothing "
            "was committed")


class _Refused(Persistent):
    """Stands for a forbidden class named by a persistent reference: the referrer loads,
    the referenced object stays a ghost whose own load raises ``ForbiddenClass``.
    Calling it, or setting its state, raises too: nothing of the named class runs."""

    _refused: tuple[str, str] = ("?", "?")

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            raise _forbidden(*cls._refused)
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _forbidden(*self._refused)

    def __setstate__(self, state: Any) -> None:
        raise _forbidden(*self._refused)


_refused_classes: dict[tuple[str, str], type] = {}


def _refused_class(module: str, name: str) -> type:
    key = (str(module), str(name))
    cls = _refused_classes.get(key)
    if cls is None:
        cls = _refused_classes[key] = type(f"Refused({key[0]}.{key[1]})", (_Refused,),
                                           {"_refused": key, "__module__": __name__})
    return cls


class _ImageReader(ObjectReader):
    """ZODB's reader with the allowlist: a forbidden global becomes a ``_Refused`` class.

    Used by a persistent reference, it gives an inert ghost (the referrer still
    loads); as the record's own class, or anywhere else in a state, the load
    fails with ``ForbiddenClass``.
    """

    def _get_unpickler(self, pickle: bytes) -> Any:
        def find_global(module: str, name: str) -> Any:
            cls = _classes.get((module, name))
            if cls is not None:
                return cls
            if type(module) is str and type(name) is str and (module, name) in ALLOWED:
                return self._factory(self._conn, module, name)
            self._named.append((module, name))
            return _refused_class(module, name)

        self._named: list[tuple[str, str]] = []
        self._referenced = 0
        return PersistentUnpickler(find_global, self._persistent_load, BytesIO(pickle))

    def _persistent_load(self, reference: Any) -> Any:
        if type(reference) is tuple and len(reference) == 2:
            klass = reference[1]
            if klass.__class__ is type and issubclass(klass, _Refused):
                self._referenced += 1
            return self.load_persistent(*reference)
        return super()._persistent_load(reference)

    def _get_class(self, module: str, name: str) -> Any:
        # a reference (oid, (module, name)), or an old record's class pair
        if type(module) is str and type(name) is str and (module, name) in ALLOWED:
            return self._factory(self._conn, module, name)
        return _refused_class(module, name)

    def _class_of(self, unpickler: Any) -> Any:
        meta = unpickler.load()
        klass = meta[0] if type(meta) is tuple else meta
        if type(klass) is tuple and len(klass) == 2:  # an old record names (module, name)
            klass = self._get_class(*klass)
        if isinstance(klass, type) and issubclass(klass, _Refused):
            raise _forbidden(*klass._refused)
        return meta

    def getGhost(self, pickle: bytes) -> Any:  # noqa: N802 - ZODB's name
        unpickler = self._get_unpickler(pickle)
        self._class_of(unpickler)
        return super().getGhost(pickle)

    def getState(self, pickle: bytes) -> Any:  # noqa: N802 - ZODB's name
        unpickler = self._get_unpickler(pickle)
        try:
            self._class_of(unpickler)
            state = unpickler.load()
        except ForbiddenClass:
            raise
        except (POSError, TransientError):
            raise
        except Exception as exc:
            raise StateLoadError() from exc
        if len(self._named) > self._referenced:  # a forbidden global used other than as a ref
            raise _forbidden(*self._named[0])
        return state


def _harden(conn: Any) -> None:
    """Give one connection the allowlisted reader and the checked writer.

    Hooks on the instance rather than a ``Connection`` subclass, so that the
    kernel may still choose the database's connection class (``uvm.integrity``)
    and both apply.
    """
    conn._reader = _ImageReader(conn, conn._cache, conn._db.classFactory)
    conn.get = partial(_get, conn)
    conn.setstate = partial(_setstate, conn)
    conn._store_objects = partial(_store_objects, conn)


def _get(conn: Any, oid: Any) -> Any:
    try:
        return type(conn).get(conn, oid)
    except ForbiddenClass as exc:
        raise _not_loaded(oid, exc) from None


def _setstate(conn: Any, obj: Any) -> None:
    try:
        type(conn).setstate(conn, obj)
    except (POSError, ForbiddenClass) as exc:
        found = _cause(exc)
        if found is None:
            raise
        raise _not_loaded(obj._p_oid, found) from None


def _store_objects(conn: Any, writer: Any, transaction: Any) -> None:
    type(conn)._store_objects(conn, _CheckedWriter(writer), transaction)


class ImageDB(DB):
    """``ZODB.DB`` with the image's class allowlist on both sides (see module docstring)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        conn = super().open(*args, **kwargs)
        if not isinstance(conn._reader, _ImageReader):
            _harden(conn)
        return conn

    def classFactory(self, connection: Any, modulename: str, globalname: str) -> Any:  # noqa: N802
        return class_factory(connection, modulename, globalname)


def forbidden_records(db: Any, *, limit: int = 100) -> list[str]:
    """One line per record reachable from the root that names a global outside ``ALLOWED``
    (or does not read back), by oid; nothing is unpickled beyond reading its names.

    Reads the storage's current records directly (``referencesf`` to walk, which
    resolves no global); for ``batos verify``, not for a running message.
    """
    from ZODB.POSException import POSKeyError
    from ZODB.serialize import referencesf
    from ZODB.utils import z64

    problems: list[str] = []
    seen, todo = {z64}, [z64]
    while todo and len(problems) < limit:
        oid = todo.pop()
        try:
            record, _serial = db.storage.load(oid)
        except POSKeyError:
            problems.append(f"object {oid_repr(oid)} is referenced but missing from the storage")
            continue
        try:
            globals_of(record)
        except ForbiddenClass as exc:
            problems.append(f"object {oid_repr(oid)} names {exc.module}.{exc.name}, which is not "
                            "a class the image allows: it cannot be loaded (nothing of it ran)")
        except Exception as exc:
            problems.append(f"object {oid_repr(oid)} does not read back: {type(exc).__name__}: {exc}")
        try:
            refs = referencesf(record)
        except Exception:
            refs = []
        for ref in refs:
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return problems
