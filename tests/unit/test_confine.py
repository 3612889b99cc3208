"""envs.confine: the process lock, checked for real in a child process.

Each test runs a small Python program in a fresh interpreter that locks itself with
``envs.confine.lock`` and then tries what the lock must stop (or keep working), printing
one JSON object; the test reads it. The test process itself is never locked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from envs import confine
from envs.errors import ConfinementUnavailable, EnvError

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(confine.unavailable() is not None,
                                reason=f"no seccomp here: {confine.unavailable()}")

PRELUDE = """
import json, os, socket, subprocess, sys, threading
from envs.confine import lock
out = {}
def attempt(name, thunk):
    try:
        value = thunk()
        out[name] = ["ok", repr(value)[:200]]
    except BaseException as exc:
        out[name] = [type(exc).__name__, getattr(exc, "errno", None)]
"""


def run_locked(body: str, tmp_path: Path, timeout: float = 60) -> dict:
    program = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT), env={"PYTHONPATH": str(ROOT),
                                                               "PATH": "/usr/bin:/bin",
                                                               "TMP": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_locked_process_cannot_exec_fork_or_spawn(tmp_path):
    canary = tmp_path / "canary"
    out = run_locked(f"""
        applied = lock()
        out["applied"] = ["ok", applied["seccomp"]]
        attempt("execv", lambda: os.execv("/bin/sh", ["sh", "-c", "touch {canary}"]))
        attempt("subprocess", lambda: subprocess.run(["/bin/sh", "-c", "touch {canary}"]))
        attempt("system", lambda: os.system("touch {canary}"))
        attempt("fork", os.fork)
        attempt("posix_spawn", lambda: os.posix_spawn("/bin/sh", ["sh", "-c", "touch {canary}"],
                                                        os.environ))
        attempt("kill_init", lambda: os.kill(1, 0))
        attempt("kill_self", lambda: os.kill(os.getpid(), 0))
    """, tmp_path)
    assert out["applied"][0] == "ok"
    for name in ("execv", "subprocess", "fork", "posix_spawn", "kill_init"):
        assert out[name][0] == "PermissionError", (name, out[name])
    assert out["system"] == ["ok", "32512"]  # glibc's system(): the shell could not start (127)
    assert out["kill_self"][0] == "ok"
    assert not canary.exists()


def test_lock_covers_threads_started_before_it(tmp_path):
    out = run_locked("""
        go = threading.Event()
        def early():
            go.wait()
            attempt("early_exec", lambda: os.execv("/bin/true", ["true"]))
            attempt("early_fork", os.fork)
        thread = threading.Thread(target=early)
        thread.start()
        applied = lock()
        go.set()
        thread.join()
        late = threading.Thread(target=lambda: attempt("late_exec",
                                lambda: os.execv("/bin/true", ["true"])))
        late.start()
        late.join()
        out["threads"] = ["ok", applied["threads"]]
    """, tmp_path)
    assert out["early_exec"][0] == "PermissionError"
    assert out["early_fork"][0] == "PermissionError"
    assert out["late_exec"][0] == "PermissionError"  # and threads still start after the lock
    assert out["threads"] == ["ok", 2]


def test_socket_families_and_the_network_switch(tmp_path):
    out = run_locked("""
        lock(network=False)
        attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
        attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
        attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        attempt("inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
        attempt("pair", lambda: [s.close() for s in socket.socketpair()])
    """, tmp_path)
    for name in ("packet", "netlink", "inet", "inet6"):
        assert out[name][0] == "PermissionError", (name, out[name])
    assert out["unix"][0] == "ok"
    assert out["pair"][0] == "ok"

    out = run_locked("""
        lock(network=True)
        attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
        attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
    """, tmp_path)
    assert out["inet"][0] == "ok"
    assert out["netlink"][0] == "PermissionError"


def test_kernel_surface_and_namespaces_denied(tmp_path):
    out = run_locked("""
        import ctypes, errno as E
        libc = ctypes.CDLL(None, use_errno=True)
        def raw(nr, *args):
            rc = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
            return rc if rc >= 0 else -ctypes.get_errno()
        lock()
        # x86-64 numbers: unshare 272, setns 308, mount 165, ptrace 101, bpf 321,
        # clone3 435, personality 135, clone 56 (flags: CLONE_NEWUSER|SIGCHLD)
        out["unshare"] = ["rc", raw(272, 0x10000000)]
        out["mount"] = ["rc", raw(165, 0, 0, 0, 0, 0)]
        out["ptrace"] = ["rc", raw(101, 16, 1, 0, 0)]
        out["bpf"] = ["rc", raw(321, 0, 0, 0)]
        out["clone3"] = ["rc", raw(435, 0, 0)]
        out["personality"] = ["rc", raw(135, 0x0040000)]
        out["personality_query"] = ["rc", raw(135, 0xFFFFFFFF)]
        out["clone_ns_thread"] = ["rc", raw(56, 0x10000000 | 0x00010000 | 0x00000800 | 0x100, 0, 0, 0, 0)]
        out["eperm"] = ["rc", -E.EPERM]
        out["enosys"] = ["rc", -E.ENOSYS]
    """, tmp_path)
    eperm, enosys = out["eperm"][1], out["enosys"][1]
    for name in ("unshare", "mount", "ptrace", "bpf", "personality", "clone_ns_thread"):
        assert out[name][1] == eperm, (name, out[name])
    assert out["clone3"][1] == enosys
    assert out["personality_query"][1] >= 0


def test_zmq_ipc_and_a_filestorage_work_after_the_lock(tmp_path):
    out = run_locked(f"""
        import zmq, transaction, ZODB, ZODB.FileStorage
        lock(network=False)
        ctx = zmq.Context()
        a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        a.bind("ipc://{tmp_path}/z.sock"); b.connect("ipc://{tmp_path}/z.sock")
        a.send(b"hi")
        out["zmq"] = ["ok", b.recv().decode() if b.poll(5000) else None]
        a.close(0); b.close(0); ctx.term()
        db = ZODB.DB(ZODB.FileStorage.FileStorage("{tmp_path}/x.fs"))
        with db.transaction() as conn:
            conn.root()["k"] = 42
        with db.transaction() as conn:
            out["zodb"] = ["ok", conn.root()["k"]]
        db.close()
    """, tmp_path)
    assert out["zmq"] == ["ok", "hi"]
    assert out["zodb"] == ["ok", 42]


def test_rlimits_applied_and_only_lowered(tmp_path):
    out = run_locked("""
        import resource
        applied = lock(memory_mb=2048, cpu_seconds=30, file_size=0)
        out["as"] = ["ok", [resource.getrlimit(resource.RLIMIT_AS)[1], applied["rlimits"]["as"]]]
        out["core"] = ["ok", resource.getrlimit(resource.RLIMIT_CORE)]
        out["fsize"] = ["ok", resource.getrlimit(resource.RLIMIT_FSIZE)]
        out["nofile"] = ["ok", resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 4096]
        out["cpu"] = ["ok", resource.getrlimit(resource.RLIMIT_CPU)[0] <= 32]
        out["keys"] = ["ok", sorted(applied["rlimits"])]
        out["big"] = ["ok", None]
        attempt("big", lambda: len(bytearray(3 << 30)))
    """, tmp_path)
    limit, applied_as = out["as"][1]
    # headroom on top of what the process held when it locked, arenas capped
    assert limit == applied_as["held"] + (2048 << 20) == applied_as["hard"]
    assert 0 < applied_as["held"] < 2 << 30
    assert applied_as["headroom_mb"] == 2048
    assert applied_as["arenas_capped"] is True
    assert out["core"][1] == [0, 0]
    assert out["fsize"][1] == [0, 0]
    assert out["nofile"][1] is True
    assert out["cpu"][1] is True
    assert out["keys"][1] == ["as", "core", "cpu", "fsize", "nofile"]
    assert out["big"][0] == "MemoryError"


def test_settle_memory_makes_the_headroom_over_what_is_held_when_serving(tmp_path):
    out = run_locked("""
        import resource
        from envs.confine import settle_memory
        lock(memory_mb=128, memory_reserve_mb=256)
        start = resource.getrlimit(resource.RLIMIT_AS)[1]
        kept = bytearray(200 << 20)  # what a process starts after its lock (threads, cache)
        settled = settle_memory()
        out["limits"] = ["ok", [start, resource.getrlimit(resource.RLIMIT_AS)[1], settled]]
        attempt("fits", lambda: len(bytearray(100 << 20)))
        attempt("over", lambda: len(bytearray(160 << 20)))
        del kept
        again = settle_memory()  # never raises the limit
        out["again"] = ["ok", again["hard"] <= settled["hard"]]
    """, tmp_path)
    start, now, settled = out["limits"][1]
    assert settled["settled"] is True
    assert now == settled["hard"] == settled["held"] + (128 << 20)
    assert now <= start  # lowered from held-at-lock + headroom + reserve
    assert out["fits"] == ["ok", repr(100 << 20)]
    assert out["over"][0] == "MemoryError"
    assert out["again"][1] is True


def test_settle_memory_without_a_memory_limit_is_none(tmp_path):
    out = run_locked("""
        from envs.confine import settle_memory
        lock()
        out["settled"] = ["ok", settle_memory()]
    """, tmp_path)
    assert out["settled"][1] is None


def test_memory_budget_default_variable_and_off(monkeypatch):
    monkeypatch.delenv(confine.MEMORY_VARIABLE, raising=False)
    assert confine.memory_budget() == confine.DEFAULT_MEMORY_MB
    monkeypatch.setenv(confine.MEMORY_VARIABLE, "300")
    assert confine.memory_budget() == 300
    assert confine.memory_budget(1024) == 1024
    assert confine.memory_budget("2048") == 2048
    for off in ("0", "off", " OFF ", 0):
        assert confine.memory_budget(off) is None
    for bad in ("lots", "12", -1, 10, True, 1.5):
        with pytest.raises(ValueError, match="memory"):
            confine.memory_budget(bad)  # type: ignore[arg-type]
    monkeypatch.setenv(confine.MEMORY_VARIABLE, "huge")
    with pytest.raises(ValueError, match=confine.MEMORY_VARIABLE):
        confine.memory_budget()


def test_bad_limits_are_refused_before_anything_is_applied():
    with pytest.raises(ValueError, match="memory_mb"):
        confine.lock(memory_mb=-1)
    with pytest.raises(ValueError, match="cpu_seconds"):
        confine.lock(cpu_seconds=1.5)  # type: ignore[arg-type]
    assert confine.locked() is None  # this (test) process was never locked


def test_unavailable_answers_none_here_and_the_error_is_an_env_error():
    assert confine.unavailable() is None
    assert issubclass(ConfinementUnavailable, EnvError)


def test_process_group_death_signal_and_memfd_denied(tmp_path):
    out = run_locked("""
        import ctypes, resource
        libc = ctypes.CDLL(None, use_errno=True)
        pgid_before = os.getpgid(0)
        applied = lock()
        attempt("setsid", os.setsid)
        attempt("setpgid", lambda: os.setpgid(0, 0))
        def pdeathsig(sig):
            rc = libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
            return rc if rc == 0 else -ctypes.get_errno()
        out["pdeathsig0"] = ["ok", pdeathsig(0)]
        out["pdeathsig9"] = ["ok", pdeathsig(9)]
        out["pdeathsig_get"] = ["ok", libc.prctl(2, ctypes.byref(ctypes.c_int()), 0, 0, 0)]
        attempt("memfd", lambda: os.memfd_create("x"))
        out["same_group"] = ["ok", os.getpgid(0) == pgid_before]
        out["fsize"] = ["ok", resource.getrlimit(resource.RLIMIT_FSIZE)]
        big = open(os.path.join(os.environ["TMP"], "big"), "wb", buffering=0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        attempt("past_fsize", lambda: big.write(b"x" * 8192) and big.write(b"x" * 8192))
        out["denied"] = ["ok", applied["denied"]]
    """, tmp_path)
    assert out["setsid"] == ["PermissionError", 1]
    assert out["setpgid"] == ["PermissionError", 1]
    assert out["pdeathsig0"][1] == -1  # -EPERM
    assert out["pdeathsig9"][1] == -1
    assert out["pdeathsig_get"][1] == 0  # PR_GET_PDEATHSIG still answers
    assert out["memfd"] == ["PermissionError", 1]
    assert out["same_group"][1] is True
    assert out["fsize"][1] == [confine.FILE_SIZE, confine.FILE_SIZE]
    assert out["past_fsize"] == ["OSError", 27]  # EFBIG, and the process lives (SIGXFSZ ignored)
    assert "memfd_create" in out["denied"][1]
    assert "setsid" in out["denied"][1]


def test_the_children_lock_keeps_fork_and_exec_and_passes_over_exec(tmp_path):
    out = run_locked("""
        applied = lock(children=True)
        attempt("run", lambda: subprocess.run(
            [sys.executable, "-c", "import os; os.setsid()"], capture_output=True).returncode)
        attempt("grandchild_seccomp", lambda: subprocess.run(
            ["grep", "^Seccomp:", "/proc/self/status"], capture_output=True, text=True).stdout)
        attempt("setsid", os.setsid)
        attempt("memfd", lambda: os.memfd_create("x") > 0)
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        out["unshare"] = ["ok", [libc.unshare(0x10000000), ctypes.get_errno()]]  # CLONE_NEWUSER
    """, tmp_path)
    assert out["run"] == ["ok", "1"]  # the child ran, and its setsid was refused
    assert "2" in out["grandchild_seccomp"][1]
    assert out["setsid"] == ["PermissionError", 1]
    assert out["memfd"] == ["ok", "True"]
    assert out["unshare"] == ["ok", [-1, 1]]  # EPERM
