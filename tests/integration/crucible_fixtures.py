"""Fixtures for the crucible's integration tests: a real ZEO server, and the image digest."""

from __future__ import annotations

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


def image_state(db: Any, path: Path) -> tuple[bytes, int]:
    """What must not move when a trial runs: the last transaction id and the file's size."""
    return db.storage.lastTransaction(), path.stat().st_size


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1].startswith("Z")  # a zombie is gone too
    except FileNotFoundError:
        return True


@pytest.fixture
def zeo_server(tmp_path: Path) -> Iterator[str]:
    """A real ZEO server (runzeo) for a FileStorage in tmp_path, on a Unix socket."""
    sockdir = Path(tempfile.mkdtemp(prefix="batos-cz-"))
    sock = sockdir / "zeo.sock"
    log = tmp_path / "zeo.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "ZEO.runzeo", "-a", str(sock), "-f", str(tmp_path / "zeo.fs")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        def accepting() -> bool:
            assert server.poll() is None, f"runzeo exited {server.returncode}: {log.read_text()}"
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(sock))
                except OSError:
                    return False
            return True

        wait_until(accepting, timeout=30)
        yield str(sock)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(sockdir, ignore_errors=True)
