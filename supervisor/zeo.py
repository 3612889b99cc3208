"""The ZEO server the supervisor owns: the one process that writes the image file.

It runs ``python -m ZEO.runzeo`` for ``<home>/live_image.fs`` on a Unix
socket in the run folder (never a network address), as a child in its own
session. ``ensure`` is called from the supervisor's loop: it notices a dead
server and restarts it, with a growing delay if it keeps dying. Readiness is
a condition (the socket accepts a connection), never a sleep.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import process
from .errors import ZeoError

__all__ = ["ZeoServer"]

log = logging.getLogger("batos.supervisor.zeo")


class ZeoServer:
    def __init__(self, image: Path, sock: Path, log_file: Path) -> None:
        self.image = image
        self.sock = sock
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._next_start = 0.0
        self._delay = 0.5

    @property
    def address(self) -> str:
        return str(self.sock)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        self.sock.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "ZEO.runzeo", "-a", str(self.sock), "-f", str(self.image)]
        self.proc = process.spawn(argv, log_file=self.log_file)
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self.proc.poll() is not None:
                raise ZeoError(
                    f"the ZEO server for {self.image} exited with {self.proc.returncode} at start; "
                    f"see {self.log_file}"
                )
            if time.monotonic() > deadline:
                process.stop(self.proc, "ZEO server", grace=2)
                raise ZeoError(f"the ZEO server did not accept connections within {timeout:.0f}s")
            time.sleep(0.02)  # polling a condition with a deadline
        log.info("ZEO server serving", extra={"pid": self.proc.pid, "socket": str(self.sock)})

    def _accepts(self) -> bool:
        if not self.sock.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            try:
                probe.connect(str(self.sock))
            except OSError:
                return False
        return True

    def ensure(self, now: float) -> bool:
        """Restart the server if it died; answers True when it was restarted."""
        if self.alive() or now < self._next_start:
            return False
        code = self.proc.returncode if self.proc else None
        log.error("ZEO server died (exit %s); restarting", code, extra={"restarts": self.restarts})
        try:
            self.start()
        except ZeoError as exc:
            self._next_start = now + self._delay
            self._delay = min(self._delay * 2, 30.0)
            log.error("ZEO restart failed: %s; next try in %.1fs", exc, self._delay)
            return False
        self.restarts += 1
        self._delay = 0.5
        return True

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is not None:
            process.stop(self.proc, "ZEO server", grace=grace)
        self.sock.unlink(missing_ok=True)
