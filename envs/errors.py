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
                                    ``uv`` on PATH

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
    "EnvError",
    "InvalidSpec",
    "OfflineMissing",
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
