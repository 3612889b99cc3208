"""A confined incarnation's output, memory and process group are not its to abuse: a
real supervisor, with the Python wall deliberately bypassed (``BATOS_UNSAFE_TEST_EXPOSE_OS=1``
hands methods the real ``os`` and ``ctypes``), and a small log cap from ``[sandbox]``.

* its stdout/stderr are a pipe the supervisor drains (``supervisor.logpump``): a flood
  leaves at most two capped files on disk with a note of what was dropped; it cannot
  truncate or seek the log (a pipe has neither);
* ``memfd_create`` (memory ``RLIMIT_AS`` does not count), ``setsid``, ``setpgid`` and
  ``prctl(PR_SET_PDEATHSIG)`` are denied, and it is still in the process group and
  session its sandbox started it in; it keeps serving, the same process.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest

from bridge import RemoteError
from envs import confine
from tests.integration.supervisor_fixtures import (
    Supervisors,
    supervisors_fixture,  # noqa: F401
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(confine.unavailable() is not None, reason="no seccomp here"),
]

UNSAFE = {"BATOS_UNSAFE_TEST_EXPOSE_OS": "1"}
CAP = 64 * 1024
CHUNK = 64 * 1024

METHODS = {
    "flood:": ("def flood(self, n):\n"
               "    for i in range(n):\n"
               "        os.write(1, b'x' * 65536)\n"
               "    os.write(1, b'\\nEND OF FLOOD\\n')\n"
               "    return n\n"),
    "truncateLog": "def truncateLog(self):\n    os.ftruncate(2, 10)\n    return 'truncated'\n",
    "seekLog": "def seekLog(self):\n    return os.lseek(1, 0, 0)\n",
    "memfd": "def memfd(self):\n    return os.memfd_create('x')\n",
    "newSession": "def newSession(self):\n    return os.setsid()\n",
    "newGroup": "def newGroup(self):\n    os.setpgid(0, 0)\n    return os.getpgid(0)\n",
    "noDeathSignal": ("def noDeathSignal(self):\n"
                      "    libc = ctypes.CDLL(None, use_errno=True)\n"
                      "    return [libc.prctl(1, 0, 0, 0, 0), ctypes.get_errno()]\n"),
    "groups": "def groups(self):\n    return [os.getpid(), os.getpgid(0), os.getsid(0)]\n",
}


def _refused(client, selector: str, *words: str) -> str:
    with pytest.raises(RemoteError) as info:
        client.send("genesis", selector)
    message = info.value.message
    assert any(word in message for word in words), (selector, info.value.type, message)
    return message


def test_a_confined_incarnation_cannot_grow_truncate_or_leave_its_group(
        supervisors: Supervisors) -> None:
    sup = supervisors.start(env=UNSAFE, config={"sandbox": {"log_max_bytes": CAP}})
    client = sup.client
    (inc,) = sup.status()["incarnations"]
    pid, ident = inc["pid"], inc["id"]
    log = sup.home / "logs" / f"{ident}.log"
    rotated = log.with_name(log.name + ".1")
    assert os.readlink(f"/proc/{pid}/fd/1").startswith("pipe:")
    assert os.readlink(f"/proc/{pid}/fd/2") == os.readlink(f"/proc/{pid}/fd/1")
    for selector, source in METHODS.items():
        client.send("genesis", "defineMethod:source:", selector, source)
    before = client.send("genesis", "groups")

    # the log: no seek, no truncate on a pipe
    _refused(client, "truncateLog", "Invalid argument", "EINVAL")
    _refused(client, "seekLog", "Illegal seek", "ESPIPE")
    assert log.stat().st_size > 0

    # a flood of 40 x 64 KiB: two capped files, the rest dropped and said so
    written = 40 * CHUNK
    assert client.send("genesis", "flood:", 40) == 40
    note = "bytes of this output dropped so far"

    def pumped() -> bool:  # the pump is sequential: the end marker comes last
        try:
            return b"END OF FLOOD" in log.read_bytes()
        except FileNotFoundError:  # between a rotation's rename and the new file
            return False

    _wait(pumped, 30)
    sizes = [log.stat().st_size, rotated.stat().st_size]
    assert max(sizes) <= CAP + 512, sizes  # the cap, and a note line at most
    assert sum(sizes) < written // 4
    assert note.encode() in log.read_bytes()
    records = [r for r in sup.log_records() if r.get("logger") == "batos.supervisor.logpump"]
    assert records[-1]["dropped"] >= written - 3 * CAP  # said in the supervisor's own log too

    # memory the address-space limit would not see, and the process group
    _refused(client, "memfd", "PermissionError", "Operation not permitted")
    _refused(client, "newSession", "PermissionError", "Operation not permitted")
    _refused(client, "newGroup", "PermissionError", "Operation not permitted")
    assert client.send("genesis", "noDeathSignal") == [-1, 1]  # EPERM
    assert client.send("genesis", "groups") == before
    assert psutil.Process(pid).children(recursive=True) == []

    assert [i["pid"] for i in sup.status()["incarnations"]] == [pid]  # the same process


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)
