"""The kernel's transactions: the ``transaction`` package's attempts, fitted to messages.

The kernel runs every transaction of its own (a message, a ``write``, the
maintenance of the reply record) as ``transaction``'s attempts::

    for attempt in manager.attempts(tries):
        with attempt:
            ...  # begins; commits at the end; a conflict aborts and tries again

``Manager`` is the explicit transaction manager those attempts run on. It
narrows three things of the package's own:

* which errors an attempt retries: only a write conflict (``ConflictError``:
  nothing was committed). The package retries every ``TransientError``, and
  ZEO's ``ClientDisconnected`` is one; a commit it interrupted may have
  finished on the server, so running the message again is the kernel's
  decision (it does so only with a request id, see ``uvm.kernel``);
* an abort that fails is logged and never replaces the error it cleans up
  after; the manager is marked ``spoiled`` and its owner drops it;
* the last attempt (the manager itself) aborts a commit that failed, as the
  earlier ones do, so the manager never stays in a failed transaction.

``Manager.skip_commit`` ends an attempt without a commit: the transaction
has nothing to make durable (a read-only message, a reply already
recorded), so it is aborted and no commit machinery runs. ``pause`` is the backoff between two attempts;
``storage_error`` turns a storage failure at a stage of a message's
transaction (begin, open, run and commit) into the kernel's error.

Boundary: no image, no messages; only ``uvm.errors`` below it; one manager
per thread.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import transaction
from transaction.interfaces import NoTransaction
from ZEO.Exceptions import ClientDisconnected
from ZODB.POSException import ConflictError, POSError

from .errors import ImageError, StorageUnavailable, UVMError

__all__ = ["MAX_PAUSE", "Manager", "pause", "storage_error"]

log = logging.getLogger("batos.kernel")

#: the longest pause between two attempts, before jitter (seconds)
MAX_PAUSE = 0.1


class Manager(transaction.TransactionManager):
    """An explicit transaction manager whose ``attempts()`` retry only write conflicts."""

    def __init__(self) -> None:
        super().__init__(explicit=True)
        #: an abort or a begin failed half-way: the owner starts over with a fresh manager
        self.spoiled = False
        self._skip = False

    def skip_commit(self) -> None:
        """The current transaction has nothing to make durable: where it would be
        committed (at the end of its attempt), it is aborted instead."""
        self._skip = True

    def commit(self) -> None:
        if self._skip:
            self.abort()
        else:
            super().commit()

    def _retryable(self, error_type: type[BaseException], error: BaseException) -> bool:
        # The package's hook for attempts(): it would retry every TransientError.
        return issubclass(error_type, ConflictError)

    def abort(self) -> None:
        self._skip = False
        try:
            super().abort()
        except NoTransaction:  # nothing begun (a held connection's database closing)
            pass
        except BaseException:  # the error being cleaned up after is the one that counts
            self.spoiled = True
            log.exception("aborting a transaction failed; this thread starts over with a "
                          "fresh transaction manager")

    def __exit__(self, t: Any, v: BaseException | None, tb: Any) -> None:
        if v is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise


def pause(base: float, failed: int, *, jitter: bool = False) -> float:
    """Seconds to wait after the ``failed``-th attempt (0 for the first) conflicted:
    exponential from ``base``, at most ``MAX_PAUSE``; with ``jitter``, 0.5 to 1.5 times that."""
    delay = min(base * (2**failed), MAX_PAUSE)
    return delay * (0.5 + random.random()) if jitter else delay


#: how a storage failure reads, by where in a message's transaction it happened:
#: (the ZEO server is away, anything else of the storage)
_FAILED = {
    "begin": ("the ZEO server is away; {selector!r} did not run: send it again",
              "cannot begin a transaction on the image: {exc}"),
    "open": ("the ZEO server is away; {selector!r} did not run: send it again",
             "cannot open a connection to the image: {exc}"),
    "run": ("the ZEO server went away while running {selector!r}; the message may or may "
            "not have committed: send it again with the same request id",
            "the storage failed while committing {selector!r}: {exc}"),
}


def storage_error(exc: BaseException, stage: str, selector: str) -> UVMError | None:
    """The kernel's error for a storage failure at ``stage`` (None: not the storage's)."""
    away, broken = _FAILED[stage]
    if isinstance(exc, ClientDisconnected):
        return StorageUnavailable(away.format(selector=selector))
    if isinstance(exc, POSError):
        return ImageError(broken.format(selector=selector, exc=exc))
    return None
