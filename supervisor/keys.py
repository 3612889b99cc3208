"""Who may connect: CurveZMQ keys for the supervisor's sockets.

Binds are loopback-only by default (``is_loopback``); binding the frontend to
any other address requires CURVE: the traffic is encrypted and only clients
whose public key is in ``authorized/`` get through. The layout in the home
folder::

    home/keys/                      mode 0700
        server.key                  the server's public certificate: give it to clients
        server.key_secret           its secret certificate, mode 0600
        client.key(_secret)         the local CLI's own pair
        authorized/<name>.key       one public certificate per client allowed in

What it offers: generating pairs (``generate_server_keys``,
``generate_client_keys``, ``generate_local_client``), managing ``authorized/`` (``authorize``,
``revoke``, ``list_authorized``), and the socket side: ``server_curve(home)``
and ``client_curve(...)`` give objects whose ``apply(socket)`` sets the CURVE
options; ``start_authenticator`` runs pyzmq's ZAP handler over
``authorized/``.

The socket fails closed. ``CurveServer.apply`` names the ZAP domain
``ZAP_DOMAIN`` and sets ``ZAP_ENFORCE_DOMAIN``, and the authenticator is
configured for that domain, not ``*``: without both options libzmq admits
any client key whenever no ZAP handler is running on the context (and with
enforcement but an empty domain it skips ZAP altogether). So a CURVE socket
whose authenticator was not started, or has stopped, refuses everyone.
``authorized/`` is read when the authenticator starts and on
``reload_authorized``; a revoked key is refused on its next connection, not
cut off mid-connection.

Boundary: files and socket options only; which endpoints to bind is the
supervisor's decision. pyzmq's file and key errors become ``KeysMissing`` or
``InvalidKeyFile`` here. Thread boundary: ``apply`` runs in the thread that
owns the socket; the authenticator answers from its own thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from supervisor.errors import ConfigError, SupervisorError

__all__ = [
    "ZAP_DOMAIN", "CurveClient", "CurveServer", "InvalidKeyFile", "KeyPaths", "KeysMissing",
    "authorize", "client_curve", "curve_for_bind", "generate_client_keys",
    "generate_local_client", "generate_server_keys", "is_loopback", "list_authorized", "reload_authorized", "revoke",
    "server_curve", "start_authenticator",
]

log = logging.getLogger(__name__)

ZAP_DOMAIN = "batos"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
_GENERATE = "run `batos keys generate`"


class KeysMissing(ConfigError):
    """CURVE is required but the key files it needs are not there."""


class InvalidKeyFile(ConfigError):
    """A file that should hold a zmq CURVE certificate does not, or holds the wrong half."""


@dataclass(frozen=True)
class KeyPaths:
    """Where the keys live in a home folder (see the module docstring)."""

    dir: Path
    server_public: Path
    server_secret: Path
    client_public: Path
    client_secret: Path
    authorized: Path

    @classmethod
    def of(cls, home: str | os.PathLike[str]) -> KeyPaths:
        d = Path(home) / "keys"
        return cls(d, d / "server.key", d / "server.key_secret", d / "client.key",
                   d / "client.key_secret", d / "authorized")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a key name (letters, digits, '_', '.', '@', '-')")
    return name


def _load(path: Path, hint: str = "") -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a certificate file, validated."""
    if not path.is_file():
        raise KeysMissing(f"no key file at {path}{hint}")
    try:
        public, secret = zmq.auth.load_certificate(path)
        for key in (public, secret):
            if key is not None and len(z85.decode(key)) != 32:
                raise ValueError("a CURVE key is 32 bytes")
    except (OSError, ValueError, KeyError) as exc:  # z85 raises KeyError on a bad character
        raise InvalidKeyFile(f"{path} is not a zmq CURVE certificate: {exc}") from exc
    return public, secret


def generate_client_keys(
    directory: str | os.PathLike[str], name: str, *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``name.key`` and ``name.key_secret`` (0600) in ``directory``.

    An existing pair is kept and returned unless ``force``. The files are
    written in a private temporary folder and moved in, so a secret is never
    readable by others, not even for a moment.
    """
    _check_name(name)
    target = Path(directory)
    public, secret = target / f"{name}.key", target / f"{name}.key_secret"
    if not force and public.is_file() and secret.is_file():
        return public, secret
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target, prefix=".new-") as tmp:  # mode 0700
            new_public, new_secret = zmq.auth.create_certificates(tmp, name)
            os.chmod(new_secret, 0o600)
            os.chmod(new_public, 0o644)
            os.replace(new_secret, secret)
            os.replace(new_public, public)
    except OSError as exc:
        raise ConfigError(f"cannot write keys in {target}: {exc.strerror or exc}") from exc
    return public, secret


def generate_server_keys(home: str | os.PathLike[str], *, force: bool = False) -> tuple[Path, Path]:
    """The server's pair in ``home/keys`` (kept if present, unless ``force``), and
    an empty ``authorized/``. Regenerating means every client needs the new
    ``server.key``."""
    paths = KeyPaths.of(home)
    try:
        paths.dir.mkdir(parents=True, exist_ok=True)
        paths.dir.chmod(0o700)
        paths.authorized.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {paths.dir}: {exc.strerror or exc}") from exc
    return generate_client_keys(paths.dir, "server", force=force)


def generate_local_client(
    home: str | os.PathLike[str], *, force: bool = False
) -> tuple[Path, Path]:
    """The local CLI's pair, ``keys/client.key(_secret)``, authorized as ``local``."""
    paths = KeyPaths.of(home)
    public, secret = generate_client_keys(paths.dir, "client", force=force)
    authorize(home, public, name="local")
    return public, secret


def authorize(
    home: str | os.PathLike[str], public_key_file: str | os.PathLike[str], name: str | None = None
) -> Path:
    """Let the client whose public certificate is ``public_key_file`` connect.

    The file is checked to be a real zmq certificate holding only a public
    key, then copied to ``authorized/<name>.key`` (``name`` defaults to the
    file's name without ``.key``; an existing entry of that name is
    replaced). Takes effect on ``reload_authorized`` or the next start.
    """
    source = Path(public_key_file)
    _public, secret = _load(source)
    if secret is not None:
        raise InvalidKeyFile(
            f"{source} holds a secret key: never hand that out; authorize the public "
            f"'.key' file that sits beside it")
    if name is None:
        name = source.name.removesuffix(".key") if source.name.endswith(".key") else source.stem
    paths = KeyPaths.of(home)
    target = paths.authorized / f"{_check_name(name)}.key"
    tmp = paths.authorized / f".{name}.key.tmp"
    try:
        paths.authorized.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    log.info("authorized client key", extra={"client": name})
    return target


def list_authorized(home: str | os.PathLike[str]) -> list[str]:
    """Names of the clients in ``authorized/``, sorted."""
    folder = KeyPaths.of(home).authorized
    if not folder.is_dir():
        return []
    return sorted(p.name.removesuffix(".key") for p in folder.glob("*.key"))


def revoke(home: str | os.PathLike[str], name: str) -> Path:
    """Remove ``authorized/<name>.key``; returns the path removed."""
    target = KeyPaths.of(home).authorized / f"{_check_name(name)}.key"
    try:
        target.unlink()
    except FileNotFoundError:
        known = ", ".join(list_authorized(home)) or "none"
        raise ConfigError(f"no authorized client named {name!r} (authorized: {known})") from None
    log.info("revoked client key", extra={"client": name})
    return target


def is_loopback(endpoint: str) -> bool:
    """True when a bind on ``endpoint`` can be reached from this machine only.

    ``ipc://`` and ``inproc://`` are local; ``tcp://`` is local for
    ``127.0.0.0/8``, ``[::1]`` and ``localhost``. Wildcards (``*``,
    ``0.0.0.0``), interface names, other addresses and other transports are
    not. Local is not private: other users of this machine can reach a
    loopback port, and an ipc socket unless its folder is mode 0700.
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return False
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    if ";" in rest:  # "source;destination" is a connect form; never a local bind
        return False
    if rest.startswith("["):
        host = rest[1:rest.find("]")] if "]" in rest else ""
    else:
        host = rest.rpartition(":")[0] if ":" in rest else rest
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True)
class CurveServer:
    """The server's key pair, ready to put on a ROUTER socket before it binds."""

    public_key: bytes
    secret_key: bytes = field(repr=False)

    def apply(self, socket: zmq.Socket) -> None:
        # Fail closed: without a ZAP handler libzmq admits any client key, unless
        # the socket names a ZAP domain and enforces it. (Enforcing with an empty
        # domain is worse: libzmq then skips ZAP and admits everyone.)
        socket.zap_domain = ZAP_DOMAIN.encode()
        socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        socket.curve_secretkey = self.secret_key
        socket.curve_publickey = self.public_key
        socket.curve_server = True


@dataclass(frozen=True)
class CurveClient:
    """A client's pair plus the server's public key, for a DEALER before it connects."""

    server_key: bytes
    public_key: bytes
    secret_key: bytes = field(repr=False)

    def apply(self, socket: zmq.Socket) -> None:
        socket.curve_serverkey = self.server_key
        socket.curve_publickey = self.public_key
        socket.curve_secretkey = self.secret_key


def server_curve(home: str | os.PathLike[str]) -> CurveServer:
    """The server's CURVE options from ``home/keys/server.key_secret``."""
    paths = KeyPaths.of(home)
    if not paths.server_secret.is_file():
        raise KeysMissing(
            f"binding beyond loopback needs CURVE keys and {paths.server_secret} is missing; "
            f"{_GENERATE}")
    public, secret = _load(paths.server_secret, f"; {_GENERATE}")
    if secret is None:
        raise InvalidKeyFile(f"{paths.server_secret} holds no secret key; {_GENERATE} --force")
    return CurveServer(public, secret)


def client_curve(
    server_public_file: str | os.PathLike[str], client_secret_file: str | os.PathLike[str]
) -> CurveClient:
    """A client's CURVE options: the server's public certificate and the client's secret one."""
    server_key, _ = _load(Path(server_public_file), "; copy the server's server.key there")
    public, secret = _load(Path(client_secret_file), f"; {_GENERATE}")
    if secret is None:
        raise InvalidKeyFile(f"{client_secret_file} holds no secret key; pass the '.key_secret' file")
    return CurveClient(server_key, public, secret)


def curve_for_bind(endpoint: str, home: str | os.PathLike[str]) -> CurveServer | None:
    """None for a loopback endpoint; otherwise the server's CURVE (``KeysMissing`` if none)."""
    return None if is_loopback(endpoint) else server_curve(home)


def _authorized_dir(home: str | os.PathLike[str]) -> Path:
    folder = KeyPaths.of(home).authorized
    if not folder.is_dir():
        raise KeysMissing(f"no folder of authorized client keys at {folder}; {_GENERATE}")
    for path in folder.glob("*.key"):
        _load(path)  # pyzmq would only log a bad file and then refuse everyone
    return folder


def reload_authorized(authenticator: ThreadAuthenticator, home: str | os.PathLike[str]) -> int:
    """Re-read ``authorized/`` into a running authenticator; returns how many keys."""
    folder = _authorized_dir(home)
    authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(folder))
    count = len(list_authorized(home))
    log.info("authorized client keys loaded", extra={"count": count})
    return count


def start_authenticator(context: zmq.Context, home: str | os.PathLike[str]) -> ThreadAuthenticator:
    """A started ZAP handler on ``context`` admitting the keys in ``authorized/``.

    One per context (it binds ``inproc://zeromq.zap.01``); ``stop()`` it
    before terminating the context. Until it runs, CURVE sockets on the
    context refuse every client.
    """
    _authorized_dir(home)
    authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
    try:
        authenticator.start()
        reload_authorized(authenticator, home)
    except zmq.ZMQError as exc:
        authenticator.stop()
        raise SupervisorError(f"cannot start the ZAP authenticator: {exc}") from exc
    except BaseException:
        authenticator.stop()
        raise
    return authenticator
