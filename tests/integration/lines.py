"""A child's stdout as lines, read by a thread so that every wait has a deadline."""

from __future__ import annotations

import queue
import threading
import time
from typing import IO

__all__ = ["Lines"]


class Lines:
    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def get(self, timeout: float) -> str | None:
        """The next line, None at EOF; raises ``queue.Empty`` after ``timeout`` s."""
        return self._queue.get(timeout=max(timeout, 0.0))

    def expect(self, timeout: float = 60.0) -> str | None:
        """The next line, None at EOF; fails the test after ``timeout`` s."""
        try:
            return self.get(timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the child within {timeout}s") from None

    def until_eof(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        out: list[str] = []
        while True:
            try:
                line = self.get(deadline - time.monotonic())
            except queue.Empty:
                raise AssertionError(f"child stdout not closed within {timeout}s") from None
            if line is None:
                return out
            out.append(line)
