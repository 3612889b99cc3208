"""One fake HTTP service, two ways to reach it: httpx's transport seam, or a real socket.

A fake service is written once, as the handler an ``httpx.MockTransport`` calls
(``httpx.Request -> httpx.Response``). ``Loopback(handler)`` serves the same handler on
127.0.0.1 (a random port; ``http.server`` in a thread, HTTP/1.1 with keep-alive as vLLM's
server speaks it), so a test of a client runs through the seam and through real sockets
alike (``Served``: the base URL and the transport to pass, whichever way it is reached).

Failures the handler raises become what a real server does: ``httpx.TimeoutException``
holds the request unanswered until the server closes (the client's own timeout fires);
any other ``httpx.TransportError`` drops the connection without an answer.

``close()`` ends everything it started: the serving thread, and every connection still
open (a handler holding a request is released first). Never sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Handler = Callable[[httpx.Request], httpx.Response]
MOCK_HOST = "service.test"
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


class Loopback:
    """``handler`` served over a real loopback socket; ``peers`` are the client ends seen."""

    def __init__(self, handler: Handler) -> None:
        self.closing = threading.Event()
        self.peers: list[tuple[str, int]] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        outer = self

        class Serve(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without this a kept-alive connection
            # waits for the client's delayed ACK (40 ms) on every answer
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with outer._lock:
                    outer._connections.add(self.connection)

            def finish(self) -> None:
                with outer._lock:
                    outer._connections.discard(self.connection)
                super().finish()

            def serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                # a request through a proxy names the whole URL; otherwise only the path
                url = self.path if self.path.startswith("http") else f"{outer.url}{self.path}"
                request = httpx.Request(self.command, url, headers=list(self.headers.items()),
                                        content=body)
                with outer._lock:
                    outer.peers.append(self.client_address)
                try:
                    response = handler(request)
                except httpx.TimeoutException:
                    outer.closing.wait(30)
                    self.close_connection = True
                    return
                except httpx.TransportError:
                    self.close_connection = True
                    return
                content = response.read()
                self.send_response(response.status_code)
                for key, value in response.headers.multi_items():
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                try:
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = serve  # noqa: N815 - http.server's hooks

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            open_now = list(self._connections)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client closed it already
        self.thread.join(10)


@dataclass
class Served:
    """Where a client finds the fake: ``url`` (scheme and host) and the ``transport`` to use."""

    url: str
    transport: httpx.BaseTransport | None
    loopback: Loopback | None = None

    def close(self) -> None:
        if self.loopback is not None:
            self.loopback.close()


def serve(handler: Handler, how: str) -> Served:
    """``handler`` reached through ``httpx.MockTransport`` (``"mock"``) or a socket (``"loopback"``)."""
    if how == "mock":
        return Served(f"http://{MOCK_HOST}", httpx.MockTransport(handler))
    if how == "loopback":
        server = Loopback(handler)
        return Served(server.url, None, server)
    raise ValueError(f"serve: how is 'mock' or 'loopback', not {how!r}")


#: parametrize a fixture with these to run its tests both ways
WAYS = ("mock", "loopback")
