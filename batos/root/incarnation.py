"""The incarnation process: the disposable process that serves the image for the supervisor.

Run by the supervisor inside an environment built by ``envs``::

    python -m batos.root.incarnation --backend ipc://.../be.sock --zeo .../zeo.sock \
        --id inc-3 --env-id 4f2a... [--workers 4] [--heartbeat 1.0]

This is where an incarnation is put together (the composition root, ``batos.root``):
the serving itself is ``uvm.incarnation.Incarnation`` (the backend protocol, the
kernel, heartbeats, validation), handed what it serves with: the mind
(``batos.root.mind``: ``BATOS_MIND_CONFIG`` or ``BATOS_MIND_*`` in the environment;
none configured, doesNotUnderstand: answers ``NoMind``), the inquiry loop
(``batos.root.inquiry``, when ``BATOS_INQUIRY_CONFIG`` names a base model and a vLLM
server), the fork-server and what the lock applied. Methods may import the top-level
modules of the env spec's packages (``--packages``; ``uvm.allowlist``). ``Stop`` or
SIGTERM stops taking requests, lets those in flight finish, says ``Bye`` and exits 0.

Confinement (docs/design.md, issue 11): ``main`` first starts the fork-server
(``envs.spawner``: the only way this process starts children afterwards, from a fixed
table: crucible trial workers, the inquiry loop's training runs), then locks the whole
process (``envs.confine.lock``: no exec, no fork, no signals to others, no namespaces
or mounts, the kernel's dangerous surface shut, rlimits: ``--memory-mb`` MiB of
headroom, the same as its trial workers get, ``envs.confine.memory_budget``;
``--cpu-seconds``), all before asyncio, ZMQ or ZODB start a thread and before any
image code (bootstrap included) runs. ``Ready`` carries what was applied
(``confinement``). A missing mechanism ends the start with exit status 3 and the
reason; ``--unconfined`` (the operator's ``batos up --unconfined``) skips both, with a
warning in the log, and its trial workers run unlocked too: the trial is always the
live path.

Imports: ``crucible`` (the trial workers' command) and the inquiry loop's training
stack load only when the environment configures a mind or an inquiry loop; what this
process imports before its lock is what it holds for its whole life.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from uvm.budget_link import add_budget_arguments, limits_from_args
from uvm.incarnation import Incarnation
from uvm.kernel import Kernel

from .mind import build_mind, close_mind, table_from_env

__all__ = ["STARTUP_MEMORY_MB", "confine_process", "inquiry_starter", "main"]

log = logging.getLogger("batos.incarnation")

_UNCONFINED_WARNING = (
    "RUNNING UNCONFINED (--unconfined): no process lock, no fork-server; image code runs with "
    "this process's full power over files, processes and the network")

#: address space the process may take between its lock and serving (threads, ZMQ, the
#: storage's cache) beyond the memory budget; then ``envs.confine.settle_memory``
STARTUP_MEMORY_MB = 512


def _inquiry_home(table: dict[str, Any], image: str | None) -> str:
    """Where the inquiry loop keeps its folders (its training envs under ``train-envs``)."""
    return str(table.get("home") or (os.path.dirname(image) if image else "."))


def inquiry_starter(image: str | None, spawner: Any) -> Callable[[Kernel, Callable[..., Any]], Any]:
    """What the incarnation calls (in a thread) to start the Characterological Inquiry
    Loop on its kernel: the loop's handle, or None when ``BATOS_INQUIRY_CONFIG`` names no
    base model and vLLM server (the supervisor's ``[inquiry]`` and ``[vllm]`` tables)."""

    def start(kernel: Kernel, publish: Callable[..., Any]) -> Any:
        table = table_from_env("BATOS_INQUIRY_CONFIG")
        base, url = table.get("base_model"), table.get("vllm_url")
        if not (base and url):
            log.info("inquiry loop: off (no base_model and vllm_url in BATOS_INQUIRY_CONFIG)")
            return None
        from .inquiry import start_inquiry  # the training stack's runtime, only when used

        home = _inquiry_home(table, image)
        rest = {k: v for k, v in table.items() if k not in ("base_model", "vllm_url", "home")}
        log.info("inquiry loop: watching (base %s, server %s)", base, url)
        return start_inquiry(kernel, publish=publish, home=home, base_model=base,
                             vllm_url=url, table=rest, spawner=spawner)

    return start


def _needs_network(backend: str, zeo: str) -> bool:
    """Whether this process talks TCP: a TCP storage or backend, or a mind or inquiry
    server named by URL (the lock then allows AF_INET/AF_INET6 sockets)."""
    if not zeo.startswith("/") or not backend.startswith("ipc://"):
        return True
    mind = table_from_env("BATOS_MIND_CONFIG")
    inquiry = table_from_env("BATOS_INQUIRY_CONFIG")
    return bool(mind.get("base_url") or os.environ.get("BATOS_MIND_URL", "").strip()
                or inquiry.get("vllm_url"))


def _mind_configured() -> bool:
    return bool(table_from_env("BATOS_MIND_CONFIG")) or any(
        os.environ.get(f"BATOS_MIND_{name}", "").strip()
        for name in ("URL", "LOCAL", "REPLAY", "RECORD"))


def confine_process(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Start the fork-server, then lock this process (module docstring): (spawner, applied).

    Must run before any thread or image code. Raises ``ConfinementUnavailable`` or
    ``SpawnerUnavailable`` (``envs.errors``) with the reason; nothing is locked then.
    """
    from envs.confine import ARENA_MAX, MEMORY_VARIABLE, lock, memory_budget, unavailable
    from envs.errors import ConfinementUnavailable
    from envs.spawner import Spawner

    reason = unavailable()
    if reason is not None:
        raise ConfinementUnavailable(reason)
    try:
        memory_mb = memory_budget(args.memory_mb)
    except ValueError as exc:
        raise ConfinementUnavailable(str(exc)) from None
    # the trial workers this process starts read the same budget (crucible.trial_worker)
    os.environ[MEMORY_VARIABLE] = str(memory_mb or 0)
    os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENA_MAX))
    network = _needs_network(args.backend, args.zeo) if args.network == "auto" else (
        args.network == "on")
    table = []
    if _mind_configured():  # trial workers exist only with a mind (crucible: its import costs)
        from crucible.trial import worker_command

        table.append(worker_command(network=network))
    inquiry = table_from_env("BATOS_INQUIRY_CONFIG")
    if inquiry.get("base_model") and inquiry.get("vllm_url"):
        from weaver.train_env import default_root, spawner_command

        home = _inquiry_home(inquiry, args.image)
        table.append(spawner_command(default_root(home), base=inquiry["base_model"], work=home))
    if not table:  # nothing this incarnation will ever start: no fork-server at all
        return None, lock(memory_mb=memory_mb, memory_reserve_mb=STARTUP_MEMORY_MB,
                          cpu_seconds=args.cpu_seconds, network=network)
    spawner = Spawner.start(table)
    try:
        applied = lock(memory_mb=memory_mb, memory_reserve_mb=STARTUP_MEMORY_MB,
                       cpu_seconds=args.cpu_seconds, network=network)
    except BaseException:
        spawner.close()
        raise
    return spawner, applied


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m batos.root.incarnation")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--zeo", required=True)
    parser.add_argument("--id", required=True, dest="ident")
    parser.add_argument("--env-id", default="current")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--image", help="the image file, read directly (read-only) by validation")
    parser.add_argument("--packages", default="",
                        help="comma-separated distributions of the env spec (their modules may be imported by methods)")
    parser.add_argument("--unconfined", action="store_true",
                        help="no fork-server and no process lock (batos up --unconfined only)")
    parser.add_argument("--memory-mb", default=None,
                        help="MiB of address space the process may add after its lock "
                             "(RLIMIT_AS); 0 or off: none; default BATOS_MEMORY_MB, else "
                             "envs.confine.DEFAULT_MEMORY_MB")
    parser.add_argument("--cpu-seconds", type=int, default=None,
                        help="the process lock's CPU limit over the process's life (RLIMIT_CPU)")
    parser.add_argument("--network", choices=("auto", "on", "off"), default="auto",
                        help="TCP sockets after the lock (auto: when the storage, backend, "
                             "mind or inquiry server is reached over TCP)")
    add_budget_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    budget = limits_from_args(args, export=True)  # before the fork-server: trials inherit it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s incarnation %(levelname)s %(message)s")
    spawner, applied = None, None
    if args.unconfined:
        log.warning(_UNCONFINED_WARNING)
    else:
        from envs.errors import EnvError

        began = time.perf_counter()
        try:
            spawner, applied = confine_process(args)
            applied["setup_ms"] = round((time.perf_counter() - began) * 1000, 1)
        except EnvError as exc:
            log.error("cannot start confined: %s (the operator may run `batos up --unconfined`)",
                      exc)
            print(f"incarnation {args.ident}: cannot start confined: {exc}", file=sys.stderr)
            return 3
        log.info("confined in %.1f ms: seccomp lock (%d calls denied, network %s), "
                 "fork-server %s", applied["setup_ms"],
                 len(applied["denied"]), "on" if applied["network"] else "off",
                 f"pid {spawner.server_pid}" if spawner is not None else
                 "not needed (no mind, no inquiry: this process starts no child)")
    packages = [p for p in args.packages.split(",") if p]
    incarnation = Incarnation(
        backend=args.backend, zeo=args.zeo, ident=args.ident, env_id=args.env_id,
        workers=args.workers, heartbeat=args.heartbeat, packages=packages, image=args.image,
        spawner=spawner, confinement=applied,
        mind=functools.partial(build_mind, zeo=args.zeo, packages=packages, spawner=spawner,
                               confine=applied is not None),
        close_mind=close_mind, start_inquiry=inquiry_starter(args.image, spawner))
    incarnation.budget = budget

    async def run() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, incarnation.stop)
        return await incarnation.run()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
