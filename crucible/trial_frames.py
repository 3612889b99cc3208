"""The trial's pipe frames: a 4-byte big-endian length, then msgpack; both ends use this.

The parent (``trial_process.Worker``) reads with a deadline (``select`` on the
pipe, ``TimeoutError`` when it passes); the worker (``trial_worker``) blocks.
A frame whose length is over ``MAX_FRAME`` is refused (``FrameTooLarge``)
before its body is read. Nothing else travels on these pipes.
"""

from __future__ import annotations

import os
import select
import struct
import time
from typing import Any

import ormsgpack

from .errors import CrucibleError

__all__ = ["MAX_FRAME", "FrameTooLarge", "read_frame", "write_frame"]

_HEADER = struct.Struct(">I")
MAX_FRAME = 16 << 20


class FrameTooLarge(CrucibleError, ValueError):  # noqa: N818 - a ValueError, as always
    """A frame's header announced more than ``MAX_FRAME`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(f"frame of {size} bytes is over the limit")
        self.size = size


def write_frame(fd: int, value: Any) -> None:
    """``value`` as one frame on ``fd`` (blocking until it is all written)."""
    body = ormsgpack.packb(value)
    view = memoryview(_HEADER.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int, deadline: float | None = None) -> Any:
    """The next frame from ``fd``, or None at end of file.

    ``deadline`` (``time.monotonic``): raise ``TimeoutError`` when it passes
    before the frame is whole; None blocks.
    """
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameTooLarge(size)
    body = _read_exact(fd, size, deadline)
    return None if body is None else ormsgpack.unpackb(body)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
