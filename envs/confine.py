"""The process lock: a seccomp filter and rlimits a process puts on itself, for good.

``lock(...)`` is called by every process that runs image code (an incarnation, a
crucible trial worker) once it has started what it must start and before any image
code runs. From then on the process, ALL its threads (libseccomp's TSYNC attribute),
and anything it could still create, cannot:

* create processes or run programs: ``execve``/``execveat``, ``fork``/``vfork``,
  ``clone`` without ``CLONE_THREAD`` or with a namespace flag (threads still work);
  ``clone3`` answers ``ENOSYS``, so glibc falls back to ``clone``, whose flags a
  filter can read (``clone3`` passes them in memory a filter cannot see);
* reach other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``kcmp``,
  the pidfd calls, and any signal to a process other than itself (``kill``,
  ``tgkill``, ``rt_sigqueueinfo``); its children are signalled by the fork-server
  (``envs.spawner``) that started them;
* leave the process group and session its supervisor signals, or drop its death
  signal: ``setsid``, ``setpgid``, ``prctl(PR_SET_PDEATHSIG)``;
* hold memory its address-space limit does not count: ``memfd_create`` (a memfd's
  pages are not in ``RLIMIT_AS``; pipe buffers remain, bounded per pipe by
  ``/proc/sys/fs/pipe-max-size`` and in number by ``RLIMIT_NOFILE``: only a cgroup's
  ``memory.max`` would bound all of it);
* change its view of the system: ``mount`` and the new mount API, ``pivot_root``,
  ``chroot``, ``unshare``, ``setns``;
* reach the kernel's rarely needed, often exploited surface: modules, ``kexec``,
  ``bpf``, ``perf_event_open``, keyrings, ``userfaultfd``, ``io_uring``, ``reboot``,
  swap, ``acct``, the clocks, ``mknod``, ``iopl``, handles (``open_by_handle_at``),
  ``ioctl(TIOCSTI/TIOCLINUX)``, ``personality`` changes, ``prctl`` options that
  re-open the process to tracing or rewrite its memory map;
* open sockets of families other than ``AF_UNIX`` and, when ``network`` is true,
  ``AF_INET``/``AF_INET6`` (no netlink, no packet sockets, no vsock ...).

A denied call fails with ``EPERM`` (Python raises ``PermissionError``); the process
lives on. Calls from a foreign ABI (i386 ``int 0x80``, x32) kill the process.

Why a denylist on a default of ALLOW: an allowlist of the calls CPython, ZODB, ZEO,
ZMQ, glibc and their native extensions make changes with every version of each and
fails as a crash in production; what matters here is that no new program runs, no
process is reached, no namespace or mount changes and the kernel's large surfaces
stay shut. Files and network endpoints are the sandbox's job (``envs.sandbox``,
bubblewrap: read-only binds, no network namespace beyond what is granted); the two
layers hold independently.

rlimits: ``RLIMIT_CORE`` 0 always; ``RLIMIT_NOFILE`` at most 4096; ``RLIMIT_FSIZE``
(``file_size`` bytes per written file, ``FILE_SIZE`` when not given: the inquiry
loop's datasets are what a locked process legitimately writes; SIGXFSZ is ignored when
``lock`` runs on the main thread, so a write past it fails with ``EFBIG``);
``RLIMIT_AS`` (``memory_mb``: MiB of address space on top of what the process holds
when it locks, its ``VmSize``; None or 0: none) and ``RLIMIT_CPU`` (``cpu_seconds`` more
than used so far; SIGXCPU, then SIGKILL a second later) when given. Limits are only
ever lowered.

Memory: every process that runs image code gets the same headroom, live and in the
crucible's trial, so a payload cannot tell the two apart by what it may allocate:
``DEFAULT_MEMORY_MB`` unless ``BATOS_MEMORY_MB`` (``memory_budget()``; the supervisor's
``[sandbox] memory_mb``) says otherwise, 0 or ``off`` for none. An allocation past it
fails with ``MemoryError`` (the kernel answers the message ``BudgetExceeded``). With a
memory limit, ``lock`` first caps glibc's malloc arenas (``mallopt(M_ARENA_MAX, 2)``;
``MALLOC_ARENA_MAX`` in the environment does the same from the start): each thread's
arena reserves 64 MiB of address space, which would eat the headroom of a process with
worker threads without holding any memory. A process that starts threads and storage
after its lock locks with a ``memory_reserve_mb`` for them and calls
``settle_memory()`` once it serves: the headroom is then over the serving process, as
it is over the trial worker when a trial begins.

``lock(children=True)`` is the lighter lock for a process that must still start
programs (a training run: the ML stack forks and execs helpers): process creation,
``kill`` of others (inside its sandbox's pid namespace) and ``memfd_create`` stay
allowed; everything else above is denied, and the filter is inherited across
``execve`` (no_new_privs), so what it runs is held by it too.

``unavailable()`` names what is missing (libseccomp or pyseccomp not loadable, a
kernel without seccomp filters), or answers None. Boundary: stdlib and pyseccomp
only; nothing of batos beyond ``envs.errors``. A lock cannot be undone: call it only
in a process that is meant to stay locked.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import sys
import threading
from typing import Any

from envs.errors import ConfinementUnavailable

__all__ = ["ARENA_MAX", "DEFAULT_MEMORY_MB", "DENIED", "FILE_SIZE", "MEMORY_CALLS",
           "MEMORY_VARIABLE", "PROCESS_CALLS", "limit_arenas", "lock", "locked",
           "memory_budget", "settle_memory", "unavailable"]

# Unconditionally denied (EPERM). Names the running kernel's arch lacks are skipped.
DENIED: tuple[str, ...] = (
    # processes and programs
    "execve", "execveat", "fork", "vfork",
    # other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "process_madvise",
    "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    # mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    # the kernel's surface
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "query_module", "get_kernel_syms", "bpf", "perf_event_open",
    "keyctl", "add_key", "request_key", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "reboot", "swapon", "swapoff", "acct", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex", "mknod", "mknodat", "iopl", "ioperm",
    "modify_ldt", "open_by_handle_at", "name_to_handle_at", "syslog", "quotactl",
    "quotactl_fd", "sethostname", "setdomainname", "vhangup", "uselib", "lookup_dcookie",
    "nfsservctl", "fanotify_init", "migrate_pages", "move_pages",
    # the process group and session the supervisor signals
    "setsid", "setpgid",
)
# Denied unless ``children`` (a process that may start programs)
PROCESS_CALLS: tuple[str, ...] = ("execve", "execveat", "fork", "vfork")
MEMORY_CALLS: tuple[str, ...] = ("memfd_create", "memfd_secret")
FILE_SIZE = 1 << 30  # RLIMIT_FSIZE when lock() is not given one
#: MiB of address space a process running image code may add after its lock, live and in
#: the trial alike (``memory_budget``)
DEFAULT_MEMORY_MB = 352
MEMORY_VARIABLE = "BATOS_MEMORY_MB"
MEMORY_MIN_MB = 64
#: glibc malloc arenas in a memory-limited process (also its MALLOC_ARENA_MAX)
ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)

_CLONE_THREAD = 0x00010000
_CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                     0x20000000, 0x40000000)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C
_PRCTL_DENIED = {"PR_SET_PDEATHSIG": 1, "PR_SET_DUMPABLE": 4, "PR_SET_SECUREBITS": 28,
                 "PR_SET_MM": 35, "PR_SET_PTRACER": 0x59616D61}
_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
_NOFILE_MAX = 4096
_U32 = 0xFFFFFFFF

_state_lock = threading.Lock()
_applied: dict[str, Any] | None = None


def unavailable() -> str | None:
    """Why ``lock`` cannot work here, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"seccomp is Linux-only (this is {sys.platform})"
    try:
        import pyseccomp  # noqa: F401 - loads libseccomp through ctypes
    except ImportError:
        return "pyseccomp is not installed (pip install pyseccomp)"
    except (OSError, RuntimeError) as exc:
        return f"libseccomp cannot be loaded ({exc}); install the libseccomp2 package"
    try:
        with open("/proc/self/status") as status:
            if not any(line.startswith("Seccomp:") for line in status):
                return "this kernel has no seccomp support (no Seccomp: line in /proc/self/status)"
    except OSError as exc:
        return f"cannot read /proc/self/status to check for seccomp: {exc}"
    return None


def locked() -> dict[str, Any] | None:
    """What ``lock`` applied in this process (its return value), or None."""
    return _applied


def memory_budget(value: str | int | None = None) -> int | None:
    """The memory headroom in MiB, or None for none: ``value`` (an int, or text as in
    ``BATOS_MEMORY_MB``), else that variable, else ``DEFAULT_MEMORY_MB``; 0 or ``off``
    is none. Raises ``ValueError`` naming the value when it is not one of those or is
    under ``MEMORY_MIN_MB``."""
    if value is None:
        value = os.environ.get(MEMORY_VARIABLE, "").strip() or DEFAULT_MEMORY_MB
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "off":
            return None
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"the memory budget ({MEMORY_VARIABLE}) must be MiB (an "
                             f"integer), 0 or 'off', not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (
            0 < value < MEMORY_MIN_MB):
        raise ValueError(f"the memory budget must be 0 (none) or at least {MEMORY_MIN_MB} "
                         f"MiB, not {value!r}")
    return value or None


def limit_arenas(count: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``count`` (module docstring); False where this is
    not glibc. Arenas made before stay; call it before threads start allocating."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(count)))
    except (OSError, AttributeError):
        return False


def _vm_size() -> int:
    """This process's address space now (``VmSize``), bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise ConfinementUnavailable("cannot confine the process: no VmSize in /proc/self/status")


def _check(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, not {value!r}")
    return value


def _build(network: bool, children: bool = False) -> tuple[Any, list[str]]:
    """The filter, every rule added (nothing loaded yet), and the names skipped."""
    import pyseccomp as sc

    eperm = sc.ERRNO(errno.EPERM)
    me = os.getpid()
    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread of the process, now
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # i386 / x32 entry points
    skipped: list[str] = []

    def rule(action: int, name: str, *args: Any) -> None:
        try:
            flt.add_rule(action, name, *args)
        except (OSError, ValueError, RuntimeError):
            # a call this arch does not have (libseccomp knows every arch's names, but
            # not every name exists everywhere): nothing to deny
            skipped.append(name)

    for name in _denied(children):
        rule(eperm, name)
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if not children:
        rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    for flag in _CLONE_NAMESPACES:
        rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if not children:
        # signals: to itself only (64-bit compares; anything but exactly our pid is denied)
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            rule(eperm, name, sc.Arg(0, sc.GT, me))
            rule(eperm, name, sc.Arg(0, sc.LT, me))
        rule(eperm, "tkill")  # obsolete; glibc uses tgkill
    for request in (_TIOCSTI, _TIOCLINUX):
        rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, _U32, request))
    for option in _PRCTL_DENIED.values():
        rule(eperm, "prctl", sc.Arg(0, sc.MASKED_EQ, _U32, option))
    rule(eperm, "personality", sc.Arg(0, sc.NE, _U32))  # 0xffffffff only queries
    # socket families: AF_UNIX (1), and AF_INET (2) / AF_INET6 (10) with the network.
    # A value with any of the upper 32 bits set is >= 11 and so denied.
    allowed = {_AF_UNIX} | ({_AF_INET, _AF_INET6} if network else set())
    for name in ("socket", "socketpair"):
        for family in range(11):
            if family not in allowed:
                rule(eperm, name, sc.Arg(0, sc.EQ, family))
        rule(eperm, name, sc.Arg(0, sc.GE, 11))
    return flt, skipped


def _denied(children: bool) -> tuple[str, ...]:
    if children:
        return tuple(n for n in DENIED if n not in PROCESS_CALLS)
    return DENIED + MEMORY_CALLS


def _lower(which: int, soft: int, hard: int | None = None) -> dict[str, int]:
    """Set ``which`` to at most ``soft``/``hard`` (never raised); the limits now in force."""
    cur_soft, cur_hard = resource.getrlimit(which)
    inf = resource.RLIM_INFINITY
    hard = soft if hard is None else hard
    new_hard = hard if cur_hard == inf else min(cur_hard, hard)
    new_soft = min(soft, new_hard) if cur_soft == inf else min(cur_soft, soft, new_hard)
    resource.setrlimit(which, (new_soft, new_hard))
    return {"soft": new_soft, "hard": new_hard}


def settle_memory(pending: int = 0) -> dict[str, Any] | None:
    """Lower the address-space limit to what this process holds now plus its headroom
    (``lock``'s ``memory_mb``), never raising it: for a process that starts its threads,
    libraries and storage after the lock (an incarnation, locked with a start-up
    ``memory_reserve_mb``), so that what a message may allocate is the headroom over
    the serving process, as in the trial worker. ``pending``: bytes it will map without
    any message asking (threads it starts lazily), counted as held. None when no memory
    limit is in force."""
    with _state_lock:
        current = (_applied or {}).get("rlimits", {}).get("as")
        if not current:
            return None
        held = _vm_size() + max(0, int(pending))
        limits = _lower(resource.RLIMIT_AS, held + (current["headroom_mb"] << 20))
        current.update(limits, held=held, settled=True)
        return dict(current)


def lock(*, memory_mb: int | None = None, cpu_seconds: int | None = None,
         file_size: int | None = None, network: bool = True,
         children: bool = False, memory_reserve_mb: int = 0) -> dict[str, Any]:
    """Confine this whole process for good (module docstring); answers what was applied.

    Raises ``ConfinementUnavailable`` (nothing applied) when a mechanism is missing or
    the kernel refuses the filter; ``ValueError`` for a limit that is not a
    non-negative integer.
    """
    global _applied
    memory_mb = _check("memory_mb", memory_mb)
    memory_reserve_mb = _check("memory_reserve_mb", memory_reserve_mb) or 0
    cpu_seconds = _check("cpu_seconds", cpu_seconds)
    file_size = _check("file_size", file_size)
    reason = unavailable()
    if reason is not None:
        raise ConfinementUnavailable(f"cannot confine the process: {reason}")
    import pyseccomp as sc

    with _state_lock:
        held = _vm_size() if memory_mb else 0  # before anything is applied
        try:
            flt, skipped = _build(bool(network), bool(children))
            flt.load()
        except OSError as exc:
            raise ConfinementUnavailable(
                f"cannot confine the process: the kernel refused the seccomp filter "
                f"({exc.strerror or exc})") from exc
        limits: dict[str, Any] = {"core": _lower(resource.RLIMIT_CORE, 0)}
        limits["nofile"] = _lower(resource.RLIMIT_NOFILE, _NOFILE_MAX)
        if memory_mb:
            arenas = limit_arenas()
            limits["as"] = _lower(resource.RLIMIT_AS,
                                  held + ((memory_mb + memory_reserve_mb) << 20))
            limits["as"].update(headroom_mb=memory_mb, reserve_mb=memory_reserve_mb, held=held,
                                arenas_capped=arenas)
        if cpu_seconds is not None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            soft = int(usage.ru_utime + usage.ru_stime) + cpu_seconds + 1
            limits["cpu"] = _lower(resource.RLIMIT_CPU, soft, soft + 1)
        limits["fsize"] = _lower(resource.RLIMIT_FSIZE,
                                 FILE_SIZE if file_size is None else file_size)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a death
        applied = {
            "seccomp": True,
            "libseccomp_api": sc.get_api(),
            "denied": sorted(set(_denied(bool(children))) - set(skipped)) + (
                ["prctl(PR_SET_PDEATHSIG)", "socket(other families)"]
                + ([] if children else ["clone(fork)", "kill(others)"])),
            "children": bool(children),
            "enosys": ["clone3"],
            "network": bool(network),
            "threads": threading.active_count(),
            "rlimits": limits,
            "pid": os.getpid(),
        }
        previous = _applied
        applied["layers"] = (previous or {}).get("layers", 0) + 1
        _applied = applied
        return applied
