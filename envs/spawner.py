"""The caller's end of the fork-server: the one way a locked process still starts children.

A process that will lock itself (``envs.confine``: no fork, no exec) first calls
``Spawner.start(table)``: a socketpair (``SOCK_SEQPACKET``) and the fork-server
(``envs.forkserver``, run by path with ``python -P``) started on its other end while
the caller is still single threaded and unlocked. The table (``Command``) is the
server's first message and cannot change afterwards; the server checks every request
against it (``check_argv``, also run here first to fail fast), starts the child in its
own session, signals only its own children, reaps them and reports their exits; its
docstring has the whole contract and the messages. The caller's own start does not
wait for the server's interpreter to boot: the first ``spawn`` does.

``Spawner.spawn(argv)`` answers a ``Process`` (``pid``, binary unbuffered
``stdin``/``stdout``/``stderr``, ``poll``, ``wait(timeout)``, ``returncode``,
``send_signal``/``terminate``/``kill``, which signal the child's process group through
the server), like ``subprocess.Popen``; ``envs.children.stop`` stops one as it stops a
``Popen``. One daemon reader thread per ``Spawner`` receives replies and exit reports;
``spawn`` may be called from any thread. When the server is gone every running
``Process`` is marked killed (its death signal took it) and ``spawn`` raises
``SpawnerUnavailable``. ``close`` closes the socket (the server then kills its
children and exits) and SIGKILLs a server that does not leave.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import ormsgpack

from envs.children import REAP_TIMEOUT
from envs.children import kill as kill_child
from envs.errors import SpawnerUnavailable, SpawnRefused
from envs.forkserver import MAX_MESSAGE, Command, check_argv

__all__ = ["Command", "Process", "Spawner", "check_argv"]

_SERVER = Path(__file__).resolve().with_name("forkserver.py")
_START_TIMEOUT = 30.0
_REPLY_TIMEOUT = 30.0


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
                [python, "-P", str(_SERVER), str(theirs.fileno()), str(os.getpid())],
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
            kill_child(server, "the fork-server", group=False, wait=REAP_TIMEOUT)
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
                data, fds, _flags, _addr = socket.recv_fds(self._sock, MAX_MESSAGE, 3)
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
        except subprocess.TimeoutExpired:  # it ignores SIGTERM: end of file was the ask
            kill_child(self._server, "the fork-server", group=False, wait=REAP_TIMEOUT)
        self._reader.join(timeout)

    def __enter__(self) -> Spawner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
