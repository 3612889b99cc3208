"""The OS sandbox for real: bubblewrap around a python, and around a supervisor's incarnation.

What this proves, with real bwrap and real processes (no Python-level guard involved: the
sandboxed code below is plain Python with every module):

* a sandboxed python cannot read a canary in $HOME or in a batos home (keys, the image's
  folder) beyond the one file granted, cannot write anywhere the host sees (not the
  grants, not the host's /tmp), has no network unless granted (a loopback listener the
  test starts is unreachable; granted, it is reached), and sees no variable of its
  parent's environment (a canary secret) but ``BATOS_SANDBOX=bwrap``;
* the supervisor's process control holds: a group SIGTERM stops the command gracefully
  (its handler runs), a command that ignores it is killed after the grace, a death by
  signal reads as that signal, and nothing is left behind;
* a real supervisor serves through a confined incarnation: ``status`` shows the
  confinement and the incarnation's pid, that process sees (``/proc/<pid>/root``) its
  sockets folder and the image but not the keys, and its environment lacks the
  supervisor's secret; ``--unconfined`` says so loudly; stopping leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from envs import sandbox
from supervisor import process
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    Supervisors,
    alive,
    supervisors_fixture,  # noqa: F401
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sandbox.available() is not None, reason=f"no bwrap: {sandbox.available()}"),
]

ROOT = Path(__file__).resolve().parents[2]
CANARY = "batos-sandbox-canary-" + uuid.uuid4().hex


def run_sandboxed(code: str, **options) -> dict:
    """Run ``code`` (which prints one JSON line) in the sandbox; its answer."""
    argv = sandbox.wrap([sys.executable, "-c", textwrap.dedent(code)], python=sys.executable,
                        **options)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


PROBE = """
import json, os, sys
def attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__
def read(path):
    return attempt(lambda: open(path, "rb").read())
def write(path):
    def go():
        with open(path, "w") as handle:
            handle.write("escaped")
    return attempt(go)
def listing(path):
    return attempt(lambda: os.listdir(path))
paths = json.loads(sys.argv[1])
print(json.dumps({
    "read": {p: read(p) for p in paths["read"]},
    "write": {p: write(p) for p in paths["write"]},
    "list": {p: listing(p) for p in paths["list"]},
}))
"""


@pytest.fixture
def home_canary() -> Iterator[Path]:
    """A secret file in the real $HOME (the sandbox must not show $HOME at all)."""
    path = Path.home() / f".{CANARY}"
    path.write_text("home secret")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@pytest.fixture
def batos_home(tmp_path: Path) -> Path:
    """A batos home's shape: keys, the image and its index, an env; canaries in the secrets."""
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "server.key_secret").write_text("key secret")
    (home / "live_image.fs").write_text("FS21 image")
    (home / "live_image.fs.index").write_text("index")
    (home / "config.toml").write_text("secret = 1")
    (home / "run" / "inc").mkdir(parents=True)
    return home


def probe(paths: dict[str, list[str]], **options) -> dict:
    argv = sandbox.wrap([sys.executable, "-c", PROBE, json.dumps(paths)],
                        python=sys.executable, **options)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_secrets_in_home_and_the_batos_home_stay_unseen(home_canary: Path, batos_home: Path) -> None:
    image = batos_home / "live_image.fs"
    got = probe({"read": [str(home_canary), str(batos_home / "keys" / "server.key_secret"),
                          str(batos_home / "config.toml"), str(image), "/etc/shadow",
                          "/etc/ssl/private", str(ROOT / "README.md")],
                 "write": [], "list": [str(Path.home()), str(batos_home), str(batos_home / "keys")]},
                read_only=[image, ROOT])
    assert got["read"] == {
        str(home_canary): "FileNotFoundError",
        str(batos_home / "keys" / "server.key_secret"): "FileNotFoundError",
        str(batos_home / "config.toml"): "FileNotFoundError",
        str(image): "ok",  # the one file granted
        "/etc/shadow": "FileNotFoundError",
        "/etc/ssl/private": "FileNotFoundError",
        str(ROOT / "README.md"): "ok",
    }
    # the home's folder exists only as the path to the granted file: nothing else in it
    assert got["list"][str(batos_home / "keys")] == "FileNotFoundError"
    if Path.home() not in (ROOT, *ROOT.parents) and not Path(sys.base_prefix).is_relative_to(Path.home()):
        assert got["list"][str(Path.home())] == "FileNotFoundError"


def test_nothing_the_host_sees_can_be_written(tmp_path: Path, batos_home: Path) -> None:
    image = batos_home / "live_image.fs"
    host_tmp = Path("/tmp") / f"{CANARY}.written"
    targets = [image, batos_home / "new-file", ROOT / f"{CANARY}.py",
               Path(sys.base_prefix) / f"{CANARY}.txt", Path("/usr") / CANARY, Path("/") / CANARY,
               Path.home() / CANARY, host_tmp, Path("/dev") / CANARY]
    try:
        got = probe({"read": [], "write": [str(t) for t in targets], "list": []},
                    read_only=[image, ROOT])["write"]
        for target in targets:
            if target.is_relative_to("/tmp"):
                # /tmp inside is a private tmpfs (the grants' parent folders are made on
                # it): a write may land there, never on the host
                assert target == image or not target.exists(), target
            else:
                assert got[str(target)] != "ok", target
                assert not target.exists(), target
        assert got[str(image)] == "OSError"  # the granted image is read-only
        assert got[str(host_tmp)] == "ok"
        assert image.read_text() == "FS21 image"
    finally:
        host_tmp.unlink(missing_ok=True)


def test_a_read_write_grant_is_the_only_writable_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    got = probe({"read": [], "write": [str(out / "x"), str(tmp_path / "y")], "list": []},
                read_write=[out])
    assert got["write"][str(out / "x")] == "ok"
    assert (out / "x").read_text() == "escaped"
    assert not (tmp_path / "y").exists()  # beside the grant: the private tmpfs at most


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


CONNECT = """
import json, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
    print(json.dumps({"connect": "ok"}))
except OSError as exc:
    print(json.dumps({"connect": type(exc).__name__}))
"""


def test_no_network_unless_granted(listener: int) -> None:
    def connect(network: bool) -> str:
        argv = sandbox.wrap([sys.executable, "-c", CONNECT, str(listener)], python=sys.executable,
                            network=network)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["connect"]

    assert connect(False) == "ConnectionRefusedError"  # its own empty loopback
    assert connect(True) == "ok"  # the same code reaches it when granted: the test can fail


def test_the_parent_environment_stays_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATOS_CANARY_SECRET", CANARY)
    got = run_sandboxed("""
        import json, os
        print(json.dumps(dict(os.environ)))
    """, env={"GIVEN": "yes"})
    assert CANARY not in json.dumps(got)
    assert got["GIVEN"] == "yes"
    assert got["BATOS_SANDBOX"] == "bwrap"
    assert set(got) <= {"GIVEN", "BATOS_SANDBOX", "PATH", "LANG", "HOME", "PWD"}


def test_no_capabilities_no_user_namespaces_and_own_pids() -> None:
    got = run_sandboxed("""
        import json, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        userns = "ok" if libc.unshare(0x10000000) == 0 else os.strerror(ctypes.get_errno())
        print(json.dumps({"cap": status["CapEff"].strip(), "pid": os.getpid(),
                          "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                          "userns": userns}))
    """)
    assert int(got["cap"], 16) == 0
    assert got["pid"] == 2
    assert got["pids"] == [1, 2]  # bwrap's init and itself: no host process is visible
    assert got["userns"] != "ok"


# --- process control (supervisor.process on a sandboxed child) -------------------------

GRACEFUL = """
import os, signal, sys, time
out = sys.argv[1]
def stop(*_):
    time.sleep(0.3)  # a graceful stop takes a moment; bwrap must not kill it meanwhile
    open(os.path.join(out, "graceful"), "w").write("bye")
    sys.exit(0)
if sys.argv[2] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, stop)
open(os.path.join(out, "started"), "w").write(str(os.getpid()))
while True:
    time.sleep(0.05)
"""


def start(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / f"out-{mode}"
    out.mkdir()
    argv = sandbox.wrap([sys.executable, "-c", GRACEFUL, str(out), mode], python=sys.executable,
                        read_write=[out])
    proc = process.spawn(argv, log_file=tmp_path / f"{mode}.log", sandboxed=True)
    wait_until(lambda: (out / "started").exists(), timeout=30)
    return proc, out


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def test_a_group_sigterm_stops_the_command_gracefully_and_leaves_nothing(tmp_path: Path) -> None:
    proc, out = start(tmp_path, "graceful")
    everything = tree(proc.pid)
    command = sandbox.command_pid(proc.pid)
    assert command is not None
    assert psutil.Process(command).cmdline()[:2] == [sys.executable, "-c"]
    assert len(everything) == 3  # bwrap, bwrap's pid 1, the command
    assert process.stop(proc, "sandboxed", grace=20) == 0
    assert (out / "graceful").read_text() == "bye"
    wait_until(lambda: not any(alive(p) for p in everything), timeout=10)


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    proc, _out = start(tmp_path, "ignore")
    everything = tree(proc.pid)
    assert process.stop(proc, "stubborn", grace=1) == -signal.SIGKILL
    wait_until(lambda: not any(alive(p) for p in everything), timeout=10)


def test_a_kill_of_the_command_reads_as_its_signal(tmp_path: Path) -> None:
    proc, _out = start(tmp_path, "graceful")
    everything = tree(proc.pid)
    command = sandbox.command_pid(proc.pid)
    assert command is not None
    os.kill(command, signal.SIGSEGV)
    assert proc.wait(timeout=10) == -signal.SIGSEGV
    wait_until(lambda: not any(alive(p) for p in everything), timeout=10)
    process.kill(proc, "done")


# --- a real supervisor ---------------------------------------------------------------

def test_a_supervisor_serves_through_a_confined_incarnation(supervisors: Supervisors) -> None:
    sup = supervisors.start(env={"BATOS_CANARY_SECRET": CANARY})
    assert sup.client.send("genesis", "printString")
    state = sup.status()
    assert state["confinement"]["mode"] == "required"
    assert state["confinement"]["sandbox"] == "bwrap"
    (inc,) = state["incarnations"]
    assert inc["confined"] is True
    assert inc["network"] is False
    pid, home = inc["pid"], Path(state["supervisor"]["home"])
    assert pid != inc["sandbox_pid"]
    assert "batos.root.incarnation" in psutil.Process(pid).cmdline()
    # what the incarnation's process sees, looked at from the host
    view = Path(f"/proc/{pid}/root")
    assert (view / str(home / "live_image.fs").lstrip("/")).exists()
    assert (view / str(home / "run" / "inc" / "be.sock").lstrip("/")).exists()
    for hidden in (home / "keys", home / "logs", home / "envs", home / "run" / "fe.sock",
                   home / "run" / "children.json", Path.home() / ".bash_history"):
        assert not (view / str(hidden).lstrip("/")).exists(), hidden
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"BATOS_SANDBOX=bwrap" in environ
    assert not any(CANARY.encode() in item for item in environ)
    everything = tree(inc["sandbox_pid"])
    assert sup.terminate() == 0
    wait_until(lambda: not any(alive(p) for p in everything), timeout=10)


def test_unconfined_is_loud(supervisors: Supervisors, home_canary: Path) -> None:
    sup = supervisors.start(args=("--unconfined",), env={"BATOS_UNSAFE_TEST_EXPOSE_OS": "1"})
    state = sup.status()
    assert state["confinement"]["mode"] == "off"
    assert "UNCONFINED" in state["confinement"]["warning"]
    (inc,) = state["incarnations"]
    assert inc["confined"] is False
    assert "sandbox_pid" not in inc
    assert "--unconfined" in psutil.Process(inc["pid"]).cmdline()
    assert "WARNING: incarnations run UNCONFINED" in sup.tail()
    assert any(r["level"] == "WARNING" and "UNCONFINED" in r["msg"] for r in sup.log_records())
    # what the sandbox stops (test_the_sandbox_holds_with_the_python_wall_bypassed) is
    # really within reach of the same method without it
    sup.client.send("genesis", "defineMethod:source:", "probeRead:", FILE_PROBES["probeRead:"])
    assert sup.client.send("genesis", "probeRead:", str(home_canary)) == "read"


def test_up_refuses_when_confinement_cannot_work(tmp_path: Path) -> None:
    from tests.integration.supervisor_fixtures import BATOS, free_port

    # no bwrap on this PATH: what a machine without bubblewrap looks like to `batos up`
    done = subprocess.run([BATOS, "up", "--home", str(tmp_path / "home"), "--endpoint",
                           f"tcp://127.0.0.1:{free_port()}", "--env-mode", "current"],
                          env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "cannot confine incarnations: bwrap not found" in line
    assert "apt-get install bubblewrap" in line
    assert "--unconfined" in line
    assert not (tmp_path / "home" / "live_image.fs").exists()  # nothing was started


def test_precompile_writes_the_bytecode_a_read_only_sandbox_cannot(tmp_path: Path) -> None:
    from envs import BuildWatch
    from supervisor.confinement import precompile

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("VALUE = 42\n")
    seen: list[int] = []
    precompile(sys.executable, [str(package), None],
               BuildWatch(started=seen.append, ended=seen.append))
    assert list((package / "__pycache__").glob("mod.*.pyc"))
    assert len(seen) == 2  # the compiler's pid, told when it started and ended
    # inside the sandbox the folder is read-only: the import uses that bytecode
    got = run_sandboxed(f"""
        import json, sys
        sys.path.insert(0, {str(package)!r})
        import mod
        print(json.dumps({{"cached": mod.__cached__, "value": mod.VALUE}}))
    """, read_only=[package])
    assert got["value"] == 42
    assert Path(got["cached"]).exists()


FILE_PROBES = {
    # selector -> source; each answers what happened (an errno number), never raises
    "probeRead:": "def probeRead(self, path):\n"
                  "    try:\n"
                  "        os.close(os.open(path, os.O_RDONLY))\n"
                  "        return 'read'\n"
                  "    except OSError as exc:\n"
                  "        return exc.errno\n",
    "probeWrite:": "def probeWrite(self, path):\n"
                   "    try:\n"
                   "        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 420))\n"
                   "        return 'written'\n"
                   "    except OSError as exc:\n"
                   "        return exc.errno\n",
    "probeConnect:": "def probeConnect(self, port):\n"
                     "    try:\n"
                     "        socket.create_connection(('127.0.0.1', port), timeout=5).close()\n"
                     "        return 'connected'\n"
                     "    except OSError as exc:\n"
                     "        return exc.errno\n",
}


def test_the_sandbox_holds_with_the_python_wall_bypassed(
        supervisors: Supervisors, home_canary: Path, listener: int) -> None:
    """Method code handed the real ``os`` and ``socket`` (the test-only switch) still
    cannot read a secret, write where the host sees it, or reach the network: the
    sandbox alone stops it (the process lock does not look at paths)."""
    sup = supervisors.start(env={"BATOS_UNSAFE_TEST_EXPOSE_OS": "1"})
    home = Path(sup.status()["supervisor"]["home"])
    (home / "keys" / "canary.key_secret").write_text("key secret")
    for selector, source in FILE_PROBES.items():
        sup.client.send("genesis", "defineMethod:source:", selector, source)

    def probe(selector: str, arg: object) -> str:
        answer = sup.client.send("genesis", selector, arg)
        return errno.errorcode.get(answer, answer) if isinstance(answer, int) else answer

    image = home / "live_image.fs"
    assert probe("probeRead:", str(image)) == "read"  # granted
    for secret in (home_canary, home / "keys" / "canary.key_secret", home / "config.toml",
                   home / "logs" / "supervisor.log", Path("/etc/shadow")):
        assert probe("probeRead:", str(secret)) == "ENOENT", secret
    assert probe("probeWrite:", str(image)) == "EROFS"
    host_tmp = Path("/tmp") / f"{CANARY}.method"
    try:
        for target in (home / "run" / "inc" / CANARY, ROOT / f"{CANARY}.py",
                       Path.home() / CANARY, Path("/usr") / CANARY):
            assert probe("probeWrite:", str(target)) in ("EROFS", "ENOENT")
            assert not target.exists(), target
        # /tmp inside is private: the write may land there, never on the host
        probe("probeWrite:", str(host_tmp))
        assert not host_tmp.exists()
    finally:
        host_tmp.unlink(missing_ok=True)
    assert probe("probeConnect:", listener) in ("ECONNREFUSED", "EPERM")
