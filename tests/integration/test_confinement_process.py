"""The process lock holds on its own: real incarnations and real trial workers, with the
Python wall deliberately bypassed (``BATOS_UNSAFE_TEST_EXPOSE_OS=1`` hands methods the
real ``os``, ``subprocess``, ``socket``), still cannot exec, fork, signal another process
or open a kernel socket; they keep serving.

* a supervisor's confined incarnation: methods defined by a person that call
  ``os.system``, ``subprocess.run``, ``os.fork``, ``os.execv``, ``os.kill`` and an
  ``AF_NETLINK`` socket fail (or, for ``os.system``, get glibc's 127: no shell started);
  the incarnation is the same process afterwards, has no child, and its
  ``/proc/<pid>/status`` says seccomp filter mode;
* a crucible trial worker, started through a fork-server and started directly (in
  bwrap): the same proposals fail in the trial with ``PermissionError``, a benign one
  passes, and the answer says the worker was confined;
* an incarnation that cannot lock itself (libseccomp missing) does not start: exit 3
  with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from bridge import RemoteError
from crucible import ImageRef, Proposal, TrialLimits, TrialRunner
from crucible.trial import worker_command
from envs import confine
from envs.spawner import Spawner
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    Supervisors,
    supervisors_fixture,  # noqa: F401
)
from uvm import Kernel

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(confine.unavailable() is not None, reason="no seccomp here"),
]

ROOT = Path(__file__).resolve().parents[2]
UNSAFE = {"BATOS_UNSAFE_TEST_EXPOSE_OS": "1"}
LIMITS = TrialLimits(cpu_seconds=2.0, memory_mb=256, wall_seconds=20.0)

# selector -> (source, args); each would do harm (or start a process) if the OS let it
HOSTILE: dict[str, tuple[str, list[Any]]] = {
    "trySystem": ("def trySystem(self):\n    return os.system('true')\n", []),
    "trySubprocess": ("def trySubprocess(self):\n"
                      "    return subprocess.run(['/bin/true']).returncode\n", []),
    "tryFork": ("def tryFork(self):\n    return os.fork()\n", []),
    "tryExec": ("def tryExec(self):\n    os.execv('/bin/true', ['true'])\n    return 0\n", []),
    "tryKill": ("def tryKill(self):\n    os.kill(1, 0)\n    return 0\n", []),
    "tryNetlink": ("def tryNetlink(self):\n"
                   "    return str(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))\n", []),
}
DENIED = ("PermissionError", "Operation not permitted")


def _refused(text: str) -> bool:
    return any(word in text for word in DENIED)


def test_a_confined_incarnation_cannot_exec_fork_or_signal_and_keeps_serving(
        supervisors: Supervisors) -> None:
    sup = supervisors.start(env=UNSAFE)
    client = sup.client
    state = sup.status()
    (inc,) = state["incarnations"]
    pid = inc["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert "\nSeccomp:\t2\n" in status  # filter mode: the lock is on
    logs = "\n".join(p.read_text(errors="replace") for p in (sup.home / "logs").glob("inc-*.log"))
    assert "ms: seccomp lock" in logs
    assert "UNSAFE TEST BUILD" in logs  # the Python wall really is bypassed here

    for selector, (source, _args) in HOSTILE.items():
        client.send("genesis", "defineMethod:source:", selector, source)
    for selector, (_source, args) in HOSTILE.items():
        if selector == "trySystem":
            assert client.send("genesis", selector, *args) == 127 << 8  # no shell started
            continue
        with pytest.raises(RemoteError) as info:
            client.send("genesis", selector, *args)
        assert _refused(info.value.message), (selector, info.value.type, info.value.message)

    assert client.send("genesis", "printString").startswith("<genesis")
    after = sup.status()["incarnations"]
    assert [i["pid"] for i in after] == [pid]  # the same process: nothing replaced it
    assert psutil.Process(pid).children(recursive=True) == []  # no process was started


@pytest.fixture
def unsafe(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UNSAFE.items():
        monkeypatch.setenv(name, value)  # trial workers inherit it (crucible.trial.worker_env)


@pytest.fixture
def fork_server(unsafe: None) -> Any:
    spawner = Spawner.start([worker_command(network=False)])
    try:
        yield spawner
    finally:
        spawner.close()


def _trials(runner: TrialRunner) -> dict[str, Any]:
    verdicts = {}
    for selector, (source, args) in HOSTILE.items():
        verdicts[selector] = runner.run(Proposal(source=source), receiver="genesis",
                                        selector=selector, args=args)
    verdicts["benign"] = runner.run(
        Proposal(source="def double(self, x):\n    return x * 2\n"), receiver="genesis",
        selector="double:", args=[21])
    return verdicts


def _check_trials(verdicts: dict[str, Any]) -> None:
    benign = verdicts.pop("benign")
    assert benign.status == "pass", benign.reasons
    assert benign.detail["result"] == 42
    assert benign.detail["confined"]["seccomp"] is True
    for selector, verdict in verdicts.items():
        if selector == "trySystem":
            assert verdict.status == "pass", verdict.reasons
            assert verdict.detail["result"] == 127 << 8, verdict.detail
            continue
        assert verdict.status == "fail", (selector, verdict)
        assert _refused(" ".join(verdict.reasons)), (selector, verdict.reasons)


def test_trial_workers_through_a_fork_server_are_locked(db: Any, image_path: Path,
                                                       fork_server: Spawner) -> None:
    Kernel(db).send("genesis", "printString", [])
    with TrialRunner(ImageRef(path=str(image_path)), LIMITS, spawner=fork_server) as runner:
        verdicts = _trials(runner)
        # a worker killed after its trial stays in live_pids until the runner's spawner
        # thread has heard of its exit; the fork-server may have reaped it already
        wait_until(lambda: set(runner.live_pids()) <= set(fork_server_children(fork_server)))
    _check_trials(verdicts)


def test_a_request_to_the_fork_server_cannot_unlock_a_trial_worker(
        db: Any, image_path: Path, fork_server: Spawner) -> None:
    # confine=False in the worker's argv, as hostile code talking to the socket would ask:
    # the table's environment (BATOS_CONFINE_REQUIRED=1) wins
    with TrialRunner(ImageRef(path=str(image_path)), LIMITS, spawner=fork_server,
                     confine=False) as runner:
        source, args = HOSTILE["tryFork"]
        verdict = runner.run(Proposal(source=source), receiver="genesis", selector="tryFork",
                             args=args)
    assert verdict.status == "fail", verdict
    assert _refused(" ".join(verdict.reasons))
    assert verdict.detail["confined"]["seccomp"] is True


def fork_server_children(spawner: Spawner) -> list[int]:
    return [p.pid for p in psutil.Process(spawner.server_pid).children()]


def test_trial_workers_started_directly_are_locked(db: Any, image_path: Path,
                                                   unsafe: None) -> None:
    Kernel(db).send("genesis", "printString", [])
    with TrialRunner(ImageRef(path=str(image_path)), LIMITS) as runner:
        verdicts = _trials(runner)
    _check_trials(verdicts)


def test_an_incarnation_that_cannot_lock_itself_does_not_start(tmp_path: Path) -> None:
    # a pyseccomp that cannot load, first on the path: as on a host without libseccomp
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyseccomp.py").write_text("raise OSError('libseccomp.so.2: cannot open')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "batos.root.incarnation", "--backend", f"ipc://{tmp_path}/be.sock",
         "--zeo", str(tmp_path / "zeo.sock"), "--id", "inc-x"],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": f"{broken}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "cannot start confined" in proc.stderr
    assert "libseccomp cannot be loaded" in proc.stderr
