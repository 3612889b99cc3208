"""Helpers for the supervisor's integration tests: a real ``batos up`` and its clients.

``Supervisor`` runs ``batos up`` in its own session (output to a file in the test's
folder) and waits on conditions (``ping`` answers, state ``serving``), never on
sleeps. Teardown sends SIGTERM, then kills the group and every descendant it saw
(ZEO and incarnations have sessions of their own, so a group kill would miss them).
A clean shutdown is a feature under test: teardown fails when the supervisor did not
exit 0 after SIGTERM or left a process behind (unless ``expect_clean`` is False).

Use the ``supervisors`` fixture by importing it into a test module:
``from tests.integration.supervisor_fixtures import supervisors_fixture  # noqa: F401``.
``EventStream`` subscribes to the event PUB socket and returns once the handshake is
done, so a test can trigger events right after. Not a conftest: this module is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bridge import Client, RemoteError, Timeout
from bridge.codec import unpack
from supervisor.config import Home
from tests.conftest import wait_until

_LOCAL_BATOS = Path(sys.executable).with_name("batos")
BATOS = str(_LOCAL_BATOS) if _LOCAL_BATOS.exists() else shutil.which("batos") or "batos"
START_TIMEOUT = 60.0
STOP_GRACE = 30.0
_CHILD_ENV_DROP = ("BATOS_ENDPOINT", "BATOS_HOME", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# Methods the tests send; RestrictedPython forbids ``self.n += 1``.
RECORDER_METHODS = {
    "bump": "def bump(self):\n    self.n = self.n + 1\n    return self.n\n",
    "record:": "def record(self, i):\n    self.seen.append(i)\n    self.n = self.n + 1\n"
               "    return self.n\n",
    "spin:": "def spin(self, k):\n    t = 0\n    for i in range(k):\n        t = t + i\n    return t\n",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """Top-level keys, then one ``[table]`` per dict value (``env``). JSON scalars and
    arrays of them are valid TOML values."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for table, items in values.items():
        if isinstance(items, dict):
            lines += ["", f"[{table}]", *(f"{k} = {json.dumps(v)}" for k, v in items.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_recorders(client: Client, names: list[str]) -> None:
    """Objects ``names`` with ``n = 0``, ``seen = []`` and the ``RECORDER_METHODS``, one message."""
    acts: list[dict[str, Any]] = []
    for index, name in enumerate(names):
        label = f"r{index}"
        acts.append({"action": "CLONE_PROTOTYPE", "target": "genesis", "label": label,
                     "name": name, "slots": {"n": 0, "seen": []}})
        acts += [{"action": "DEFINE_METHOD", "target": f"@{label}", "selector": selector,
                  "source": source} for selector, source in RECORDER_METHODS.items()]
    client.send("genesis", "applyActs:", acts, timeout=30)


def spin_count(client: Client, target: str, seconds: float) -> int:
    """How many ``spin:`` iterations take about ``seconds`` on this machine (measured)."""
    count = 100_000
    while True:
        started = time.monotonic()
        client.send(target, "spin:", count, timeout=60)
        took = time.monotonic() - started
        if took > 0.05:
            return max(1, int(count * seconds / took))
        count *= 4


def send_until_ok(client: Client, *args: Any, request_id: str, deadline: float,
                  retry_on: tuple[str, ...] = ("Unavailable",),
                  stop: threading.Event | None = None) -> Any:
    """Resend the same id on Timeout (or a ``retry_on`` error) until a reply; fail after
    ``deadline`` or once ``stop`` is set (a failing test stops its writers)."""
    while True:
        try:
            return client.send(*args, request_id=request_id)
        except Timeout:
            pass
        except RemoteError as exc:
            if exc.type not in retry_on:
                raise
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            raise AssertionError(f"no reply to {request_id} {args} before the deadline")


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie is gone for every purpose but its pid)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Supervisor:
    """One ``batos up`` child; ``start`` it, talk to it, ``close`` it (teardown does)."""

    def __init__(self, root: Path, *, config: dict[str, Any] | None = None,
                 env_mode: str | None = "current", env: dict[str, str] | None = None,
                 home: Path | None = None, args: tuple[str, ...] = ()) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.home = home or root / "home"
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.config_path = write_config(root / "config.toml", config) if config else None
        self.env_mode = env_mode
        self.extra_env = env or {}
        self.args = tuple(args)  # more `batos up` options (e.g. --unconfined)
        self.output = root / "batos-up.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.expect_clean = True
        self.exit_code: int | None = None
        self._seen: dict[int, psutil.Process] = {}
        self._client: Client | None = None
        self._terminated = False

    def start(self, *, serving: bool = True, timeout: float = START_TIMEOUT) -> Supervisor:
        argv = [BATOS, "up", "--home", str(self.home), "--endpoint", self.endpoint]
        if self.config_path:
            argv += ["--config", str(self.config_path)]
        if self.env_mode:
            argv += ["--env-mode", self.env_mode]
        argv += self.args
        env = {k: v for k, v in os.environ.items() if k not in _CHILD_ENV_DROP}
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**env, **self.extra_env})
        self._seen[self.proc.pid] = psutil.Process(self.proc.pid)
        self.wait_state("serving" if serving else None, timeout)
        return self

    def wait_state(self, state: str | None, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Wait until ``ping`` answers (and the state is ``state``); fail early if it died."""
        last: list[Any] = [None]

        def answered() -> dict[str, Any] | None:
            self.check_running()
            try:
                last[0] = pong = self.client.ping(timeout=1)
            except Timeout:
                return None
            return pong if state is None or pong["state"] == state else None
        try:
            return wait_until(answered, timeout, interval=0.05)
        except AssertionError:
            raise AssertionError(f"batos up not {state or 'answering'} within {timeout}s "
                                 f"(last ping: {last[0]}):\n{self.tail()}") from None

    def check_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"batos up exited with {self.proc.returncode}:\n{self.tail()}")

    def sigterm(self) -> None:
        """SIGTERM to the supervisor, once (what systemd sends to the main process)."""
        assert self.proc is not None
        self.track()
        if not self._terminated and self.proc.poll() is None:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def terminate(self, timeout: float = STOP_GRACE) -> int:
        """``sigterm`` and wait: the exit code."""
        assert self.proc is not None
        self.sigterm()
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"batos up ignored SIGTERM for {timeout}s:\n{self.tail()}") from None
        return self.exit_code

    def close(self) -> list[str]:
        """Teardown, whatever happened: SIGTERM, grace, SIGKILL the group and every
        descendant seen; answers the problems (unclean exit, survivors) for the fixture."""
        problems: list[str] = []
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.track()
            if self.proc.poll() is None:
                with contextlib.suppress(AssertionError):
                    self.terminate()
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
                problems.append(f"batos up did not exit within {STOP_GRACE}s of SIGTERM")
            self.exit_code = self.proc.returncode
            leftovers = self.survivors()
            for proc in self._seen.values():
                with contextlib.suppress(psutil.Error):
                    if alive(proc):
                        proc.resume()
                        proc.kill()
            if self.expect_clean and self.exit_code != 0:
                problems.append(f"batos up exited with {self.exit_code} after SIGTERM")
            if self.expect_clean and leftovers:
                problems.append(f"processes left behind: {leftovers}")
        if self._client is not None:
            self._client.close()
            self._client = None
        home = Home.at(self.home)
        if not home.run.is_relative_to(home.root):
            shutil.rmtree(home.run, ignore_errors=True)  # the short socket folder in /tmp
        return [f"{p}\n{self.tail()}" for p in problems]

    def track(self) -> None:
        """Remember every descendant now alive, to kill it on teardown if it outlives us."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    self._seen.setdefault(child.pid, child)

    def survivors(self) -> list[str]:
        return [f"pid {proc.pid}" for proc in self._seen.values() if alive(proc)]

    @property
    def client(self) -> Client:
        """A client for the test's own thread (``Client`` is not thread-safe)."""
        if self._client is None:
            self._client = Client(self.endpoint, timeout=5, retries=0)
        return self._client

    def new_client(self, timeout: float = 5, retries: int = 0) -> Client:
        return Client(self.endpoint, timeout=timeout, retries=retries)

    def status(self) -> dict[str, Any]:
        result = self.client.status()
        self.track()
        return result

    def active_pid(self, timeout: float = START_TIMEOUT, *, not_pid: int | None = None) -> int:
        """The pid of the serving incarnation (other than ``not_pid``), once there is one."""
        def serving() -> int | None:
            self.check_running()
            try:
                state = self.status()
            except Timeout:
                return None
            for inc in state["incarnations"]:
                if (state["state"] == "serving" and inc["id"] == state["active"]
                        and inc["state"] == "ready" and inc["pid"] != not_pid):
                    return inc["pid"]
            return None
        return wait_until(serving, timeout, interval=0.05)

    def send_in_thread(self, results: dict[str, Any], rid: str, *args: Any,
                       timeout: float = 30) -> threading.Thread:
        """Send from a thread with its own client; ``results[rid]`` gets ``("ok", result)``,
        ``(error type, message)`` or ``("Timeout", None)``."""
        def run() -> None:
            with self.new_client(timeout=timeout) as client:
                try:
                    results[rid] = ("ok", client.send(*args, request_id=rid))
                except RemoteError as exc:
                    results[rid] = (exc.type, exc.message)
                except Timeout:
                    results[rid] = ("Timeout", None)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def log_records(self) -> list[dict[str, Any]]:
        path = self.home / "logs" / "supervisor.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"


class Supervisors:
    """Starts ``Supervisor``s under one folder; ``close_all`` tears every one down."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Supervisor] = []

    def start(self, name: str = "sup", *, serving: bool = True, timeout: float = START_TIMEOUT,
              **options: Any) -> Supervisor:
        sup = Supervisor(self.root / name, **options)
        self.started.append(sup)
        return sup.start(serving=serving, timeout=timeout)

    def close_all(self) -> None:
        problems = [p for sup in reversed(self.started) for p in sup.close()]
        if problems:
            pytest.fail("unclean supervisor teardown:\n" + "\n\n".join(problems), pytrace=False)


@pytest.fixture(name="supervisors")
def supervisors_fixture(tmp_path: Path) -> Iterator[Supervisors]:
    factory = Supervisors(tmp_path)
    try:
        yield factory
    finally:
        factory.close_all()


class EventStream:
    """A SUB socket on the supervisor's event PUB, connected (handshake done) on return."""

    def __init__(self, address: str, topic: bytes = b"", timeout: float = 10.0) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.seen: list[dict[str, Any]] = []
        monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.sock.connect(address)
        connected = monitor.poll(int(timeout * 1000))
        if connected:
            recv_monitor_message(monitor)
        self.sock.disable_monitor()
        monitor.close(linger=0)
        if not connected:
            self.close()
            raise AssertionError(f"no handshake with the event stream {address} in {timeout}s")

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event (``unpack``-ed) that satisfies ``predicate``; every receive has a deadline."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            _topic, payload = self.sock.recv_multipart()
            event = unpack(payload)
            self.seen.append(event)
            if predicate(event):
                return event
        kinds = [e["kind"] for e in self.seen]
        raise AssertionError(f"no matching event within {timeout}s; seen: {kinds}")

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
