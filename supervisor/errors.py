"""The supervisor's errors: one root.

    SupervisorError
    +-- ConfigError          the configuration or command line is invalid
    |   +-- KeysMissing      CURVE is required but the server keys are absent
    |   +-- InvalidKeyFile   a key file is not a valid CurveZMQ certificate
    |                        (both in supervisor.keys)
    +-- HomeError            the home folder cannot be used (permissions, another
    |                        supervisor already running there)
    +-- ZeoError             the ZEO server would not start or keeps dying
    +-- IncarnationError     an incarnation could not be spawned
    +-- ServiceInstallError  the systemd unit could not be written (supervisor.service)
    +-- VllmError            the vLLM server cannot be run as configured (supervisor.vllm)
    +-- RequestRefused       a client's request is answered with an error instead of
    |                        acted on (``type``: Busy, Unavailable, InvalidRequest)
    +-- HandoverFailed       a handover failed in a phase (supervisor.handover)

Requests that fail inside the routing loop never leave it: ``RequestRefused`` and
anything else a request handler meets become error replies (see
``bridge.messages.ErrorInfo``) and the loop keeps serving.
"""

from __future__ import annotations

__all__ = ["ConfigError", "HomeError", "IncarnationError", "RequestRefused", "SupervisorError",
           "ZeoError"]


class SupervisorError(Exception):
    """Root of the supervisor's errors."""


class ConfigError(SupervisorError):
    """The configuration or command line is invalid."""


class HomeError(SupervisorError):
    """The home folder cannot be used."""


class ZeoError(SupervisorError):
    """The ZEO server would not start or keeps dying."""


class IncarnationError(SupervisorError):
    """An incarnation could not be spawned."""


class RequestRefused(SupervisorError):
    """A request the supervisor answers with an error of ``type`` instead of acting on it:
    ``Busy`` (a handover runs), ``Unavailable`` (nothing serves, shutting down) or
    ``InvalidRequest`` (it asks for something that cannot be)."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
