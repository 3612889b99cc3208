"""The fork-server process and its table: what it runs, checked, and the loop that runs it.

``envs.spawner.Spawner.start`` runs this file by path, ``python -P <this file> FD
PARENT``, with one end of a ``SOCK_SEQPACKET`` socketpair as FD: a fresh interpreter
that imports only the standard library and ormsgpack (nothing of ``envs``, ``uvm``,
``ZODB`` or the caller), so it boots in a fraction of the time ``envs`` would take and
holds nothing of the caller's memory. Its first message is the table (``Command``: an
interpreter, the modules it may run with ``-m``, the child's whole environment and
working directory), which cannot change afterwards. Then, on request, it:

* checks the argv against the table (``check_argv``): ``[python, "-m", module, *args]``
  with ``python`` and ``module`` exactly as listed, string arguments, at most
  ``max_args``; anything else is refused (``SpawnRefused``, naming what was wrong);
  requests never choose the environment, the working directory or the interpreter;
* starts the child in its own session with ``PR_SET_PDEATHSIG`` (SIGKILL), stdin,
  stdout and stderr on fresh pipes, every other descriptor closed, and sends the pid
  and the caller's ends of the pipes back with ``SCM_RIGHTS``;
* signals a child's process group on request (only its own, not yet reaped children:
  a locked caller may signal nothing but itself, and pids are never reused under us);
* reaps children and reports each exit code (``Popen.returncode`` style);
* runs at most ``max_children`` at once (a caller gone hostile cannot flood the host).

It dies with its parent (``PR_SET_PDEATHSIG`` SIGKILL, and end of file on the socket,
after which it kills its children's process groups); its children die with it (their
own death signal). It ignores SIGINT/SIGTERM sent to the caller's process group: the
caller drains first and then closes the socket. It never runs image code. Imported as
``envs.forkserver`` (by the caller's end, ``envs.spawner``), it gives ``Command`` and
``check_argv``, so a request is checked on both sides of the socket.

Messages (msgpack, one per datagram): ``{"op": "table", "table", "max_children"}``
first; then ``{"op": "spawn", "id", "argv"}`` and ``{"op": "signal", "id", "pid",
"sig"}``, answered ``{"id", "ok": true[, "pid"]}`` (the pipes as ancillary data) or
``{"id", "ok": false, "error": "refused"|"failed", "message"}``; unasked
``{"op": "ready", "pid"}`` once and ``{"op": "exit", "pid", "code"}`` per child.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ormsgpack

if __name__ == "__main__":
    # the fork-server itself, run by path: nothing of batos is imported (module docstring);
    # it needs only the exception its refusals are
    class SpawnRefused(Exception):  # noqa: N818 - the same name as envs.errors'
        pass
else:
    from envs.errors import SpawnRefused

__all__ = ["MAX_MESSAGE", "Command", "check_argv", "main"]

#: the largest message either side sends or takes
MAX_MESSAGE = 1 << 20
_PR_SET_PDEATHSIG = 1


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
# the server: runs only as ``python -P <this file> FD PARENT``


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
        first = self.sock.recv(MAX_MESSAGE)
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
                data = self.sock.recv(MAX_MESSAGE)
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
