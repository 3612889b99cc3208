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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSError

from .errors import ImageError, ImageLocked
from .pickles import ImageDB

__all__ = ["open_db", "parse_zeo_address"]


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
) -> Any:
    """Open the image's database over a FileStorage at ``path`` or a ZEO server at ``zeo``."""
    if (path is None) == (zeo is None):
        raise ImageError("open the image either from a file path or from a ZEO address")
    if zeo is not None:
        from ZEO.ClientStorage import ClientStorage

        try:
            # server_sync: each transaction starts with a round trip to the server, so a
            # message sees every commit that returned before it began (read-your-writes
            # across incarnations); without it ZEO 6 may serve a stale snapshot.
            storage = ClientStorage(
                parse_zeo_address(zeo), wait_timeout=zeo_timeout, read_only=read_only,
                server_sync=True,
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
