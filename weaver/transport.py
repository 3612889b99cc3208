"""The weaver's HTTP seam: how its clients build an ``httpx.Client``, and read ``Retry-After``.

``http_client(url, timeout=..., transport=...)`` is the one place the weaver's HTTP
policy lives, for ``weaver.openai`` (the mind) and ``weaver.lora`` (vLLM's adapter
endpoints):

- ``transport``: ``None`` speaks to the network; tests hand an ``httpx.MockTransport``
  (or any ``httpx.BaseTransport``) and fake the remote service at this seam;
- one ``timeout`` for each step (connect, each read, each write, a free connection
  from the pool), as ``urllib``'s socket timeout was;
- a server on the loopback interface is never reached through a proxy from the
  environment (``trust_env=False``: no ``HTTP(S)_PROXY``, no ``.netrc``); any other
  host follows the environment as ``urllib`` did (proxies, ``SSL_CERT_FILE``);
- certificates are checked against the system's trust store
  (``ssl.create_default_context()``, as ``urllib`` did), not a bundled one;
- connections are kept for reuse at most ``KEEPALIVE`` seconds idle, below the 5 s
  after which vLLM's server (uvicorn) closes them, so a reused one is rarely stale;
- redirects are followed, as ``urllib`` followed them.

``retry_after(value)`` reads a ``Retry-After`` header in both of its forms (seconds,
or an HTTP-date); the caller caps the wait.

Boundary: no error translation here (each client names its own errors, as
``weaver.errors`` draws them); no request is sent by this module. A client built
here is safe to share between threads (httpx's pool locks itself); its owner
closes it.
"""

from __future__ import annotations

import email.utils
import functools
import math
import ssl
import time
from datetime import UTC

import httpx

__all__ = ["KEEPALIVE", "LOOPBACK", "http_client", "is_loopback", "retry_after"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: seconds an idle connection is kept for reuse (vLLM's uvicorn drops it after 5)
KEEPALIVE = 2.0


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The system's certificate store (what ``urllib`` checked against); built once."""
    return ssl.create_default_context()


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is this machine's loopback interface."""
    return httpx.URL(url).host in LOOPBACK


def http_client(
    url: str,
    *,
    timeout: float,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client for the server at ``url`` (module docstring: timeouts, proxies, reuse).

    ``ValueError`` when ``url`` is not a URL httpx can use.
    """
    try:
        local = is_loopback(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{url!r} is not a usable URL: {exc}") from None
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        transport=transport,
        trust_env=not local,
        verify=_system_trust(),
        limits=httpx.Limits(keepalive_expiry=KEEPALIVE),
        follow_redirects=True,
    )


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (>= 0), or None when absent or unreadable.

    ``value`` is a number of seconds or an HTTP-date (RFC 9110 10.2.3); a date in the
    past means "now". ``now`` (epoch seconds) is for tests.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
