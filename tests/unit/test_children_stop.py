"""envs.children: stop with escalation on real children (SIGTERM, grace, SIGKILL, reap).

Each child is a small ``python -c`` program in its own session that says ``up`` (and
the pids of what it started) on stdout once its signal handlers are set, so a test
waits on that line, never on a sleep. Every process a test starts is killed at the end
even when the test fails.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from envs import children
from tests.conftest import wait_until

LEAVES = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
print("up", flush=True)
while True:
    time.sleep(0.05)
"""

IGNORES = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
while True:
    time.sleep(0.05)
"""

# a parent that starts a grandchild in a session of its own (out of the parent's group,
# so a group signal misses it) which ignores SIGTERM, and reaps it when it goes
ESCAPES = """
import json, subprocess, sys
grandchild = subprocess.Popen([sys.executable, "-c", {grandchild!r}], stdout=subprocess.PIPE,
                              start_new_session=True)
assert grandchild.stdout.readline() == b"up\\n"
print(json.dumps({{"grandchild": grandchild.pid}}), flush=True)
grandchild.wait()
print("reaped", flush=True)
import time
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    extra: list[int] = []
    yield procs
    for proc in procs:
        for leftover in children.descendants(proc.pid):
            extra.append(leftover.pid)
        children.signal_group(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    for pid in extra:
        children.signal_group(pid, signal.SIGKILL)


def start(started: list[subprocess.Popen[bytes]], program: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                            start_new_session=True)
    started.append(proc)
    return proc


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_child_that_leaves_on_sigterm_is_not_killed(started, caplog):
    proc = start(started, LEAVES)
    assert proc.stdout.readline() == b"up\n"
    caplog.set_level(logging.INFO, logger="batos.envs.children")
    began = time.monotonic()
    assert children.stop(proc, "polite child", grace=30) == 7
    assert time.monotonic() - began < 20  # it left on the SIGTERM, no grace spent
    assert proc.returncode == 7  # Popen's own status, not lost to psutil's reaping
    messages = [r.getMessage() for r in caplog.records]
    assert any("stopping polite child" in m and "SIGTERM" in m for m in messages)
    assert not any("SIGKILL" in m for m in messages)
    assert any("polite child" in m and "exited with 7" in m for m in messages)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(started, caplog):
    proc = start(started, IGNORES)
    assert proc.stdout.readline() == b"up\n"
    caplog.set_level(logging.INFO, logger="batos.envs.children")
    began = time.monotonic()
    assert children.stop(proc, "stubborn child", grace=0.5) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.5
    assert proc.returncode == -signal.SIGKILL
    assert any("still running after 0.5s: SIGKILL" in r.getMessage() for r in caplog.records)


def test_a_stopped_child_that_already_exited_keeps_its_status(started):
    proc = start(started, "print('up', flush=True)")
    assert proc.stdout.readline() == b"up\n"
    assert proc.wait(30) == 0
    assert children.stop(proc, "finished child", grace=5) == 0
    assert proc.returncode == 0


def test_descendants_passed_in_also_are_stopped_with_it(started):
    proc = start(started, ESCAPES.format(grandchild=IGNORES))
    grandchild = json.loads(proc.stdout.readline())["grandchild"]
    also = children.descendants(proc.pid)
    assert [p.pid for p in also] == [grandchild]
    assert children.stop(proc, "parent", grace=0.5, also=also) == -signal.SIGTERM
    wait_until(lambda: gone(grandchild), timeout=20)  # out of the group: killed by name


def test_a_process_that_is_not_our_child_is_stopped_without_a_status(started):
    proc = start(started, ESCAPES.format(grandchild=IGNORES))
    grandchild = json.loads(proc.stdout.readline())["grandchild"]
    # SIGTERM ignored, so after the grace it is killed; its parent (not us) reaps it
    assert children.stop(psutil.Process(grandchild), "grandchild", grace=0.3) is None
    assert proc.stdout.readline() == b"reaped\n"
    assert gone(grandchild)
    assert proc.poll() is None  # the group of the grandchild, not its parent's


def test_kill_is_immediate_and_waits_when_asked(started):
    proc = start(started, IGNORES)
    assert proc.stdout.readline() == b"up\n"
    assert children.kill(proc, "unresponsive child", wait=10) is True
    assert proc.returncode == -signal.SIGKILL
    assert children.kill(proc, "unresponsive child") is True  # gone: nothing to do
