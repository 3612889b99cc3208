"""``bridge.Client``: the Python client every tool and script uses.

One DEALER socket to the supervisor's frontend. A request is sent with a
client-chosen id (uuid4 unless given); if no reply arrives within
``timeout`` seconds it is resent with the same id, up to ``retries`` times,
then ``Timeout`` names the endpoint. Resending by id is safe: the
incarnation runs each id at most once and answers repeats from its record.
Replies for other ids (late answers to earlier attempts) are dropped.

A ``Client`` is not thread-safe (ZMQ sockets are not): use one per thread.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from typing import Any

import zmq

from .codec import decode_reply, encode
from .errors import BridgeError, ProtocolError, RemoteError, Timeout
from .messages import (
    DescribeRequest,
    EvolveRequest,
    HandoversRequest,
    PingRequest,
    Reply,
    RollbackRequest,
    SendRequest,
    StatusRequest,
)

__all__ = ["DEFAULT_ENDPOINT", "Client", "default_endpoint", "new_request_id"]

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7719"


def default_endpoint() -> str:
    return os.environ.get("BATOS_ENDPOINT") or DEFAULT_ENDPOINT


def new_request_id() -> str:
    return str(uuid.uuid4())


def _who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return "unknown"


class Client:
    def __init__(
        self,
        endpoint: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        curve: tuple[bytes, bytes, bytes] | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        """``curve`` is ``(server_public, client_public, client_secret)`` for a CURVE frontend."""
        self.endpoint = endpoint or default_endpoint()
        self.timeout = timeout
        self.retries = retries
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            server_public, client_public, client_secret = curve
            self._socket.curve_serverkey = server_public
            self._socket.curve_publickey = client_public
            self._socket.curve_secretkey = client_secret
        try:
            self._socket.connect(self.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise BridgeError(f"cannot connect to {self.endpoint!r}: {exc}") from exc

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._socket.closed:
            self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    # --- requests -------------------------------------------------------------------

    def request(self, message: Any, *, timeout: float | None = None) -> Reply:
        """Send a request model; answer its ``Reply`` (error replies are returned, not raised)."""
        frame = encode(message)
        wait_ms = int((timeout if timeout is not None else self.timeout) * 1000)
        for _attempt in range(self.retries + 1):
            self._socket.send(frame)
            while self._socket.poll(wait_ms, zmq.POLLIN):
                try:
                    reply = decode_reply(self._socket.recv())
                except ProtocolError:
                    continue  # not for us or garbled: keep waiting for ours
                if reply.id == message.id:
                    return reply
        attempts = self.retries + 1
        raise Timeout(
            f"no reply from {self.endpoint} to {message.kind} {message.id} after {attempts} "
            f"attempt(s) of {wait_ms / 1000:g}s: is the supervisor running ('batos up')?"
        )

    def call(self, message: Any, *, timeout: float | None = None) -> Any:
        """Send a request model; answer its result or raise ``RemoteError``."""
        reply = self.request(message, timeout=timeout)
        if not reply.ok:
            assert reply.error is not None
            raise RemoteError(reply.error.type, reply.error.message, reply.error.where)
        return reply.result

    def send(
        self,
        target: str,
        selector: str,
        *args: Any,
        request_id: str | None = None,
        author: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        message = SendRequest(
            id=request_id or new_request_id(), target=target, selector=selector,
            args=list(args), author=author,
        )
        return self.call(message, timeout=timeout)

    def evolve(
        self,
        add: list[str] | None = None,
        remove: list[str] | None = None,
        *,
        offline: bool = False,
        find_links: list[str] | None = None,
        force: bool = False,
        probation: float | None = None,
        who: str = "",
        request_id: str | None = None,
        timeout: float = 900.0,
    ) -> Any:
        """Hand the image over to an env with these library changes; answers at the switch.

        Resent with the same id on timeout like any request: the supervisor starts at most
        one handover per id (a resend joins it, or gets its recorded outcome).
        """
        message = EvolveRequest(
            id=request_id or new_request_id(), add=list(add or []), remove=list(remove or []), offline=offline,
            find_links=list(find_links or []), force=force, probation=probation,
            who=who or _who(),
        )
        return self.call(message, timeout=timeout)

    def rollback(self, env_id: str | None = None, *, force: bool = False,
                 probation: float | None = None, who: str = "", request_id: str | None = None,
                 timeout: float = 900.0) -> Any:
        """Hand over to a previous generation's env (the one before the current by default);
        resent by id like ``evolve``."""
        message = RollbackRequest(id=request_id or new_request_id(), env_id=env_id, force=force,
                                  probation=probation, who=who or _who())
        return self.call(message, timeout=timeout)

    def handovers(self, *, last: int | None = None, verify: bool = False,
                  timeout: float | None = None) -> Any:
        return self.call(HandoversRequest(id=new_request_id(), last=last, verify=verify),
                         timeout=timeout)

    def describe(self, target: str = "genesis", *, timeout: float | None = None) -> Any:
        return self.call(DescribeRequest(id=new_request_id(), target=target), timeout=timeout)

    def status(self, *, timeout: float | None = None) -> Any:
        return self.call(StatusRequest(id=new_request_id()), timeout=timeout)

    def ping(self, *, timeout: float | None = None) -> Any:
        return self.call(PingRequest(id=new_request_id()), timeout=timeout)
