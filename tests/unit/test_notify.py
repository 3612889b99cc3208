"""sd_notify, checked against a real Unix datagram socket standing in for systemd.

Each test binds its own ``AF_UNIX``/``SOCK_DGRAM`` socket (a path in
``tmp_path``, or a name in the abstract namespace), points ``NOTIFY_SOCKET``
at it and reads what the notifier sent. Every receive has a timeout; the
watchdog is driven with explicit ``now`` values, never by sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.notify import NOTIFY_VARIABLES, Notifier

TIMEOUT = 5.0


class FakeSystemd:
    """The listening end of ``NOTIFY_SOCKET``."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def recv(self) -> list[str]:
        data = self.sock.recv(4096)
        return data.decode("utf-8").split("\n")

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        return False


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    path = tmp_path / "notify.sock"
    try:
        sock.bind(str(path))
        yield FakeSystemd(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    name = f"batos-test-notify-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.bind("\0" + name)
        yield FakeSystemd(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    made: list[Notifier] = []
    try:
        yield made
    finally:
        for notifier in made:
            notifier.close()


def make(notifiers: list[Notifier], env: dict[str, str]) -> Notifier:
    notifier = Notifier.from_environment(env)
    notifiers.append(notifier)
    return notifier


def test_ready_with_status(systemd, notifiers):
    notifier = make(notifiers, {"NOTIFY_SOCKET": systemd.env_value})
    assert notifier.enabled
    assert notifier.ready(status="serving on ipc://x") is True
    assert systemd.recv() == ["READY=1", "STATUS=serving on ipc://x"]


def test_status_stopping_and_reloading(systemd, notifiers):
    notifier = make(notifiers, {"NOTIFY_SOCKET": systemd.env_value})
    notifier.ready()
    assert systemd.recv() == ["READY=1"]
    notifier.status("2 incarnations\nrunning")
    assert systemd.recv() == ["STATUS=2 incarnations running"]
    notifier.reloading()
    reload_lines = systemd.recv()
    assert reload_lines[0] == "RELOADING=1"
    assert reload_lines[1].startswith("MONOTONIC_USEC=")
    notifier.stopping()
    assert systemd.recv() == ["STOPPING=1"]


def test_abstract_namespace_socket(abstract_systemd, notifiers):
    notifier = make(notifiers, {"NOTIFY_SOCKET": abstract_systemd.env_value})
    notifier.ready()
    assert abstract_systemd.recv() == ["READY=1"]


def test_watchdog_pings_at_half_the_interval(systemd, notifiers):
    env = {"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "2000",
           "WATCHDOG_PID": str(os.getpid())}
    notifier = make(notifiers, env)
    assert notifier.watchdog_interval == pytest.approx(0.001)

    assert notifier.watchdog_due(100.0)
    assert notifier.tick(100.0) is True
    assert systemd.recv() == ["WATCHDOG=1"]

    assert notifier.tick(100.0005) is False
    assert systemd.nothing_pending()

    assert notifier.tick(100.001) is True
    assert systemd.recv() == ["WATCHDOG=1"]
    assert not notifier.watchdog_due(100.0015)


def test_watchdog_without_pid_is_honoured(systemd, notifiers):
    notifier = make(notifiers, {"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval == pytest.approx(15.0)


def test_watchdog_for_another_pid_is_ignored(systemd, notifiers):
    env = {"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": "2000",
           "WATCHDOG_PID": str(os.getpid() + 1)}
    notifier = make(notifiers, env)
    assert notifier.watchdog_interval is None
    assert notifier.tick(100.0) is False
    assert not notifier.watchdog_due(100.0)
    assert systemd.nothing_pending()


@pytest.mark.parametrize("value", ["", "0", "soon"])
def test_unusable_watchdog_usec_is_ignored(systemd, notifiers, value):
    notifier = make(notifiers, {"NOTIFY_SOCKET": systemd.env_value, "WATCHDOG_USEC": value})
    assert notifier.watchdog_interval is None


def test_no_notify_socket_is_a_no_op():
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "2000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.stopping() is False
    assert notifier.watchdog() is False
    assert notifier.tick(1.0) is False
    notifier.close()


def test_send_failure_warns_once_and_never_raises(tmp_path, caplog, notifiers):
    notifier = make(notifiers, {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.DEBUG, logger="supervisor.notify"):
        assert notifier.ready() is False
        assert notifier.status("still here") is False
    levels = [r.levelno for r in caplog.records if r.name == "supervisor.notify"]
    assert levels == [logging.WARNING, logging.DEBUG]


def test_non_unix_address_is_not_used(notifiers):
    notifier = make(notifiers, {"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled


def test_notify_variables_name_what_children_must_not_inherit():
    assert set(NOTIFY_VARIABLES) == {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
