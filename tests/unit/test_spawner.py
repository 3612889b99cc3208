"""envs.spawner: the fork-server, for real (fork, exec, SCM_RIGHTS, death signals).

The children are ``python -m tests.unit.spawner_child`` (a table of one command). One
test locks a caller with ``envs.confine`` and shows it still starts children through
its fork-server, and only those of the table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from envs import EnvSpec, confine
from envs.errors import EnvError, SpawnerUnavailable, SpawnRefused
from envs.spawner import Command, Spawner, check_argv
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHILD = "tests.unit.spawner_child"
TABLE = [Command("child", sys.executable, (CHILD,), cwd=str(ROOT),
                 env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})]


@pytest.fixture
def spawner():
    sp = Spawner.start(TABLE)
    try:
        yield sp
    finally:
        sp.close()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize(("argv", "says"), [
    (["/bin/sh", "-c", "id"], "not in the fork-server's table"),
    ([sys.executable, "-c", "print(1)"], "not in the fork-server's table"),
    ([sys.executable, "-m", "os"], "refused module 'os'"),
    ([sys.executable, "-m"], "runs only [python, '-m', module, *args]"),
    ([sys.executable, "-m", CHILD] + ["x"] * 17, "at most 16"),
    ([sys.executable, "-m", CHILD, "a\0b"], "NUL"),
    ("python -m x", "list of strings"),
])
def test_argv_outside_the_table_is_refused(argv, says):
    with pytest.raises(SpawnRefused) as info:
        check_argv(TABLE, argv)
    assert says in str(info.value)
    assert issubclass(SpawnRefused, EnvError)


def test_the_server_holds_nothing_of_the_caller(spawner):
    import ZODB  # noqa: F401 - the caller has the image machinery loaded; the server must not

    spawner.wait_ready()
    maps = Path(f"/proc/{spawner.server_pid}/maps").read_text()
    for library in ("BTrees", "cPersistence", "zmq", "pydantic_core"):
        assert library not in maps, library
    assert psutil.Process(spawner.server_pid).cmdline()[1] == "-P"


def test_the_server_itself_refuses_what_the_client_did_not_check(spawner):
    # a caller that bypasses the client's check (as hostile code in the caller would)
    with pytest.raises(SpawnRefused, match="not in the fork-server's table"):
        spawner._call({"op": "spawn", "argv": ["/bin/sh", "-c", "id"]}, 10)
    with pytest.raises(SpawnRefused, match="not a running child"):
        spawner._call({"op": "signal", "pid": os.getpid(), "sig": 0}, 10)


def test_pipes_work_and_exit_codes_are_reported(spawner):
    proc = spawner.spawn([sys.executable, "-m", CHILD, "echo"])
    proc.stdin.write(b"hello")
    proc.stdin.close()
    assert proc.stdout.read() == b"HELLO"
    pid_line = proc.stderr.read().decode()
    assert proc.wait(30) == 0
    assert proc.returncode == 0
    assert pid_line.split() == ["pid", str(proc.pid), "sid", str(proc.pid)]  # own session
    proc.close()

    proc = spawner.spawn([sys.executable, "-m", CHILD, "exit", "3"])
    assert proc.wait(30) == 3
    proc.close()

    proc = spawner.spawn([sys.executable, "-m", CHILD, "hold"])
    assert proc.stdout.readline() == b"up\n"
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.05)
    proc.terminate()
    assert proc.wait(30) == -signal.SIGTERM
    proc.kill()  # after the exit: nothing happens
    proc.close()


def test_at_most_max_children_run_at_once():
    sp = Spawner.start(TABLE, max_children=2)
    try:
        held = [sp.spawn([sys.executable, "-m", CHILD, "hold"]) for _ in range(2)]
        with pytest.raises(SpawnRefused, match="limit is 2"):
            sp.spawn([sys.executable, "-m", CHILD, "hold"])
        held[0].kill()
        assert held[0].wait(30) == -signal.SIGKILL
        third = sp.spawn([sys.executable, "-m", CHILD, "exit", "0"])  # room again
        assert third.wait(30) == 0
        for proc in [*held, third]:
            proc.close()
    finally:
        sp.close()


def test_close_kills_the_children(spawner):
    proc = spawner.spawn([sys.executable, "-m", CHILD, "hold"])
    assert proc.stdout.readline() == b"up\n"
    spawner.close()
    wait_until(lambda: gone(proc.pid), timeout=20)
    assert proc.wait(10) == -signal.SIGKILL
    with pytest.raises(SpawnerUnavailable):
        spawner.spawn([sys.executable, "-m", CHILD, "hold"])


PARENT = """
import json, sys
sys.path.insert(0, {root!r})
from envs.spawner import Command, Spawner
from envs.confine import lock
table = [Command("child", sys.executable, ({child!r},), cwd={root!r}, env={{"PYTHONPATH": {root!r}}})]
sp = Spawner.start(table)
lock()
proc = sp.spawn([sys.executable, "-m", {child!r}, "hold"])
assert proc.stdout.readline() == b"up\\n"
refused = ""
try:
    sp.spawn(["/bin/sh", "-c", "true"])
except Exception as exc:
    refused = type(exc).__name__
print(json.dumps({{"server": sp.server_pid, "child": proc.pid, "refused": refused}}), flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(confine.unavailable() is not None, reason="no seccomp here")
def test_a_locked_caller_spawns_through_it_and_both_die_with_the_caller():
    program = PARENT.format(root=str(ROOT), child=CHILD)
    parent = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, cwd=str(ROOT))
    try:
        line = parent.stdout.readline()
        assert line, "the locked parent did not report"
        info = json.loads(line)
        assert info["refused"] == "SpawnRefused"
        assert not gone(info["server"])
        assert not gone(info["child"])
        parent.kill()
        parent.wait(30)
        wait_until(lambda: gone(info["server"]) and gone(info["child"]), timeout=20)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        parent.stdin.close()


# --- the training env's children through a fork-server (weaver.train_env) -------------


@pytest.fixture
def train_routed(tmp_path):
    from weaver import train_env

    root = tmp_path / "train-envs"
    env_dir = root / "0123456789abcdef"
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").symlink_to(sys.executable)
    (env_dir / train_env.MARKER).write_text("{}")
    base = tmp_path / "base-model"
    base.mkdir()
    (tmp_path / "inquiry" / "cycle").mkdir(parents=True)
    (tmp_path / "adapters").mkdir()
    sp = Spawner.start([train_env.spawner_command(root, base=base, work=tmp_path)])
    train_env.route_through(sp)
    try:
        yield train_env, train_env.TrainEnv(env_dir, env_dir / "bin" / "python",
                                            EnvSpec(python=sys.executable), built=False)
    finally:
        train_env.route_through(None)
        sp.close()


def test_training_runs_go_through_the_fork_server_and_only_its_modules(train_routed, tmp_path):
    train_env, env = train_routed
    log = tmp_path / "inquiry" / "cycle" / "train.log"
    with pytest.raises(train_env.TrainingFailed) as info:
        train_env.run_module(env, "weaver.training", ["--base", str(tmp_path / "base-model")],
                             log_path=log, timeout=60)
    assert "exited with status 2" in str(info.value)
    assert "loads only the configured base model" not in str(info.value)
    assert "the following arguments are required" in log.read_text()  # stderr -> the log
    with pytest.raises(train_env.TrainingFailed, match="'os' is not one of weaver.training"):
        train_env.run_module(env, "os", [], timeout=60)
    with pytest.raises(train_env.TrainingFailed, match="only the configured base model"):
        train_env.run_module(env, "weaver.training", ["--base", str(tmp_path)], timeout=60)
    with pytest.raises(train_env.TrainingFailed, match="only the configured base model"):
        train_env.run_module(env, "weaver.evaluate", [], timeout=60)
    forged = train_env.TrainEnv(tmp_path, env.python, env.spec, built=False)
    with pytest.raises(train_env.TrainingFailed, match="is not a complete training env"):
        train_env.run_module(forged, "weaver.training", [], timeout=60)
    with pytest.raises(train_env.TrainEnvError, match="builds only the default training env"):
        train_env.ensure_env(tmp_path / "elsewhere")


def test_a_training_run_writes_only_under_its_work_folder_and_runs_locked(train_routed, tmp_path):
    """The table fixes where a run's log, data and output lie (inquiry/ under the work
    folder; --against also adapters/), and the run is locked before it execs."""
    train_env, env = train_routed
    base = str(tmp_path / "base-model")
    cycle = tmp_path / "inquiry" / "cycle"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")

    def refused(module, args, log_path, match):
        with pytest.raises(train_env.TrainingFailed, match=match):
            train_env.run_module(env, module, ["--base", base, *args], log_path=log_path,
                                 timeout=60)

    # the log: anywhere else, another name, or through a symlink out of the folder
    refused("weaver.training", [], victim, "is not an absolute path to train.log")
    refused("weaver.training", [], tmp_path / "train.log", "is not under")
    (cycle / "evaluate.log").symlink_to(victim)
    # straight to the fork-server (run_module resolves the path on the caller's side)
    child = train_env._spawner.spawn([sys.executable, "-m", "weaver.train_env", "run",
                                      env.path.name, str(cycle / "evaluate.log"),
                                      "weaver.evaluate", "--base", base])
    child.stdin.close()
    child.stderr.close()
    assert child.wait(60) == 2
    reply = json.loads(child.stdout.read().decode())
    child.stdout.close()
    assert "evaluate.log' is not under" in reply["message"]
    assert victim.read_text() == "keep me"
    # the paths among the options, abbreviations and --opt=value
    refused("weaver.training", ["--out", str(tmp_path / "elsewhere")], "-", "--out .* is not under")
    refused("weaver.training", ["--data", "/etc/passwd"], "-", "--data .* is not under")
    refused("weaver.training", ["--dat", "/etc/passwd"], "-", "'--dat' is not an option")
    refused("weaver.training", [f"--out={tmp_path}"], "-", "is not an option")
    refused("weaver.training", ["--data", str(cycle / ".." / ".." / "x")], "-", "is not under")
    refused("weaver.evaluate", ["--against", "/"], "-", "--against .* is not under")
    refused("weaver.evaluate", ["--limit"], "-", "--limit has no value")
    # inside the folders it runs, locked: a probe env whose "python" reports its own
    # seccomp mode to stderr, which is the log
    probe = env.path.parent / "fedcba9876543210"
    (probe / "bin").mkdir(parents=True)
    script = probe / "bin" / "python"
    script.write_text("#!/bin/sh\ngrep '^Seccomp:' /proc/self/status >&2\n"
                      "echo \"$@\" >&2\nexit 3\n")
    script.chmod(0o755)
    (probe / train_env.MARKER).write_text("{}")
    probed = train_env.TrainEnv(probe, script, env.spec, built=False)
    log = cycle / "train.log"
    with pytest.raises(train_env.TrainingFailed, match="exited with status 3"):
        train_env.run_module(probed, "weaver.training",
                             ["--base", base, "--data", str(cycle / "data"), "--out",
                              str(cycle / "adapter"), "--qlora", "--steps", "2"],
                             log_path=log, timeout=60)
    text = log.read_text()
    assert "Seccomp:\t2" in text  # filter mode, inherited across the exec
    assert f"--out {cycle / 'adapter'} --qlora --steps 2" in text


def test_a_table_without_a_work_folder_runs_no_training(tmp_path):
    from weaver import train_env

    root = tmp_path / "train-envs"
    env_dir = root / "0123456789abcdef"
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").symlink_to(sys.executable)
    (env_dir / train_env.MARKER).write_text("{}")
    sp = Spawner.start([train_env.spawner_command(root)])
    train_env.route_through(sp)
    try:
        env = train_env.TrainEnv(env_dir, env_dir / "bin" / "python",
                                 EnvSpec(python=sys.executable), built=False)
        with pytest.raises(train_env.TrainingFailed, match="names no work folder"):
            train_env.run_module(env, "weaver.training", [], timeout=60)
    finally:
        train_env.route_through(None)
        sp.close()


def test_a_training_run_that_cannot_lock_itself_does_not_run(tmp_path, monkeypatch):
    """Fail closed: with pyseccomp unimportable where the run step runs, nothing is exec'd."""
    from weaver import train_env

    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "pyseccomp.py").write_text("raise ImportError('pyseccomp is not here')\n")
    monkeypatch.setenv("PYTHONPATH", f"{shadow}{os.pathsep}{ROOT}")
    root = tmp_path / "train-envs"
    env_dir = root / "0123456789abcdef"
    (env_dir / "bin").mkdir(parents=True)
    ran = tmp_path / "ran"
    script = env_dir / "bin" / "python"
    script.write_text(f"#!/bin/sh\ntouch {ran}\nexit 0\n")
    script.chmod(0o755)
    (env_dir / train_env.MARKER).write_text("{}")
    (tmp_path / "inquiry").mkdir()
    sp = Spawner.start([train_env.spawner_command(root, work=tmp_path)])
    train_env.route_through(sp)
    try:
        env = train_env.TrainEnv(env_dir, script, EnvSpec(python=sys.executable), built=False)
        with pytest.raises(train_env.TrainingFailed, match="cannot lock itself, so it does not run"):
            train_env.run_module(env, "weaver.training", ["--steps", "1"], timeout=60)
    finally:
        train_env.route_through(None)
        sp.close()
    assert not ran.exists()
