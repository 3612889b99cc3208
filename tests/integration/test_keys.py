"""CurveZMQ keys over real sockets: who gets through and who gets nothing.

A ROUTER bound on ``tcp://127.0.0.1:<random port>`` with the server's CURVE
keys and a running ZAP authenticator echoes what it receives. Checked:

* a client whose public key is in ``authorized/`` gets its echo, and the
  router sees the client's key as the message's ``User-Id``;
* a client with valid keys that are not authorized, and a plaintext client,
  fail the handshake (seen on a socket monitor) and the router receives
  nothing; a revoked key is refused once the authenticator reloads;
* without an authenticator a CURVE socket refuses everyone (it fails closed).

Plus the file side: modes, idempotent generation, refusing secret or bogus
files, and ``is_loopback``. Every receive polls with a timeout; every socket
closes with ``linger=0``, the authenticator stops and the context terminates
in fixture teardown.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from supervisor.errors import ConfigError, SupervisorError
from supervisor.keys import (
    InvalidKeyFile,
    KeyPaths,
    KeysMissing,
    authorize,
    client_curve,
    curve_for_bind,
    generate_client_keys,
    generate_local_client,
    generate_server_keys,
    is_loopback,
    list_authorized,
    reload_authorized,
    revoke,
    server_curve,
    start_authenticator,
)

pytestmark = pytest.mark.integration

TIMEOUT_MS = 5000
QUIET_MS = 300  # after the handshake has visibly failed, how long we listen for a leak


@dataclass
class Home:
    path: Path
    alice_public: Path  # authorized
    alice_secret: Path
    mallory_public: Path  # valid keys, never authorized
    mallory_secret: Path


@pytest.fixture
def home(tmp_path: Path) -> Home:
    path = tmp_path / "home"
    generate_server_keys(path)
    alice = generate_client_keys(tmp_path / "alice", "alice")
    mallory = generate_client_keys(tmp_path / "mallory", "mallory")
    authorize(path, alice[0])
    return Home(path, *alice, *mallory)


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.term()


class Sockets:
    """Every socket (and monitor) a test opens, closed with linger=0 at teardown."""

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self.opened: list[zmq.Socket] = []

    def new(self, kind: int) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.linger = 0
        self.opened.append(sock)
        return sock

    def monitor(self, sock: zmq.Socket) -> zmq.Socket:
        watcher = sock.get_monitor_socket()
        watcher.linger = 0
        self.opened.append(watcher)
        return watcher

    def close_all(self) -> None:
        for sock in reversed(self.opened):
            sock.close(linger=0)


@pytest.fixture
def sockets(context: zmq.Context) -> Iterator[Sockets]:
    made = Sockets(context)
    try:
        yield made
    finally:
        made.close_all()


@pytest.fixture
def authenticator(context: zmq.Context, home: Home) -> Iterator[Any]:
    auth = start_authenticator(context, home.path)
    try:
        yield auth
    finally:
        auth.stop()


@dataclass
class Server:
    router: zmq.Socket
    endpoint: str


def curve_router(sockets: Sockets, home: Home) -> Server:
    router = sockets.new(zmq.ROUTER)
    server_curve(home.path).apply(router)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    return Server(router, f"tcp://127.0.0.1:{port}")


@pytest.fixture
def server(authenticator: Any, sockets: Sockets, home: Home) -> Server:
    return curve_router(sockets, home)


def dealer(sockets: Sockets, home: Home, secret: Path | None) -> zmq.Socket:
    sock = sockets.new(zmq.DEALER)
    if secret is not None:
        client_curve(KeyPaths.of(home.path).server_public, secret).apply(sock)
    return sock


def echo_once(router: zmq.Socket, timeout_ms: int = TIMEOUT_MS) -> list[zmq.Frame] | None:
    """Receive one message and send it back; None if none came within the timeout."""
    if not router.poll(timeout_ms):
        return None
    frames = router.recv_multipart(copy=False)
    router.send_multipart(frames)
    return frames


def wait_for_event(monitor: zmq.Socket, wanted: int, timeout_ms: int = TIMEOUT_MS) -> dict:
    deadline = time.monotonic() + timeout_ms / 1000
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        if monitor.poll(int(left * 1000) + 1):
            event = recv_monitor_message(monitor)
            if event["event"] == wanted:
                return event
            seen.append(event["event"])
    raise AssertionError(f"no monitor event {wanted} within {timeout_ms} ms (saw {seen})")


def public_z85(public_file: Path) -> str:
    return zmq.auth.load_certificate(public_file)[0].decode()


def assert_echo(server: Server, client: zmq.Socket, payload: bytes) -> list[zmq.Frame]:
    client.connect(server.endpoint)
    client.send(payload)
    frames = echo_once(server.router)
    assert frames is not None, "the router received nothing from an authorized client"
    assert client.poll(TIMEOUT_MS), "no echo came back"
    assert client.recv() == payload
    return frames


def assert_refused(server: Server, client: zmq.Socket, monitor: zmq.Socket, event: int) -> None:
    client.connect(server.endpoint)
    client.send(b"let me in")
    wait_for_event(monitor, event)
    assert echo_once(server.router, QUIET_MS) is None, "the router received a refused message"
    assert not client.poll(0)


# --- over the wire -------------------------------------------------------------------------


def test_authorized_client_gets_an_echo(server, sockets, home):
    frames = assert_echo(server, dealer(sockets, home, home.alice_secret), b"ping")
    assert frames[-1].get("User-Id") == public_z85(home.alice_public)


def test_unauthorized_client_gets_nothing(server, sockets, home):
    mallory = dealer(sockets, home, home.mallory_secret)
    assert_refused(server, mallory, sockets.monitor(mallory), zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    # The same server still serves those it should.
    assert_echo(server, dealer(sockets, home, home.alice_secret), b"still serving")


def test_plaintext_client_gets_nothing(server, sockets, home):
    plain = dealer(sockets, home, None)
    assert_refused(server, plain, sockets.monitor(plain), zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)


def test_revoked_client_is_refused_after_reload(server, authenticator, sockets, home):
    assert_echo(server, dealer(sockets, home, home.alice_secret), b"before")
    revoke(home.path, "alice")
    assert reload_authorized(authenticator, home.path) == 0
    again = dealer(sockets, home, home.alice_secret)
    assert_refused(server, again, sockets.monitor(again), zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def test_without_authenticator_curve_refuses_everyone(sockets, home):
    server = curve_router(sockets, home)
    watch_server = sockets.monitor(server.router)
    alice = dealer(sockets, home, home.alice_secret)
    alice.connect(server.endpoint)
    alice.send(b"anyone home?")
    wait_for_event(watch_server, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    assert echo_once(server.router, QUIET_MS) is None


# --- files ---------------------------------------------------------------------------------


def test_layout_and_modes(home):
    paths = KeyPaths.of(home.path)
    assert stat.S_IMODE(paths.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.server_secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.alice_secret.stat().st_mode) == 0o600
    public, secret = zmq.auth.load_certificate(paths.server_public)
    assert secret is None
    assert zmq.auth.load_certificate(paths.server_secret)[0] == public
    assert list_authorized(home.path) == ["alice"]
    assert not [p for p in paths.dir.iterdir() if p.name.startswith(".")], "temporary files left"


def test_generation_keeps_keys_unless_forced(home):
    before = server_curve(home.path)
    assert generate_server_keys(home.path) == (KeyPaths.of(home.path).server_public,
                                               KeyPaths.of(home.path).server_secret)
    assert server_curve(home.path) == before
    generate_server_keys(home.path, force=True)
    assert server_curve(home.path).public_key != before.public_key


def test_local_client_is_generated_and_authorized(server, authenticator, sockets, home):
    public, secret = generate_local_client(home.path)
    paths = KeyPaths.of(home.path)
    assert (public, secret) == (paths.client_public, paths.client_secret)
    assert list_authorized(home.path) == ["alice", "local"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert reload_authorized(authenticator, home.path) == 2
    assert_echo(server, dealer(sockets, home, secret), b"from the cli")


def test_secrets_stay_out_of_reprs(home):
    curve = server_curve(home.path)
    assert curve.secret_key.decode() not in repr(curve)
    client = client_curve(KeyPaths.of(home.path).server_public, home.alice_secret)
    assert client.secret_key.decode() not in repr(client)


def test_authorize_names_and_refusals(home, tmp_path):
    target = authorize(home.path, home.mallory_public, name="mallory-laptop")
    assert target.name == "mallory-laptop.key"
    assert list_authorized(home.path) == ["alice", "mallory-laptop"]

    with pytest.raises(InvalidKeyFile, match="secret"):
        authorize(home.path, home.alice_secret)
    bogus = tmp_path / "bogus.key"
    bogus.write_text("curve\n    public-key = \"not-a-key\"\n")
    with pytest.raises(InvalidKeyFile):
        authorize(home.path, bogus)
    bogus.write_text(f"curve\n    public-key = \"{'~' * 40}\"\n")
    with pytest.raises(InvalidKeyFile):
        authorize(home.path, bogus)
    with pytest.raises(KeysMissing):
        authorize(home.path, tmp_path / "absent.key")
    with pytest.raises(ConfigError):
        authorize(home.path, home.alice_public, name="../escape")
    assert list_authorized(home.path) == ["alice", "mallory-laptop"]


def test_revoke_unknown_client(home):
    with pytest.raises(ConfigError, match="alice"):
        revoke(home.path, "nobody")


def test_missing_server_keys_tell_the_operator_what_to_run(tmp_path):
    with pytest.raises(KeysMissing, match="batos keys generate") as info:
        server_curve(tmp_path)
    assert isinstance(info.value, SupervisorError)
    with pytest.raises(KeysMissing, match="batos keys generate"):
        curve_for_bind("tcp://0.0.0.0:5555", tmp_path)
    assert curve_for_bind("tcp://127.0.0.1:5555", tmp_path) is None


def test_authenticator_needs_the_authorized_folder(context, tmp_path):
    with pytest.raises(KeysMissing, match="batos keys generate"):
        start_authenticator(context, tmp_path)


def test_a_bad_authorized_file_stops_the_authenticator_starting(context, home):
    (KeyPaths.of(home.path).authorized / "broken.key").write_text("nothing here\n")
    with pytest.raises(InvalidKeyFile, match="broken.key"):
        start_authenticator(context, home.path)


@pytest.mark.parametrize(("endpoint", "local"), [
    ("tcp://127.0.0.1:5555", True),
    ("tcp://127.1.2.3:*", True),
    ("tcp://localhost:5555", True),
    ("tcp://LOCALHOST:5555", True),
    ("tcp://[::1]:5555", True),
    ("tcp://[::ffff:127.0.0.1]:5555", True),
    ("ipc:///run/batos/frontend.sock", True),
    ("inproc://workers", True),
    ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False),
    ("tcp://[::]:5555", False),
    ("tcp://192.168.1.10:5555", False),
    ("tcp://eth0:5555", False),
    ("tcp://example.com:5555", False),
    ("tcp://127.0.0.1:5555;10.0.0.1:6000", False),
    ("ws://127.0.0.1:5555", False),
    ("127.0.0.1:5555", False),
])
def test_is_loopback(endpoint, local):
    assert is_loopback(endpoint) is local
