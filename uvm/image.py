"""Opening the image: the storage under the database, chosen by configuration.

* A path (default): an embedded ``FileStorage`` file, ``live_image.fs``. One
  process at a time may open it for writing (it holds a lock file beside it);
  a second gets ``ImageLocked``. Read-only opens do not take the lock.
* A ZEO address (``host:port`` or a Unix socket path): a ``ClientStorage``,
  for several processes sharing one image through a ZEO server (the
  supervisor owns that server; see docs/design.md).

RelStorage (PostgreSQL) plugs in the same way for deployments that outgrow
one machine; docs/operations.md shows the configuration.

ZODB and ZEO errors met while opening are translated here into ``ImageError``
with what to do about them.

Every database opened here is a ``uvm.pickles.ImageDB``: records load and
store only under the image's class allowlist, so a stored value can never run
code when it is loaded (see ``uvm.pickles``).

Freshness over ZEO: by default (``server_sync=True``) every transaction begins with
a round trip to the server, so it sees every commit that returned before it began.
An incarnation opens with ``server_sync=False`` and asks for that round trip only
when it may be behind: ``catch_up(db, after)`` pings the server unless the storage
has already heard of transaction ``after`` (ZEO queues a commit's invalidations
before it advances ``lastTransaction``, so the next transaction begun on this
database then sees that commit). Storages without ``ping`` (FileStorage,
MappingStorage) are always current and left alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSError

from .errors import ImageError, ImageLocked
from .pickles import ImageDB

__all__ = ["catch_up", "last_tid", "open_db", "parse_zeo_address"]


def parse_zeo_address(address: str) -> str | tuple[str, int]:
    """``host:port`` -> ``(host, port)``; anything with a ``/`` is a Unix socket path."""
    if "/" in address:
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ImageError(f"ZEO address {address!r} is neither host:port nor a socket path")
    return (host or "127.0.0.1", int(port))


def open_db(
    path: str | os.PathLike[str] | None = None,
    *,
    zeo: str | None = None,
    read_only: bool = False,
    pool_size: int = 16,
    cache_size: int = 10_000,
    zeo_timeout: float = 30.0,
    server_sync: bool = True,
) -> Any:
    """Open the image's database over a FileStorage at ``path`` or a ZEO server at ``zeo``;
    ``server_sync`` (ZEO only): see the module docstring."""
    if (path is None) == (zeo is None):
        raise ImageError("open the image either from a file path or from a ZEO address")
    if zeo is not None:
        from ZEO.ClientStorage import ClientStorage

        try:
            # server_sync: each transaction starts with a round trip to the server, so a
            # message sees every commit that returned before it began (read-your-writes
            # across incarnations); without it ZEO 6 may serve a stale snapshot, unless
            # the caller catches up itself (catch_up).
            storage = ClientStorage(
                parse_zeo_address(zeo), wait_timeout=zeo_timeout, read_only=read_only,
                server_sync=server_sync,
            )
        except Exception as exc:  # ZEO raises ClientDisconnected or OSError subclasses
            raise ImageError(
                f"cannot reach the ZEO server at {zeo} within {zeo_timeout:.0f}s: {exc}; "
                "is the supervisor (or runzeo) running?"
            ) from exc
    else:
        file = Path(path)  # type: ignore[arg-type]
        if read_only and not file.exists():
            raise ImageError(f"no image at {file}: run 'batos bootstrap' first")
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = FileStorage(str(file), read_only=read_only)
        except Exception as exc:
            if type(exc).__name__ == "LockError":
                raise ImageLocked(
                    f"the image {file} is open in another process (lock {file}.lock); stop "
                    "that process, or share the image through the supervisor's ZEO server"
                ) from exc
            raise ImageError(f"cannot open the image {file}: {exc}") from exc
    try:
        return ImageDB(storage, pool_size=pool_size, cache_size=cache_size)
    except POSError as exc:
        storage.close()
        raise ImageError(f"cannot open a database on {path or zeo}: {exc}") from exc


def last_tid(db: Any) -> bytes | None:
    """The newest transaction id ``db``'s storage has heard of (8 bytes), or None."""
    last = getattr(db.storage, "lastTransaction", None)
    return None if last is None else last()


def catch_up(db: Any, after: bytes | None) -> None:
    """Make the next transaction begun on ``db`` see every commit up to ``after``: with
    ``after`` None, a round trip to the ZEO server (everything committed before this
    call); else a round trip only when the storage has not yet heard of ``after``.
    A storage without ``ping``, or one that syncs every transaction itself
    (``server_sync``), is left alone. Call it before the transaction takes its snapshot;
    a ZEO server that is away raises ``ClientDisconnected`` (the caller translates)."""
    storage = db.storage
    ping = getattr(storage, "ping", None)
    if ping is None or getattr(storage, "server_sync", False):
        return
    if after is not None:
        last = storage.lastTransaction()
        if last is not None and last >= after:
            return
    ping()
