"""The OS sandbox: a bubblewrap command line that shows a process only what it was granted.

Every process that runs image code (an incarnation, a crucible trial worker started
outside one) is started through ``wrap(argv, python=..., ...)``: bubblewrap (Debian
``bubblewrap``) puts it in new user, pid, network, ipc, uts and cgroup namespaces and a
new mount namespace whose file tree is an ALLOWLIST built here, never the host's root:

* read-only: the system folders (``/usr``, ``/bin``, ``/sbin``, ``/lib*``; merged-usr
  links recreated as links), the few ``/etc`` files glibc, Python and TLS read
  (``_ETC``: no ``shadow``, no ``ssh``, no ``ssl/private``), the interpreter (its
  prefix; for a venv the venv and its base from ``pyvenv.cfg``'s ``home``; for the
  running interpreter ``sys.base_prefix``/``sys.prefix``), its site-packages and the
  absolute folders its ``.pth`` files name, and what the caller grants ``read_only``;
* read-write: only what the caller grants ``read_write``;
* private: ``/proc`` of its own pid namespace, a minimal ``/dev`` (read-only, with a
  small ``/dev/shm``), a small tmpfs ``/tmp``; the root itself is read-only.

No network unless ``network=True`` (then the host's: bubblewrap cannot filter it; the
process lock in ``envs.confine`` limits socket families). Unix sockets are files, so
granting their folder is how a sandboxed process reaches its ZEO server and backend.
No capabilities (``--cap-drop ALL``), no new user namespaces inside
(``--disable-userns``), cwd ``/``, and an environment cleared to what the caller
passes plus ``PATH``, ``LANG``, ``HOME=/tmp`` and ``BATOS_SANDBOX=bwrap``.

Process control (the supervisor signals process groups, ``supervisor.process``): the
command stays in its caller's process group (no ``--new-session``; the process lock
refuses ``TIOCSTI`` instead) and dies with the process that started bwrap
(``--die-with-parent``; that is PR_SET_PDEATHSIG, tied to the starting THREAD: start
wrapped children from a thread that outlives them). bubblewrap itself would die of a
SIGTERM at once and take the command with it (SIGKILL), so it runs under
``env --ignore-signal=TERM`` and the command under ``env --default-signal=TERM``: a
group SIGTERM is a graceful stop of the command, a group SIGKILL kills all of it.
bubblewrap exits with the command's status, 128+N for a command killed by signal N:
``exit_status`` turns that back into -N. Inside, the command is pid 2 of its own
namespace; ``command_pid`` finds its host pid.

Boundary: stdlib only; builds argument lists and probes ``bwrap`` once per process
(``available``); it never starts the sandboxed command itself and imports nothing of
batos beyond ``envs.errors``.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from envs.errors import InvalidGrant, SandboxUnavailable

__all__ = ["MARKER", "TMP_BYTES", "available", "command_pid", "exit_status", "python_paths",
           "wrap"]

#: set in every sandboxed process's environment (``BATOS_SANDBOX=bwrap``)
MARKER = "BATOS_SANDBOX"
#: size of the private /tmp and of /dev/shm
TMP_BYTES = 64 * 1024 * 1024
_SHM_BYTES = 16 * 1024 * 1024
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# What glibc (loader, NSS, resolver, time zone), Python (mimetypes) and OpenSSL read.
_ETC = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd", "group",
    "nsswitch.conf", "host.conf", "hosts", "resolv.conf", "gai.conf", "mime.types",
    "ssl/certs", "ssl/openssl.cnf", "pki/tls/certs", "pki/ca-trust/extracted", "alternatives",
)
_PATH = "/usr/local/bin:/usr/bin:/bin"


def _env_binary() -> str:
    return shutil.which("env", path=_PATH) or "/usr/bin/env"


def _system_args() -> list[str]:
    args: list[str] = []
    for top in _SYSTEM:
        path = Path(top)
        if path.is_symlink():  # merged /usr: /lib -> usr/lib
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _base_args() -> list[str]:
    """Everything but the interpreter, the grants and the environment."""
    return [
        "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
        "--cap-drop", "ALL", "--chdir", "/",
        *_system_args(),
        "--dev", "/dev", "--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm",
        "--remount-ro", "/dev", "--proc", "/proc", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
    ]


@functools.cache
def available() -> str | None:
    """None when bubblewrap works here with this profile; else why not (probed once)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap not found: install bubblewrap (apt-get install bubblewrap)"
    env = _env_binary()
    argv = [env, "--ignore-signal=TERM", bwrap, *_base_args(), "--clearenv",
            "--remount-ro", "/", env, "--default-signal=TERM", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not run here: {exc}"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return (f"bwrap cannot make the sandbox here ({detail[0]}): user namespaces must be "
                "allowed (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)")
    return None


def _venv_of(python: Path) -> Path | None:
    root = python.parent.parent
    return root if (root / "pyvenv.cfg").is_file() else None


def _venv_home(venv: Path) -> Path | None:
    for line in (venv / "pyvenv.cfg").read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home" and value.strip():
            return Path(value.strip())
    return None


def _site_dirs(prefix: Path) -> list[Path]:
    return sorted(p for p in prefix.glob("lib*/python3*/site-packages") if p.is_dir())


def _pth_dirs(site_dir: Path) -> list[Path]:
    """Absolute folders a site folder's ``.pth`` files add to sys.path (editable installs)."""
    found: list[Path] = []
    for pth in sorted(site_dir.glob("*.pth")):
        try:
            lines = pth.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if line.startswith("/") and not line.startswith("import") and Path(line).is_dir():
                found.append(Path(line))
    return found


def python_paths(python: str | os.PathLike[str]) -> list[Path]:
    """The folders ``python`` needs to run, all read-only: its prefix (a venv and the base
    interpreter's prefix from ``pyvenv.cfg``, or the running interpreter's prefixes), its
    site-packages and the folders their ``.pth`` files name."""
    given = Path(python)
    if not given.is_absolute():
        found = shutil.which(str(given))
        if found is None:
            raise InvalidGrant(f"the interpreter {python} is not an absolute path or on PATH")
        given = Path(found)
    if not given.exists():
        raise InvalidGrant(f"the interpreter {given} does not exist")
    real = given.resolve()
    prefixes: list[Path] = [real.parent.parent]
    sites: list[Path] = []
    venv = _venv_of(given) or _venv_of(real)
    if venv is not None:
        prefixes.append(venv)
        sites += _site_dirs(venv)
        home = _venv_home(venv)
        if home is not None:
            base = home.resolve().parent
            prefixes.append(base)
            sites += _site_dirs(base)
    if real == Path(sys.executable).resolve():
        prefixes += [Path(sys.base_prefix), Path(sys.prefix)]
        sites += [Path(p) for p in site.getsitepackages()]
        user = Path(site.getusersitepackages())
        if site.ENABLE_USER_SITE and str(user) in sys.path:
            sites.append(user)
    sites = [s for s in sites if s.is_dir()]
    paths = [*prefixes, *sites]
    for site_dir in sites:
        paths += _pth_dirs(site_dir)
    return _unique([p.resolve() for p in paths if p.exists()])


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(path, None)
    return list(seen)


def _grant(path: str | os.PathLike[str], kind: str) -> Path:
    given = Path(path)
    if not given.is_absolute():
        raise InvalidGrant(f"{kind} grant {path!r} is not an absolute path")
    if not given.exists():
        raise InvalidGrant(f"{kind} grant {given} does not exist (grant only what is there)")
    if given == Path("/"):
        raise InvalidGrant(f"{kind} grant of / is the whole host, not a sandbox")
    return given


def _covered(path: Path, by: Iterable[Path]) -> bool:
    return any(path == other or path.is_relative_to(other) for other in by)


def _binds(python: Path | str, read_only: Iterable[str | os.PathLike[str]],
           read_write: Iterable[str | os.PathLike[str]]) -> list[str]:
    """``--ro-bind``/``--bind`` pairs, parents before children (bwrap mounts in order)."""
    system = [Path(p) for p in _SYSTEM if Path(p).is_dir() and not Path(p).is_symlink()]
    writable = _unique(_grant(p, "read-write") for p in read_write)
    readable = _unique([*python_paths(python), *(_grant(p, "read-only") for p in read_only)])
    mounts: list[tuple[Path, str]] = []
    for path in readable:
        if not _covered(path, writable) and (
                _covered(path, system) or _covered(path, [p for p in readable if p != path])):
            continue  # already visible read-only through a folder above it
        mounts.append((path, "--ro-bind"))
    mounts += [(path, "--bind") for path in writable]
    # shorter paths first, so a grant inside another lands on top of it; at one path
    # the read-write grant wins (it comes last)
    mounts.sort(key=lambda m: (len(m[0].parts), str(m[0]), m[1] == "--bind"))
    args: list[str] = []
    for path, flag in mounts:
        args += [flag, str(path), str(path)]
    return args


def _environment(env: Mapping[str, str] | None) -> list[str]:
    values = {"PATH": _PATH, "LANG": "C.UTF-8", "HOME": "/tmp"}
    for name, value in (env or {}).items():
        if not name or "=" in name or "\0" in name or "\0" in str(value):
            raise InvalidGrant(f"environment variable {name!r} is not a valid name=value")
        values[name] = str(value)
    values[MARKER] = "bwrap"
    args = ["--clearenv"]
    for name, value in values.items():
        args += ["--setenv", name, value]
    return args


def wrap(argv: Sequence[str], *, python: str | os.PathLike[str],
         read_only: Iterable[str | os.PathLike[str]] = (),
         read_write: Iterable[str | os.PathLike[str]] = (),
         network: bool = False, env: Mapping[str, str] | None = None) -> list[str]:
    """The command line that runs ``argv`` in the sandbox (see the module docstring).

    ``python`` is the interpreter ``argv`` runs (its folders are bound for you);
    ``read_only``/``read_write`` are existing absolute paths, visible inside at the same
    path; ``env`` is the WHOLE environment the command gets (plus the basics).
    Raises ``SandboxUnavailable`` when bubblewrap does not work here, ``InvalidGrant``
    for a grant that is not an existing absolute path.
    """
    if not argv:
        raise InvalidGrant("nothing to run: argv is empty")
    reason = available()
    if reason is not None:
        raise SandboxUnavailable(reason)
    bwrap = shutil.which("bwrap") or "bwrap"
    env_binary = _env_binary()
    args = [env_binary, "--ignore-signal=TERM", bwrap, *_base_args()]
    if network:
        args.insert(args.index("--unshare-all") + 1, "--share-net")
    args += _binds(python, read_only, read_write)
    args += ["--remount-ro", "/", *_environment(env), "--"]
    return [*args, env_binary, "--default-signal=TERM", *argv]


def exit_status(code: int | None) -> int | None:
    """bubblewrap's exit status as the command's: 128+N (killed by signal N) becomes -N."""
    if code is not None and 128 < code < 128 + 65:
        return -(code - 128)
    return code


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except (OSError, ValueError):
        pass
    found = []  # kernels without CONFIG_PROC_CHILDREN: scan every process's parent
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def _ns_pids(pid: int) -> list[str]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return line.split()[1:]
    except OSError:
        pass
    return []


def command_pid(bwrap_pid: int) -> int | None:
    """The host pid of the command a ``wrap``-ped bwrap (``bwrap_pid``) runs, None if it
    is not (or no longer) running: the process that is pid 2 in the sandbox's pid
    namespace, child of the namespace's init (bwrap's pid 1)."""
    for init in _children(bwrap_pid):
        if _ns_pids(init)[-1:] != ["1"]:
            continue
        for child in _children(init):
            if _ns_pids(child)[-1:] == ["2"]:
                return child
    return None
