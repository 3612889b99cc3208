"""A real ZEO server for integration tests, and reaping the processes tests start.

``zeo_address`` runs ``python -m ZEO.runzeo`` on a FileStorage in the test's folder,
listening on a Unix socket, waits until it accepts, and stops it on teardown. Import
its fixture into a test module:
``from tests.integration.zeo_fixtures import zeo_address_fixture  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until

__all__ = ["kill_and_reap", "start_runzeo", "zeo_address_fixture"]


def kill_and_reap(proc: subprocess.Popen[Any], grace: float = 0.0) -> None:
    """SIGTERM and up to ``grace`` s to exit (when ``grace``), then SIGKILL; always reaped."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if wait and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # its own session: pgid == pid
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
    proc.wait(timeout=10)
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()


def start_runzeo(sock: Path, storage: Path, log: Path) -> subprocess.Popen[Any]:
    """``python -m ZEO.runzeo`` serving ``storage`` on the Unix socket ``sock`` (its own
    session, output appended to ``log``), accepting when this returns; the caller reaps it
    (``kill_and_reap``)."""
    with log.open("a") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ZEO.runzeo", "-a", str(sock), "-f", str(storage)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def accepting() -> bool:
        assert server.poll() is None, f"runzeo exited {server.returncode}: {log.read_text()}"
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(sock))
            except OSError:
                return False
        return True

    try:
        wait_until(accepting, timeout=30)
    except BaseException:
        kill_and_reap(server)
        raise
    return server


@pytest.fixture(name="zeo_address")
def zeo_address_fixture(tmp_path: Path) -> Iterator[str]:
    """A real ZEO server (runzeo) for a FileStorage in tmp_path, on a Unix socket."""
    sockdir = Path(tempfile.mkdtemp(prefix="batos-zeo-"))  # short: socket paths max ~107 bytes
    sock = sockdir / "zeo.sock"
    server = start_runzeo(sock, tmp_path / "zeo.fs", tmp_path / "zeo.log")
    try:
        yield str(sock)
    finally:
        kill_and_reap(server, grace=10.0)
        shutil.rmtree(sockdir, ignore_errors=True)
