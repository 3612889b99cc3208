"""``batos up`` as an operator and systemd meet it: real processes, sockets and signals.

What this proves, each against a real supervisor with its ZEO server and incarnation:

* on a fresh home it serves: ``batos send``/``status --json``/``ping`` from other
  processes work, and the home holds the image and JSON-lines logs;
* the real uv env mode builds an env (shared by the session) whose incarnation reports
  its env id and packages (ZODB among them);
* a request id runs once: resent, sent twice at once, or resent from the CLI, one effect
  and the same reply;
* SIGTERM drains: requests in flight are answered, ZEO and the incarnation are stopped,
  the exit code is 0, the event stream says ``supervisor.stopping``; a request that
  arrives while it drains is answered (served or ``Unavailable``), never left to hang;
* sd_notify: ``READY=1`` with ``STATUS=``, ``WATCHDOG=1`` while serving, ``STOPPING=1``
  on SIGTERM, all from the supervisor's pid; children do not inherit the variables;
* the event stream reports ``incarnation.exited`` and ``incarnation.ready`` when an
  incarnation is killed and replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from bridge import new_request_id
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    BATOS,
    EventStream,
    Supervisor,
    Supervisors,
    alive,
    make_recorders,
    spin_count,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

UV_TIMEOUT = 300.0


def batos(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATOS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="session")
def uv_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One envs folder and uv cache for the session: the first build downloads, later ones reuse."""
    root = tmp_path_factory.mktemp("uv-envs")
    return {"envs_dir": str(root / "envs"), "uv_cache": str(root / "uv-cache")}


def test_up_on_a_fresh_home_serves_the_cli(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    sent = batos("send", "--endpoint", sup.endpoint, "genesis", "printString")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout).startswith("<genesis")

    status = batos("status", "--endpoint", sup.endpoint, "--json")
    assert status.returncode == 0, status.stderr
    reply = json.loads(status.stdout)
    assert reply["ok"] is True
    assert reply["result"]["state"] == "serving"
    assert reply["result"]["incarnations"][0]["env_id"] == "current"

    pong = batos("ping", "--endpoint", sup.endpoint, "--json")
    assert pong.returncode == 0, pong.stderr
    assert json.loads(pong.stdout)["result"]["pong"] is True

    assert (sup.home / "live_image.fs").is_file()
    records = sup.log_records()  # every line parses as JSON
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert any(r["msg"] == "incarnation ready" for r in records)


def test_uv_env_mode_builds_an_env_with_zodb(supervisors: Supervisors,
                                             uv_dirs: dict[str, str]) -> None:
    sup = supervisors.start(env_mode="uv", timeout=UV_TIMEOUT,
                            config={**uv_dirs, "start_timeout": UV_TIMEOUT})
    inc = sup.status()["incarnations"][0]
    assert inc["env_id"] != "current"
    assert "zodb" in inc["packages"]
    assert "zeo" in inc["packages"]
    assert sup.client.send("genesis", "printString").startswith("<genesis")
    assert any(Path(uv_dirs["envs_dir"]).iterdir())


def test_a_request_id_runs_exactly_once(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    client = sup.client
    make_recorders(client, ["counter"])
    rid = new_request_id()
    first = client.send("counter", "bump", request_id=rid)
    assert client.send("counter", "bump", request_id=rid) == first == 1

    cli = batos("send", "--endpoint", sup.endpoint, "--id", rid, "counter", "bump")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == first
    assert client.send("counter", "n") == 1

    # the same new id from two clients at once: joined or replayed, one effect
    twin = new_request_id()
    replies: list[Any] = []

    def send_twin() -> None:
        with sup.new_client(timeout=10) as other:
            replies.append(other.send("counter", "bump", request_id=twin))

    threads = [threading.Thread(target=send_twin) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert replies == [2, 2]
    assert client.send("counter", "n") == 2
    assert client.send("counter", "bump") == 3  # a new id is a new effect


def _events_address(sup: Supervisor) -> str:
    return sup.status()["supervisor"]["events"]


def test_sigterm_drains_in_flight_requests_and_exits_clean(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    make_recorders(sup.client, ["worker"])
    count = spin_count(sup.client, "worker", 0.4)
    status = sup.status()
    children = [status["zeo"]["pid"], status["incarnations"][0]["pid"]]
    results: dict[str, Any] = {}
    with EventStream(_events_address(sup), b"supervisor") as events:
        threads = [sup.send_in_thread(results, f"drain-{i}", "worker", "spin:", count)
                   for i in range(4)]
        wait_until(lambda: sup.status()["routing"]["inflight"] == 4, timeout=10)
        assert sup.terminate() == 0
        for thread in threads:
            thread.join(timeout=30)
        expected = sum(range(count))
        assert results == {f"drain-{i}": ("ok", expected) for i in range(4)}
        events.wait_for(lambda e: e["kind"] == "supervisor.stopping", timeout=5)
    assert not [pid for pid in children if psutil.pid_exists(pid) and alive(psutil.Process(pid))]
    assert sup.survivors() == []
    assert sup.log_records()[-1]["msg"] == "supervisor stopped"


def test_a_request_arriving_while_it_drains_is_not_left_hanging(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    make_recorders(sup.client, ["worker"])
    count = spin_count(sup.client, "worker", 3.0)
    results: dict[str, Any] = {}
    with EventStream(_events_address(sup), b"supervisor") as events:
        slow = sup.send_in_thread(results, "slow", "worker", "spin:", count)
        wait_until(lambda: sup.status()["routing"]["inflight"] == 1, timeout=10)
        sup.sigterm()
        events.wait_for(lambda e: e["kind"] == "supervisor.stopping", timeout=10)
        late = sup.send_in_thread(results, "late", "worker", "n", timeout=2)
        late.join(timeout=10)
        slow.join(timeout=30)
    assert results["slow"] == ("ok", sum(range(count)))
    assert sup.terminate() == 0
    # served, or a clear "shutting down": a draining supervisor must not drop it unanswered
    assert results["late"][0] in ("ok", "Unavailable"), results["late"]


class NotifyListener:
    """The systemd side of sd_notify: a datagram socket read by a thread (the kernel queue
    holds only ~10 datagrams, so an unread socket would block the sender)."""

    def __init__(self, folder: Path) -> None:
        self._own_folder = len(str(folder)) > 90  # a socket path must fit in ~107 bytes
        self.folder = Path(tempfile.mkdtemp(prefix="bn-")) if self._own_folder else folder
        self.path = path = self.folder / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: queue.Queue[tuple[int, list[str]]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, size)
            except TimeoutError:
                continue
            except OSError:
                return
            pid = next((struct.unpack("3i", d)[0] for lvl, typ, d in ancillary
                        if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS), -1)
            self.messages.put((pid, data.decode().split("\n")))

    def wait_for(self, line: str, timeout: float, seen: list[tuple[int, list[str]]]) -> list[str]:
        """The next datagram holding ``line``; all datagrams read go to ``seen``."""
        def get() -> list[str] | None:
            with contextlib.suppress(queue.Empty):
                seen.append(self.messages.get(timeout=0.1))
                return seen[-1][1] if line in seen[-1][1] else None
            return None
        return wait_until(get, timeout, interval=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        self.path.unlink(missing_ok=True)
        if self._own_folder:
            self.folder.rmdir()


def test_sd_notify_ready_watchdog_and_stopping(supervisors: Supervisors, tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path)
    try:
        sup = supervisors.start(serving=False, env={"NOTIFY_SOCKET": str(listener.path),
                                                    "WATCHDOG_USEC": "400000"})
        seen: list[tuple[int, list[str]]] = []
        ready = listener.wait_for("READY=1", 60, seen)
        assert any(line.startswith("STATUS=serving") for line in ready), ready
        assert sup.client.ping()["state"] == "serving"
        for _ in range(2):  # fed while serving (every 0.2 s: half of WATCHDOG_USEC)
            listener.wait_for("WATCHDOG=1", 5, seen)
        assert sup.terminate() == 0
        listener.wait_for("STOPPING=1", 10, seen)
        assert {pid for pid, _ in seen} == {sup.proc.pid}  # type: ignore[union-attr]
    finally:
        listener.close()


def test_children_do_not_inherit_the_notify_variables(supervisors: Supervisors,
                                                      tmp_path: Path) -> None:
    """supervisor/notify.py: "Children must not inherit NOTIFY_VARIABLES ... the spawner strips them"."""
    listener = NotifyListener(tmp_path)
    try:
        sup = supervisors.start(env={"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "400000"})
        status = sup.status()
        for pid in (status["zeo"]["pid"], status["incarnations"][0]["pid"]):
            inherited = set(psutil.Process(pid).environ()) & {"NOTIFY_SOCKET", "WATCHDOG_USEC"}
            assert not inherited, f"child {pid} inherited {inherited}"
    finally:
        listener.close()


def test_event_stream_reports_an_incarnation_replaced(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    old_pid = sup.active_pid()
    old_id = sup.status()["active"]
    with EventStream(_events_address(sup), b"incarnation") as events:
        os.kill(old_pid, signal.SIGKILL)
        exited = events.wait_for(lambda e: e["kind"] == "incarnation.exited"
                                 and e["data"]["incarnation"] == old_id, timeout=15)
        assert exited["data"]["expected"] is False
        assert exited["data"]["exit_code"] == -signal.SIGKILL
        ready = events.wait_for(lambda e: e["kind"] == "incarnation.ready", timeout=30)
    assert ready["data"]["pid"] != old_pid
    assert ready["data"]["incarnation"] != old_id
    assert "incarnation.spawned" in [e["kind"] for e in events.seen]
    assert sup.active_pid(not_pid=old_pid) == ready["data"]["pid"]
    assert sup.client.send("genesis", "printString").startswith("<genesis")
    assert sup.status()["restarts"]["total"] == 1
