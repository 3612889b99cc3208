"""Child processes: start in their own session, stop by escalation, never leave zombies.

``spawn`` starts a child with ``start_new_session=True`` so signals to its
process group reach grandchildren too. ``stop`` and ``kill`` are
``envs.children``'s (the one stop-with-escalation helper): ``stop`` asks (SIGTERM
to the group), waits ``grace`` seconds, then kills (SIGKILL to the group) and
reaps, logging each step; ``kill`` is the immediate form for an unresponsive
child (a no-op once it exited).

A child started through ``envs.sandbox.wrap`` (``spawn(..., sandboxed=True)``) is
bubblewrap, which ignores SIGTERM and passes it on only through the group: the
wrapped command stops gracefully on the group's SIGTERM, and the group's SIGKILL
(or bubblewrap's death) kills all of it. Its ``returncode`` is the command's, as if
it ran unwrapped (bubblewrap's 128+N for a death by signal N reads -N).

With ``log_cap`` (incarnations: they run image code) the child's stdout and stderr are
one pipe, drained into ``log_file`` by a ``logpump.LogPump`` (capped and rotated, the
file never the child's to seek, truncate or grow past the cap); the pump is the
returned process's ``log_pump``. Without it (ZEO, vLLM: the supervisor's own programs)
the child appends to ``log_file`` directly.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from envs import children
from envs.sandbox import exit_status

from .logpump import LogPump
from .notify import NOTIFY_VARIABLES

__all__ = ["SandboxedPopen", "child_environment", "kill", "spawn", "stop"]


def child_environment() -> dict[str, str]:
    """The supervisor's environment less what is the supervisor's alone (systemd's notify socket)."""
    return {k: v for k, v in os.environ.items() if k not in NOTIFY_VARIABLES}


class SandboxedPopen(subprocess.Popen[bytes]):
    """A bubblewrap child whose ``returncode`` (and ``wait()``/``poll()``) is its command's."""

    _raw: int | None = None

    @property  # type: ignore[override]
    def returncode(self) -> int | None:
        return exit_status(self._raw)

    @returncode.setter
    def returncode(self, value: int | None) -> None:
        self._raw = value


def spawn(argv: Sequence[str], *, log_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None, sandboxed: bool = False,
          log_cap: int | None = None) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if env is None:
        env = child_environment()
    popen = SandboxedPopen if sandboxed else subprocess.Popen
    if log_cap is not None:
        read_end, write_end = LogPump.pipe()
        try:
            pump = LogPump(read_end, log_file, max_bytes=log_cap)
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise
        try:
            proc = popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=write_end,
                stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(write_end)
            pump.start()  # reads end of file at once, closes the pipe and the file
            raise
        os.close(write_end)  # the child's alone now: end of file when it is gone
        proc.log_pump = pump.start()  # type: ignore[attr-defined]
        return proc
    with open(log_file, "ab") as out:
        return popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True, close_fds=True,
        )


def kill(proc: subprocess.Popen[bytes], what: str) -> None:
    """SIGKILL a running child's process group now (nothing once it exited)."""
    if proc.poll() is None:
        children.kill(proc, what)


def stop(proc: subprocess.Popen[bytes], what: str, grace: float = 10.0) -> int | None:
    """SIGTERM the group, wait ``grace``, SIGKILL, reap (``envs.children.stop``); the exit code."""
    return children.stop(proc, what, grace=grace)
