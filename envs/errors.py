"""The errors of environment building: one root, drawn here.

``EnvError`` is the root of everything ``envs`` raises. "You asked for
something invalid" (nothing was built) is kept apart from "the build broke":

    EnvError
    +-- InvalidSpec                 a requirement, interpreter, project, change
    |                               or env id that is not valid; names it
    +-- BuildFailed                 uv exited non-zero or timed out; carries
    |   |                           ``phase`` (venv/install/freeze), ``command``
    |   |                           and the tail of uv's stderr
    |   +-- OfflineMissing          an offline build needed a package that is in
    |                               neither uv's cache nor a find-links folder;
    |                               ``packages`` names them
    +-- UvNotFound                  no uv binary: neither the ``uv`` package nor
    |                               ``uv`` on PATH
    +-- ConfinementUnavailable      ``envs.confine``: seccomp/libseccomp missing or
    |                               refused; names what (nothing was applied)
    +-- SpawnRefused                ``envs.spawner``: a command outside the fork-server's
    |                               table (or malformed); names what was wrong
    +-- SpawnerUnavailable          ``envs.spawner``: the fork-server is gone, or could
    |                               not start the child (carries the OS reason)
    +-- InvalidGrant                ``envs.sandbox``: a path granted to the sandbox that
    |                               is not an existing absolute path (or is /), a bad
    |                               variable name; nothing was started
    +-- SandboxUnavailable          ``envs.sandbox``: bubblewrap is missing or cannot make
                                    the sandbox here; the message says how to fix it

uv's own output never leaks as the error: ``build.py`` translates each failing
uv run into ``BuildFailed``/``OfflineMissing`` at the seam, with a message a
user can act on and uv's stderr tail kept for the details.

Every error has ``to_dict()``: the ``{type, message}`` pair that crosses a
process boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BuildFailed",
    "ConfinementUnavailable",
    "EnvError",
    "InvalidGrant",
    "InvalidSpec",
    "OfflineMissing",
    "SandboxUnavailable",
    "SpawnRefused",
    "SpawnerUnavailable",
    "UvNotFound",
]


class EnvError(Exception):
    """Root of every error environment building raises."""

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "message": str(self)}


class InvalidSpec(EnvError):
    """A spec (or a change to one, or an env id) that is not valid; nothing was built.

    Deliberately not a ``ValueError``: pydantic would wrap a ``ValueError``
    raised in a validator into its own ``ValidationError``.
    """


class BuildFailed(EnvError):
    """uv failed while building an env; the half-built env was removed.

    ``phase`` is ``"venv"``, ``"install"`` or ``"freeze"``; ``command`` the
    argument list that was run; ``stderr_tail`` the last lines uv printed.
    """

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        command: Sequence[str] = (),
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.phase = phase
        self.command = list(command)
        self.stderr_tail = stderr_tail


class OfflineMissing(BuildFailed):
    """An offline build needed packages that are in neither the uv cache nor find-links.

    ``packages`` are the names uv reported missing (may be empty when uv's
    output named none, e.g. a direct URL that was never fetched).
    """

    def __init__(
        self,
        message: str,
        *,
        packages: Sequence[str] = (),
        phase: str,
        command: Sequence[str] = (),
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message, phase=phase, command=command, stderr_tail=stderr_tail)
        self.packages = list(packages)


class UvNotFound(EnvError):
    """No uv binary could be found to build with."""


class ConfinementUnavailable(EnvError):
    """The process lock (``envs.confine``) cannot be applied here; the message says why."""


class SpawnRefused(EnvError):
    """The fork-server refused a command: not in its table, or malformed; nothing ran."""


class SpawnerUnavailable(EnvError):
    """The fork-server is gone or could not start the child (the OS reason is in the message)."""


class InvalidGrant(EnvError):
    """A sandbox grant (a path, a variable) that is not valid; nothing was started."""


class SandboxUnavailable(EnvError):
    """bubblewrap is missing or cannot make the sandbox here; the message says how to fix it."""
