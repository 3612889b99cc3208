"""The fork-server: the one way a locked process still starts children, from a fixed table.

A process that will lock itself (``envs.confine``: no fork, no exec) first calls
``Spawner.start(table)``: a socketpair (``SOCK_SEQPACKET``) and ``python -P
<this file> FD PARENT`` started on its other end while the caller is still single
threaded and unlocked (fork + exec of a fresh interpreter: the server holds nothing of
the caller's memory, image machinery included; run by path, it imports only the
standard library and ormsgpack, so it boots in a fraction of the time ``envs`` would
take, beside the caller's own start, which does not wait for it). The
table (``Command``: an interpreter, the modules it may run with ``-m``, the child's
whole environment and working directory) is the server's first message and cannot
change afterwards. Then, on request, the server:

* checks the argv against the table: ``[python, "-m", module, *args]`` with ``python``
  and ``module`` exactly as listed, string arguments, at most ``max_args``; anything
  else is refused (``SpawnRefused``, naming what was wrong); requests never choose the
  environment, the working directory or the interpreter;
* starts the child in its own session with ``PR_SET_PDEATHSIG`` (SIGKILL), stdin,
  stdout and stderr on fresh pipes, every other descriptor closed, and sends the pid
  and the caller's ends of the pipes back with ``SCM_RIGHTS``;
* signals a child's process group on request (only its own, not yet reaped children:
  a locked caller may signal nothing but itself, and pids are never reused under us);
* reaps children and reports each exit code (``Popen.returncode`` style);
* runs at most ``max_children`` at once (a caller gone hostile cannot flood the host).

The server dies with its parent (``PR_SET_PDEATHSIG`` SIGKILL, and end of file on the
socket, after which it kills its children's process groups); its children die with it
(their own death signal). It ignores SIGINT/SIGTERM sent to the caller's process group:
the caller drains first and then closes the socket. It never runs image code and
imports nothing of ``uvm``, ``ZODB`` or the caller.

Caller side: ``Spawner.spawn(argv)`` answers a ``Process`` (``pid``, binary unbuffered
``stdin``/``stdout``/``stderr``, ``poll``, ``wait(timeout)``, ``returncode``,
``send_signal``/``terminate``/``kill``, which signal the child's process group), like
``subprocess.Popen``. One daemon reader thread per ``Spawner`` receives replies and
exit reports; ``spawn`` may be called from any thread. When the server is gone every
running ``Process`` is marked killed (its death signal took it) and ``spawn`` raises
``SpawnerUnavailable``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ormsgpack

if __name__ == "__main__":
    # the fork-server itself, run by path: nothing of batos is imported (module docstring);
    # it needs only exceptions to turn into its error replies
    class SpawnRefused(Exception):  # noqa: N818 - the same name as envs.errors'
        pass

    class SpawnerUnavailable(Exception):  # noqa: N818
        pass
else:
    from envs.errors import SpawnerUnavailable, SpawnRefused

__all__ = ["Command", "Process", "Spawner", "check_argv"]

_ROOT = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1
_MAX_MESSAGE = 1 << 20
_START_TIMEOUT = 30.0
_REPLY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Command:
    """One shape the server runs: ``[python, "-m", <one of modules>, *args]``.

    ``env`` is the child's whole environment (None: the server's own, which is the
    caller's at start); ``cwd`` its working directory (None: the server's).
    """

    name: str
    python: str
    modules: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    max_args: int = 16
    max_arg_bytes: int = 1 << 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", tuple(self.modules))
        if not self.modules:
            raise ValueError(f"command {self.name!r} lists no module")
        if self.env is not None:
            object.__setattr__(self, "env", dict(self.env))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "python": self.python, "modules": list(self.modules),
                "env": self.env, "cwd": self.cwd, "max_args": self.max_args,
                "max_arg_bytes": self.max_arg_bytes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Command:
        return cls(name=data["name"], python=data["python"], modules=tuple(data["modules"]),
                   env=data.get("env"), cwd=data.get("cwd"), max_args=int(data["max_args"]),
                   max_arg_bytes=int(data["max_arg_bytes"]))


def check_argv(table: Sequence[Command], argv: Any) -> Command:
    """The table entry ``argv`` matches; ``SpawnRefused`` naming what did not match."""
    if not isinstance(argv, (list, tuple)) or not all(isinstance(a, str) for a in argv):
        raise SpawnRefused("a command is a list of strings")
    if len(argv) < 3:
        raise SpawnRefused(f"refused {list(argv)!r}: the fork-server runs only "
                           "[python, '-m', module, *args]")
    python, flag, module, *args = argv
    shapes = [c for c in table if c.python == python]
    if not shapes or flag != "-m":
        allowed = sorted({f"{c.python} -m {m}" for c in table for m in c.modules})
        raise SpawnRefused(f"refused {list(argv[:3])!r}: not in the fork-server's table "
                           f"(it runs only: {', '.join(allowed)})")
    command = next((c for c in shapes if module in c.modules), None)
    if command is None:
        allowed = sorted({m for c in shapes for m in c.modules})
        raise SpawnRefused(f"refused module {module!r}: the fork-server runs only "
                           f"{', '.join(allowed)} with {python}")
    if len(args) > command.max_args:
        raise SpawnRefused(f"refused {module}: {len(args)} arguments, at most {command.max_args}")
    for arg in args:
        if "\0" in arg or len(arg.encode()) > command.max_arg_bytes:
            raise SpawnRefused(f"refused {module}: an argument has a NUL byte or is over "
                               f"{command.max_arg_bytes} bytes")
    return command


# ---------------------------------------------------------------------------------------
# caller side


class Process:
    """A child the fork-server started (``subprocess.Popen``-like; see the module docstring)."""

    def __init__(self, spawner: Spawner, pid: int, fds: Sequence[int]) -> None:
        self._spawner = spawner
        self.pid = pid
        self.args: list[str] = []
        self.stdin = open(fds[0], "wb", buffering=0)  # noqa: SIM115 - owned by the handle
        self.stdout = open(fds[1], "rb", buffering=0)  # noqa: SIM115
        self.stderr = open(fds[2], "rb", buffering=0)  # noqa: SIM115
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the child's process group (through the server); nothing once it exited."""
        if self.returncode is None:
            try:
                self._spawner._signal(self.pid, int(sig))
            except SpawnRefused:  # it exited meanwhile (reaped, its report on the way)
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                stream.close()

    def __repr__(self) -> str:
        return f"<envs.spawner.Process pid={self.pid} returncode={self.returncode}>"


class Spawner:
    """The caller's end of a fork-server (module docstring). Thread-safe."""

    def __init__(self, sock: socket.socket, server: subprocess.Popen[bytes],
                 table: Sequence[Command]) -> None:
        self._sock = sock
        self._server = server
        self.table = tuple(table)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._children: dict[int, Process] = {}
        self._gone: str | None = None
        self._ready = threading.Event()
        self._ready_ok = False
        self._reader = threading.Thread(target=self._read, name="envs-spawner-reader", daemon=True)

    @property
    def server_pid(self) -> int:
        return self._server.pid

    @classmethod
    def start(cls, table: Sequence[Command], *, python: str = sys.executable,
              max_children: int = 32) -> Spawner:
        """Start a fork-server for ``table``; call it before the process has threads."""
        table = list(table)
        if not table:
            raise ValueError("a fork-server needs at least one command in its table")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            server = subprocess.Popen(
                [python, "-P", str(Path(__file__).resolve()), str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=(theirs.fileno(),), cwd="/", stdin=subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise SpawnerUnavailable(f"cannot start the fork-server: {exc}") from exc
        finally:
            theirs.close()
        try:
            ours.send(ormsgpack.packb({"op": "table", "table": [c.to_dict() for c in table],
                                       "max_children": int(max_children)}))
        except OSError as exc:
            ours.close()
            with contextlib.suppress(OSError):
                server.kill()
            server.wait()
            raise SpawnerUnavailable(f"the fork-server did not start: {exc}") from exc
        # the server's interpreter boots while the caller goes on; the first spawn waits
        spawner = cls(ours, server, table)
        spawner._reader.start()
        return spawner

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> int:
        """Wait until the server has its table; its pid. ``SpawnerUnavailable`` if it died."""
        if not self._ready.wait(timeout):
            raise SpawnerUnavailable(f"the fork-server did not start within {timeout:g}s")
        if self._gone is not None and not self._ready_ok:
            raise SpawnerUnavailable(self._gone)
        return self.server_pid

    def spawn(self, argv: Sequence[str], *, timeout: float = _REPLY_TIMEOUT) -> Process:
        """Start ``argv`` (a shape of the table) through the server; ``SpawnRefused`` if not."""
        argv = list(argv)
        check_argv(self.table, argv)  # fail fast here; the server checks again
        self.wait_ready()
        reply = self._call({"op": "spawn", "argv": argv}, timeout)
        process: Process = reply
        process.args = argv
        return process

    def _signal(self, pid: int, sig: int) -> None:
        self._call({"op": "signal", "pid": pid, "sig": sig}, _REPLY_TIMEOUT)

    def _call(self, message: dict[str, Any], timeout: float) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            if self._gone is not None:
                raise SpawnerUnavailable(self._gone)
            ident = next(self._ids)
            self._pending[ident] = future
            try:
                self._sock.sendall(ormsgpack.packb({**message, "id": ident}))
            except OSError as exc:
                self._pending.pop(ident, None)
                raise SpawnerUnavailable(f"the fork-server is gone: {exc}") from exc
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            with self._lock:
                self._pending.pop(ident, None)
            raise SpawnerUnavailable(f"the fork-server did not answer within {timeout:g}s") from exc

    def _read(self) -> None:
        reason = "the fork-server is gone"
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._sock, _MAX_MESSAGE, 3)
            except OSError as exc:
                reason = f"the fork-server is gone: {exc}"
                break
            if not data:
                break
            try:
                message = ormsgpack.unpackb(data)
            except ormsgpack.MsgpackDecodeError:
                for fd in fds:
                    os.close(fd)
                continue
            self._dispatch(message, fds)
        self._lost(reason)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        if message.get("op") == "ready":
            self._ready_ok = True
            self._ready.set()
            return
        if message.get("op") == "exit":
            with self._lock:
                process = self._children.pop(message.get("pid"), None)
            if process is not None:
                process._exit(int(message["code"]))
            return
        with self._lock:
            future = self._pending.pop(message.get("id"), None)
        if future is None:  # its caller gave up waiting: nothing will own these
            for fd in fds:
                os.close(fd)
            return
        if not message.get("ok"):
            error = SpawnRefused if message.get("error") == "refused" else SpawnerUnavailable
            for fd in fds:
                os.close(fd)
            future.set_exception(error(str(message.get("message"))))
        elif "pid" in message:
            process = Process(self, int(message["pid"]), fds)
            with self._lock:
                self._children[process.pid] = process
            future.set_result(process)
        else:
            future.set_result(None)

    def _lost(self, reason: str) -> None:
        if not self._ready_ok:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(1.0)
            reason = (f"the fork-server exited before it was ready "
                      f"(exit status {self._server.poll()}); its stderr is the process's")
        with self._lock:
            self._gone = reason
            pending, self._pending = list(self._pending.values()), {}
            children, self._children = list(self._children.values()), {}
        for future in pending:
            future.set_exception(SpawnerUnavailable(reason))
        for process in children:  # their death signal took them with the server
            process._exit(-signal.SIGKILL)
        self._ready.set()

    def close(self, timeout: float = 10.0) -> None:
        """Close the socket: the server kills its children and exits; idempotent."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        try:
            self._server.wait(timeout)
        except subprocess.TimeoutExpired:
            self._server.kill()
            self._server.wait()
        self._reader.join(timeout)

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------
# server side: runs only in ``python -m envs.spawner FD PARENT``


class _Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.table: list[Command] = []
        self.children: set[int] = set()
        self.max_children = 32

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        socket.send_fds(self.sock, [ormsgpack.packb(message)], list(fds))

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        first = self.sock.recv(_MAX_MESSAGE)
        if not first:
            return
        hello = ormsgpack.unpackb(first)
        self.table = [Command.from_dict(c) for c in hello["table"]]
        self.max_children = int(hello.get("max_children", self.max_children))
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.sock, wake_r], [], [])
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
                self.reap()
            if self.sock in readable:
                data = self.sock.recv(_MAX_MESSAGE)
                if not data:
                    return
                self.handle(data)

    def handle(self, data: bytes) -> None:
        try:
            message = ormsgpack.unpackb(data)
            ident = message["id"]
        except (ormsgpack.MsgpackDecodeError, KeyError, TypeError):
            return
        try:
            if message.get("op") == "spawn":
                self.spawn(ident, message.get("argv"))
            elif message.get("op") == "signal":
                pid, sig = message.get("pid"), message.get("sig")
                if pid not in self.children or not isinstance(sig, int):
                    raise SpawnRefused(f"pid {pid!r} is not a running child of this fork-server")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                self.send({"id": ident, "ok": True})
            else:
                raise SpawnRefused(f"unknown request {message.get('op')!r}")
        except SpawnRefused as exc:
            self.send({"id": ident, "ok": False, "error": "refused", "message": str(exc)})
        except OSError as exc:
            self.send({"id": ident, "ok": False, "error": "failed",
                       "message": f"cannot start {message.get('argv')!r}: {exc}"})

    def spawn(self, ident: int, argv: Any) -> None:
        command = check_argv(self.table, argv)
        if len(self.children) >= self.max_children:
            raise SpawnRefused(f"refused: {len(self.children)} children are running, the "
                               f"fork-server's limit is {self.max_children}")
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        err_r, err_w = os.pipe()  # close-on-exec: EOF means the exec succeeded
        env = dict(command.env) if command.env is not None else dict(os.environ)
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: single-threaded copy of this small server
            try:
                os.setsid()
                _die_with_parent(signal.SIGKILL, me)
                os.dup2(stdin_r, 0)
                os.dup2(stdout_w, 1)
                os.dup2(stderr_w, 2)
                os.closerange(3, err_w)
                os.closerange(err_w + 1, 1 << 20)
                if command.cwd:
                    os.chdir(command.cwd)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                os.execve(argv[0], argv, env)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.write(err_w, f"{exc.strerror or exc}".encode()[:400])
            finally:
                os._exit(127)
        for fd in (stdin_r, stdout_w, stderr_w, err_w):
            os.close(fd)
        with os.fdopen(err_r, "rb") as err:
            failure = err.read()
        if failure:
            os.waitpid(pid, 0)
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)
            raise OSError(failure.decode(errors="replace"))
        self.children.add(pid)
        try:
            self.send({"id": ident, "ok": True, "pid": pid}, [stdin_w, stdout_r, stderr_r])
        finally:
            for fd in (stdin_w, stdout_r, stderr_r):
                os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                with contextlib.suppress(OSError):
                    self.send({"op": "exit", "pid": pid,
                               "code": os.waitstatus_to_exitcode(status)})

    def kill_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()


def _die_with_parent(sig: int, parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: end of file on the socket still ends us
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def main(argv: list[str]) -> int:
    fd, parent = int(argv[0]), int(argv[1])
    _die_with_parent(signal.SIGKILL, parent)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # a signal to the caller's process group is the caller's to act on: it drains,
        # then closes the socket, and that ends us
        signal.signal(sig, signal.SIG_IGN)
    server = _Server(socket.socket(fileno=fd))
    try:
        server.serve()
    finally:
        server.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
