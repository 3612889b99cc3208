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

Requests that fail inside the routing loop never raise: they become error
replies (see ``bridge.messages.ErrorInfo``) and the loop keeps serving.
"""

from __future__ import annotations

__all__ = ["ConfigError", "HomeError", "IncarnationError", "SupervisorError", "ZeoError"]


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
