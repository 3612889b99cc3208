"""The systemd unit that keeps the supervisor running: rendered, installed, explained.

``render_unit`` writes the text of a ``Type=notify`` service for ``batos up``
(a user unit or a system unit), ``install_unit`` puts it where systemd looks,
and ``enable_commands`` lists the ``systemctl`` commands the operator runs
next. What the unit promises, and why:

* ``Type=notify`` with ``NotifyAccess=main``: the service is "started" when
  the supervisor sends ``READY=1`` (see ``supervisor.notify``); messages from
  its children are ignored.
* ``WatchdogSec=``: a supervisor whose loop hangs stops feeding the watchdog
  and is restarted; ``Restart=always`` with ``RestartSec=2`` restarts it
  after any exit.
* ``KillMode=mixed``: ``systemctl stop`` sends SIGTERM to the supervisor
  alone, which stops its workers in order; whatever is left when
  ``TimeoutStopSec=`` runs out gets SIGKILL.

Boundary: this module writes files and returns text. It never runs
``systemctl`` itself: enabling a service is the operator's decision, so the
commands are printed, not executed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from supervisor.errors import ConfigError, SupervisorError

__all__ = [
    "ServiceInstallError",
    "default_unit_dir",
    "enable_commands",
    "install_unit",
    "quote_arg",
    "render_unit",
]

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT_NAME = re.compile(r"[A-Za-z0-9_.@:-]+\.service")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class ServiceInstallError(SupervisorError):
    """The unit file could not be written where systemd looks for it."""


def _escape(text: str, *, dollar: bool) -> str:
    # '%' starts a systemd specifier everywhere; '$' expands variables in Exec lines only.
    text = text.replace("%", "%%")
    if dollar:
        text = text.replace("$", "$$")
    return text


def quote_arg(arg: str, *, dollar: bool = True) -> str:
    """``arg`` as one word of a systemd ``ExecStart=`` (or ``Environment=``) line.

    Words of safe characters stay bare; others are double-quoted with
    backslash, quote and control characters escaped C-style. ``%`` becomes
    ``%%`` and, for Exec lines, ``$`` becomes ``$$`` so neither expands.
    """
    if arg == ";":
        return "\\;"  # a bare ';' would separate two commands
    escaped = _escape(arg, dollar=dollar)
    if escaped and _SAFE.fullmatch(escaped):
        return escaped
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in escaped) + '"'


def _environment_line(name: str, value: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid environment variable name")
    return "Environment=" + quote_arg(f"{name}={value}", dollar=False)


def render_unit(
    *,
    home: str | os.PathLike[str],
    user: bool,
    exec_start: Sequence[str],
    watchdog_sec: int | None = 30,
    environment: Mapping[str, str] | None = None,
    timeout_stop_sec: int = 30,
    description: str = "batos supervisor (living image, ZEO, workers)",
    run_as: str | None = None,
) -> str:
    """The text of the unit that runs ``exec_start`` with ``BATOS_HOME=home``.

    ``user`` picks a user unit (``WantedBy=default.target``) or a system unit
    (``WantedBy=multi-user.target``; ``run_as`` then sets ``User=``).
    ``watchdog_sec=None`` (or 0) leaves the watchdog off. The first word of
    ``exec_start`` must be an absolute path.
    """
    if not exec_start:
        raise ConfigError("exec_start is empty: the unit needs a command to run")
    if not os.path.isabs(exec_start[0]):
        raise ConfigError(f"the unit must start an absolute path, not {exec_start[0]!r}")
    if user and run_as is not None:
        raise ConfigError("run_as (User=) only applies to system units")
    env = {"BATOS_HOME": os.fspath(home)}
    env.update(environment or {})

    service = [
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        *(_environment_line(k, v) for k, v in env.items()),
        "ExecStart=" + " ".join(quote_arg(a) for a in exec_start),
        "Restart=always",
        "RestartSec=2",
    ]
    if watchdog_sec:
        service.append(f"WatchdogSec={int(watchdog_sec)}")
    service += ["KillMode=mixed", f"TimeoutStopSec={int(timeout_stop_sec)}"]
    if run_as is not None:
        service.append(f"User={run_as}")

    lines = [
        "# Written by batos; override with `systemctl"
        + (" --user" if user else "") + " edit batos`.",
        "[Unit]",
        f"Description={_escape(description, dollar=False)}",
        "After=network.target",
        "",
        *service,
        "",
        "[Install]",
        "WantedBy=" + ("default.target" if user else "multi-user.target"),
    ]
    return "\n".join(lines) + "\n"


def default_unit_dir(user: bool) -> Path:
    """Where systemd looks for units the operator installs: per user or system-wide."""
    if not user:
        return Path("/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def install_unit(
    text: str,
    *,
    user: bool,
    unit_dir: Path | None = None,
    name: str = "batos.service",
) -> Path:
    """Write ``text`` as ``unit_dir/name`` (atomically, mode 0644); return its path."""
    if not _UNIT_NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a service unit name like 'batos.service'")
    directory = default_unit_dir(user) if unit_dir is None else Path(unit_dir)
    path = directory / name
    tmp = directory / f".{name}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        hint = "" if user else " (system units need root; or install a user unit)"
        raise ServiceInstallError(f"cannot write {path}: {exc.strerror or exc}{hint}") from exc
    return path


def enable_commands(user: bool, name: str = "batos.service") -> list[str]:
    """The shell commands that load, enable and start the installed unit."""
    systemctl = "systemctl --user" if user else "systemctl"
    commands = [f"{systemctl} daemon-reload", f"{systemctl} enable --now {name}"]
    if user:
        commands.append(
            "loginctl enable-linger $USER"
            "  # start it at boot and keep it running after you log out"
        )
    return commands
