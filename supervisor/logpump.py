"""The log pump: a child's stdout/stderr on a pipe, written to its log by the supervisor.

An incarnation runs image code; its standard streams are therefore NOT host files it
holds (a descriptor on ``logs/<id>.log`` would let it fill the disk, seek, truncate
away the evidence). ``process.spawn(..., log_cap=N)`` gives it one pipe for both
streams, and a ``LogPump`` drains that pipe into ``logs/<id>.log``:

* at most ``max_bytes`` per file: past it the file becomes ``<id>.log.1`` (an older
  ``.1`` is dropped) and a new file starts with a line saying how many bytes were
  dropped so far; so a child's log takes at most ``2 * max_bytes`` of disk, however
  much it writes;
* the file is the supervisor's: the child can neither seek nor truncate it (a pipe
  has no offset), only append through the pump;
* a write to the file that fails (disk full) drops what it carried and is counted;
  the pump never stops draining while the supervisor lives.

Threads: one daemon thread per pump (``batos-logpump-<name>``), which only reads the
pipe and writes the file; it ends at end of file (the child and everything it started
have closed their ends). The supervisor's loop never touches the pipe, so a child that
writes nothing, or too much, cannot block the loop.

A child's writes block only while the pipe (``PIPE_BYTES``) is full, i.e. while the
pump is behind by a disk write; a stopped supervisor (SIGSTOP, a debugger) stalls the
child's logging threads until it resumes, nothing else (heartbeats and replies go over
ZMQ). A dead supervisor closes the read end: the child's writes fail with ``EPIPE``.

What the file holds is the child's word, not the supervisor's: the pump's own notes
(rotation, drops) also go to the supervisor's log (``batos.supervisor.logpump``),
which no child can write.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import threading
from pathlib import Path

__all__ = ["DEFAULT_MAX_BYTES", "PIPE_BYTES", "LogPump"]

log = logging.getLogger("batos.supervisor.logpump")

DEFAULT_MAX_BYTES = 64 << 20
PIPE_BYTES = 1 << 20  # the pipe's buffer (F_SETPIPE_SZ), where the kernel allows it
_CHUNK = 1 << 16
_F_SETPIPE_SZ = 1031


class LogPump:
    """Drains ``fd`` (a pipe's read end, owned from now on) into ``path`` (module docstring)."""

    def __init__(self, fd: int, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 name: str = "") -> None:
        if max_bytes < 1024:
            raise ValueError(f"a log's cap must be at least 1024 bytes, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.name = name or self.path.stem
        #: bytes of output no longer on disk (rotated away, or lost to a failed write)
        self.dropped = 0
        self.rotations = 0
        self._fd = fd
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - owned by the thread
        self._size = self._file.tell()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"batos-logpump-{self.name}",
                                        daemon=True)

    @staticmethod
    def pipe() -> tuple[int, int]:
        """A pipe for a child's output: (read end, write end), the buffer enlarged."""
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
        return read_end, write_end

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once the pipe reached end of file and the file is closed."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def _run(self) -> None:
        try:
            while True:
                try:
                    data = os.read(self._fd, _CHUNK)
                except InterruptedError:
                    continue
                except OSError as exc:
                    log.error("cannot read the output of %s: %s", self.name, exc)
                    break
                if not data:
                    break
                self._write(data)
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            with contextlib.suppress(OSError):
                self._file.close()
            self._done.set()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self.max_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            part = view[:room]
            try:
                self._file.write(part)
                self._size += len(part)
            except OSError as exc:
                self.dropped += len(part)
                self._size += len(part)  # a failing disk still rotates, so we retry fresh
                log.warning("dropped %d bytes of %s's output: %s", len(part), self.name, exc)
            view = view[len(part):]

    def _rotate(self) -> None:
        old = self.path.with_name(self.path.name + ".1")
        with contextlib.suppress(OSError):
            self.dropped += old.stat().st_size
        with contextlib.suppress(OSError):
            self._file.close()
        try:
            os.replace(self.path, old)
        except OSError as exc:
            log.warning("cannot rotate %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        self._size = 0
        self.rotations += 1
        note = (f"log rotated (cap {self.max_bytes} bytes): {self.dropped} bytes of this "
                f"output dropped so far; the previous part is {old.name}")
        log.warning("%s: %s", self.name, note, extra={"log_file": str(self.path),
                                                      "dropped": self.dropped})
        line = json.dumps({"ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                           "level": "WARNING", "logger": "batos.supervisor.logpump",
                           "msg": note, "dropped": self.dropped}) + "\n"
        with contextlib.suppress(OSError):
            self._file.write(line.encode())
            self._size += len(line)
