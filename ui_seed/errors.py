"""ui_seed's errors: the exceptions it raises, and ``UiError``, what the UI shows.

The exceptions ui_seed raises share one root::

    UiSeedError                 anything ui_seed raises
    +-- WindowSourceError       the window's source could not be fetched, passed
                                no check, or did not run (``ui_seed.runner`` falls
                                back to the seed window and says why)

``UiError`` is a value, not an exception: a view model keeps it in ``error``
and the window draws it. ``kind`` says what happened (``unreachable``,
``timeout``, ``remote``, ``invalid``, ``bridge``, ``internal``); the message
names the endpoint or the remote error's type, so the user can act.

``explain`` translates what a bridge call raised (``bridge.Timeout``,
``bridge.RemoteError``, any other ``bridge.BridgeError``, anything else) into
a ``UiError``; ``invalid`` is the one for input refused before any call.
This module makes no calls and holds no state.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge import BridgeError, RemoteError, Timeout

__all__ = ["UiError", "UiSeedError", "WindowSourceError", "explain", "invalid"]


class UiSeedError(Exception):
    """The root of every exception ui_seed raises."""


class WindowSourceError(UiSeedError):
    """The window's source could not be fetched, passed no check, or did not run."""


@dataclass(frozen=True)
class UiError:
    kind: str
    title: str
    message: str
    type: str = ""

    @property
    def text(self) -> str:
        return f"{self.title}: {self.message}"


def explain(exc: BaseException, endpoint: str, *, reachable: bool | None = None) -> UiError:
    """A ``UiError`` for an exception a bridge call raised."""
    if isinstance(exc, Timeout):
        if reachable is False:
            return UiError("unreachable", "Supervisor not reachable",
                           f"no answer from {endpoint}. Is it running? Start it with 'batos up', "
                           "or give the right endpoint with 'batos ui --endpoint'.", "Timeout")
        return UiError("timeout", "Request timed out",
                       f"{exc} The supervisor at {endpoint} may be busy; try again.", "Timeout")
    if isinstance(exc, RemoteError):
        where = f" (from {exc.where})" if exc.where else ""
        return UiError("remote", f"{exc.type}{where}", exc.message, exc.type)
    if isinstance(exc, BridgeError):
        return UiError("bridge", type(exc).__name__, f"{exc} (endpoint {endpoint})",
                       type(exc).__name__)
    return UiError("internal", type(exc).__name__, str(exc) or repr(exc), type(exc).__name__)


def invalid(message: str) -> UiError:
    """The ``UiError`` for input the UI refuses before making any call."""
    return UiError("invalid", "Invalid input", message, "InvalidInput")
