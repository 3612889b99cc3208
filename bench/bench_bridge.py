"""Benchmark the bridge and the supervisor against raw baselines measured in the same run.

Round trips client -> supervisor -> incarnation -> reply through ``batos up`` (temporary
home, ``--env-mode current``, default config), sequential and with ``WINDOW`` requests
outstanding on one DEALER, each with a fresh uuid4 id as ``bridge.Client`` sends them.
Read-only: ``genesis name`` (a data slot). Writing: ``bump`` (``n = n + 1``) on one hot
object (concurrent workers conflict and retry) and spread over ``SPREAD`` clones.
Baselines (``bridge_baselines``): a raw ZMQ 3-hop echo in the same process layout (client
DEALER -> broker process, ROUTER front and back -> worker process DEALER) fed the same
encoded frames; the same layout whose worker reads one attribute in a ZODB transaction over
its own ``runzeo`` (the echo-with-ZODB-read); raw ZEO commits of ``n = n + 1`` on a
FileStorage behind its own ``runzeo``, sequential and from ``ZEO_THREADS`` threads (own
connection and transaction manager each, separate objects). Every ZEO server is
``runzeo`` on a Unix socket over a FileStorage, as the supervisor runs it. Cases alternate
within each round; rates are best and median of the rounds, latencies pool them; CPU is
the user+system time per message of each process on the path (client, broker or
supervisor, worker or incarnation, ZEO), read with psutil around each case (the
supervisor's incarnations and ZEO are found among its descendants each time). The tables
and issue 14's targets: ``bridge_report``. Run ``python bench/bench_bridge.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ormsgpack
import psutil
import transaction
import zmq
from bridge_baselines import (
    ZODB_ECHO_ATTRIBUTE,
    ZODB_ECHO_ROOT,
    Result,
    echo_broker,
    echo_worker,
    server_sync_param,
    zeo_commits,
    zodb_worker,
)
from bridge_report import WINDOW, ZEO_THREADS, Runs, report

from bridge import Client
from bridge.codec import decode_reply, encode
from bridge.errors import BridgeError
from bridge.messages import SendRequest
from envs.children import stop
from uvm import UvmObject, open_db

SPREAD = 8
WAIT_MS = 30_000  # every receive has a timeout; a write under conflicts can take a while
BUMP = "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"
Maker = Callable[[int], tuple[str, bytes]]
Roles = dict[str, list[int]]  # role (bridge_report.ROLES) -> pids
Cases = dict[str, tuple[Callable[[float], Result], Callable[[], Roles]]]  # name -> (run, path)
KEYS: dict[str, Callable[[bytes], tuple[str, bool]]] = {  # reply -> (request id, ok)
    "echo": lambda frame: (ormsgpack.unpackb(frame)["id"], True),
    "echo zodb": lambda frame: (ormsgpack.unpackb(frame)["id"], True),
    "batos": lambda frame: ((reply := decode_reply(frame)).id, reply.ok),
}


def machine() -> list[str]:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    return [
        f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"platform: {platform.platform()}",
        f"cpu:      {cpu}; {os.cpu_count()} logical cores ({len(psutil.Process().cpu_affinity())} "
        f"usable); load average {os.getloadavg()[0]:.2f} at start",
        f"python:   {sys.version.split()[0]}; pyzmq {zmq.__version__} (libzmq "
        f"{zmq.zmq_version()}), ZODB {version('ZODB')}, ZEO {version('ZEO')}, "
        f"pydantic {version('pydantic')}",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout:.0f}s")
        time.sleep(0.05)  # polling a condition with a deadline


def request_maker(targets: list[str], selector: str) -> Maker:
    def make(i: int) -> tuple[str, bytes]:
        rid = str(uuid.uuid4())
        return rid, encode(SendRequest(id=rid, target=targets[i % len(targets)], selector=selector))

    return make


def run_window(sock: zmq.Socket[bytes], make: Maker, key: Callable[[bytes], tuple[str, bool]],
               window: int, seconds: float) -> Result:
    """Keep ``window`` requests outstanding for ``seconds``, then wait for the rest."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    errors = count = 0
    start = time.perf_counter()
    while True:
        while len(sent) < window and time.perf_counter() < start + seconds:
            rid, frame = make(count)
            count += 1
            sent[rid] = time.perf_counter()
            sock.send(frame)
        if not sent:
            return len(latencies), time.perf_counter() - start, latencies, errors
        if not sock.poll(WAIT_MS, zmq.POLLIN):
            raise RuntimeError(f"no reply within {WAIT_MS / 1000:g}s ({len(sent)} outstanding)")
        rid, ok = key(sock.recv())
        t0 = sent.pop(rid, None)
        if t0 is not None:  # else a late answer to a probe
            latencies.append(time.perf_counter() - t0)
            errors += not ok


def spawn_child(stack: contextlib.ExitStack, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack.callback(stop_process, proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the process alone (a supervisor stops its own children), up to ``grace``
    seconds, then SIGKILL: ``envs.children.stop``, the one stop of every layer."""
    stop(proc, f"pid {proc.pid}", grace=grace, group=False)


def kill_leftovers(pids: list[int]) -> None:
    """The supervisor's children have sessions of their own: none may outlive it."""
    for pid in filter(psutil.pid_exists, pids):
        print(f"killing pid {pid}, left behind by the supervisor", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def serving(endpoint: str) -> bool:
    try:
        with Client(endpoint, timeout=0.5, retries=0) as client:
            return client.status()["state"] == "serving"
    except BridgeError:
        return False


def cpu_snapshot(roles: Callable[[], Roles]) -> dict[int, tuple[str, float]]:
    """pid -> (role, user+system seconds) of every process on a case's path now."""
    snap = {}
    for role, pids in roles().items():
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                snap[pid] = (role, sum(psutil.Process(pid).cpu_times()[:2]))
    return snap


def cpu_split(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
              messages: int) -> dict[str, float]:
    """Seconds per message of each role (a process born meanwhile counts from zero)."""
    split: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent = seconds - before.get(pid, (role, 0.0))[1]
        split[role] = split.get(role, 0.0) + spent / max(1, messages)
    return split


def supervisor_roles(me: int, sup: int) -> Roles:
    """The supervisor's descendants now: ``runzeo`` is ZEO, the rest incarnations (and theirs)."""
    roles: Roles = {"client": [me], "front": [sup], "back": [], "zeo": []}
    for child in psutil.Process(sup).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            roles["zeo" if "ZEO.runzeo" in child.cmdline() else "back"].append(child.pid)
    return roles


def start_zeo(stack: contextlib.ExitStack, tmp: Path, name: str) -> tuple[str, int]:
    """``runzeo`` on a Unix socket over ``<name>.fs``, as the supervisor runs it."""
    sock = tmp / f"{name}.sock"
    zeo = spawn_child(stack, [sys.executable, "-m", "ZEO.runzeo", "-a", str(sock), "-f",
                              str(tmp / f"{name}.fs")], tmp / f"{name}.log")
    wait_until(sock.exists, 30, f"ZEO server {name}")
    return str(sock), zeo.pid


def start_echo(stack: contextlib.ExitStack, tmp: Path, name: str, worker: Callable[..., None],
               *args: Any) -> tuple[str, int, int]:
    """Broker and worker processes of a 3-hop echo: (frontend, broker pid, worker pid)."""
    fe, be = f"tcp://127.0.0.1:{free_port()}", f"ipc://{tmp}/{name}-be.sock"
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=echo_broker, args=(fe, be), daemon=True),
             spawn.Process(target=worker, args=(be, *args), daemon=True)]
    for proc in procs:
        proc.start()
        stack.callback(proc.join, 5)
        stack.callback(proc.terminate)
    return fe, procs[0].pid or 0, procs[1].pid or 0


def store(db: Any, key: str, value: Any) -> None:
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    conn.root()[key] = value
    tm.commit()
    conn.close()


def setup(stack: contextlib.ExitStack, tmp: Path) -> Cases:
    """Start every process (stopped by ``stack``); answers case -> (run, roles on its path)."""
    me = os.getpid()
    fe, broker, worker = start_echo(stack, tmp, "echo", echo_worker)
    zodb_zeo, zodb_zeo_pid = start_zeo(stack, tmp, "echo-zeo")
    seed = open_db(zeo=zodb_zeo)
    store(seed, ZODB_ECHO_ROOT, UvmObject({ZODB_ECHO_ATTRIBUTE: "genesis"}))
    seed.close()
    zfe, zbroker, zworker = start_echo(stack, tmp, "echo-zodb", zodb_worker, zodb_zeo)
    zeo_sock, zeo_pid = start_zeo(stack, tmp, "raw")
    db = open_db(zeo=zeo_sock, pool_size=ZEO_THREADS + 2)
    stack.callback(db.close)
    store(db, "bench", objs := [UvmObject({"n": 0}) for _ in range(ZEO_THREADS)])
    oids = [o._p_oid for o in objs]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    leftovers: list[int] = []
    stack.callback(kill_leftovers, leftovers)  # runs after the supervisor's stop
    exe = shutil.which("batos") or str(Path(sys.executable).with_name("batos"))
    sup = spawn_child(stack, [exe, "up", "--home", str(tmp / "home"), "--endpoint", endpoint,
                              "--env-mode", "current"], tmp / "supervisor.out")
    wait_until(lambda: sup.poll() is not None or serving(endpoint), 60, "supervisor")
    if sup.poll() is not None:
        raise RuntimeError(f"batos up exited with {sup.returncode}; see {tmp / 'supervisor.out'}")
    with Client(endpoint, timeout=30) as client:
        status = client.status()
        leftovers += [status["zeo"]["pid"], *(i["pid"] for i in status["incarnations"])]
        hot = client.send("genesis", "clone")["$ref"]
        client.send(hot, "setSlot:value:", "n", 0)
        client.send(hot, "defineMethod:source:", "bump", BUMP)
        spread = [client.send(hot, "clone")["$ref"] for _ in range(SPREAD)]
        incs = client.status()["incarnations"]
    lanes = max([1, *(i.get("lanes", 0) for i in incs)])  # the supervisor's choice: crc32 % lanes
    print("batos:    " + "; ".join(f"{i['id']} {i['role']}, lanes {i.get('lanes', 0)} (attached "
                                   f"{i.get('attached', [])})" for i in incs)
          + f"; the {SPREAD} spread targets on lanes "
          f"{sorted({zlib.crc32(t.encode()) % lanes for t in spread})}\n")
    ctx = zmq.Context()
    stack.callback(ctx.destroy, linger=0)
    addresses = {"echo": fe, "echo zodb": zfe, "batos": endpoint}
    socks = {name: ctx.socket(zmq.DEALER) for name in addresses}
    for name, address in addresses.items():
        socks[name].setsockopt(zmq.LINGER, 0)
        socks[name].connect(address)
    read = request_maker(["genesis"], "name")
    for name in ("echo", "echo zodb"):  # a ROUTER drops what it cannot route yet: probe
        wait_until(lambda s=socks[name]: bool(s.send(read(0)[1]) or s.poll(100)), 30, name)
    paths: dict[str, Callable[[], Roles]] = {
        "echo": lambda: {"client": [me], "front": [broker], "back": [worker]},
        "echo zodb": lambda: {"client": [me], "front": [zbroker], "back": [zworker],
                              "zeo": [zodb_zeo_pid]},
        "batos": functools.partial(supervisor_roles, me, sup.pid),
        "zeo": lambda: {"client": [me], "zeo": [zeo_pid]},
    }
    cases: Cases = {}
    for mode, window in (("seq", 1), (f"w{WINDOW}", WINDOW)):
        for name, sock, make in (("echo", "echo", read), ("echo zodb", "echo zodb", read),
                                 ("batos read", "batos", read),
                                 ("batos write hot", "batos", request_maker([hot], "bump")),
                                 ("batos write spread", "batos", request_maker(spread, "bump"))):
            run = functools.partial(run_window, socks[sock], make, KEYS[sock], window)
            cases[f"{name} {mode}"] = (run, paths[sock])
    cases["zeo commit seq"] = (functools.partial(zeo_commits, db, oids[:1]), paths["zeo"])
    cases[f"zeo commit x{ZEO_THREADS}"] = (functools.partial(zeo_commits, db, oids), paths["zeo"])
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 30 s)")
    opts = parser.parse_args()
    rounds, round_s = (3, 0.4) if opts.quick else (5, 2.5)
    print("\n".join(machine()))
    print(f"mode:     {'quick' if opts.quick else 'full'}: {rounds} rounds of {round_s:g}s per "
          f"case, window {WINDOW}")
    print("echo zodb: one worker thread (the read case's one target goes to one lane); "
          + ("open_db(server_sync=False), as the incarnation" if server_sync_param() else
             "uvm.open_db has no server_sync parameter yet: its default (a ZEO round trip "
             "per transaction)"))
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="batos-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        cases = setup(stack, tmp)
        for run, _roles in cases.values():  # warm up caches and connection pools
            run(min(0.2, round_s / 3))
        results: Runs = {name: [] for name in cases}
        for _ in range(rounds):  # alternate the cases in every round
            for name, (run, roles) in cases.items():
                before = cpu_snapshot(roles)
                result = run(round_s)
                results[name].append((result, cpu_split(before, cpu_snapshot(roles), result[0])))
    report(results)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
