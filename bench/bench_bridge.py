"""Benchmark the bridge and the supervisor against raw baselines measured in the same run.

Round trips client -> supervisor -> incarnation -> reply through ``batos up`` (temporary
home, ``--env-mode current``, default config), sequential and with ``WINDOW`` requests
outstanding on one DEALER, each with a fresh uuid4 id as ``bridge.Client`` sends them.
Read-only: ``genesis name`` (a data slot). Writing: ``bump`` (``n = n + 1``) on one hot
object (concurrent workers conflict and retry) and spread over ``SPREAD`` clones.
Baselines: a raw ZMQ 3-hop echo in the same process layout (client DEALER -> broker
process, ROUTER front and back -> worker process DEALER) fed the same encoded frames;
raw ZEO commits of ``n = n + 1`` on a FileStorage behind its own ``runzeo``, sequential
and from ``ZEO_THREADS`` threads (own connection and transaction manager each, separate
objects). Cases alternate within each round; rates are best and median of the rounds,
latencies pool them, "cpu" is the user+system time per message of every process on
the path (client included). Run ``python bench/bench_bridge.py [--quick]``.
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import ormsgpack
import psutil
import transaction
import zmq

from bridge import Client
from bridge.codec import decode_reply, encode
from bridge.errors import BridgeError
from bridge.messages import SendRequest
from envs.children import stop
from uvm import UvmObject, open_db

WINDOW = 32
SPREAD = 8
ZEO_THREADS = 4
WAIT_MS = 30_000  # every receive has a timeout; a write under conflicts can take a while
BUMP = "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"
BASE = {  # case -> (baseline, target ratio, or None: information only)
    "batos read seq": ("echo seq", 0.7),
    f"batos read w{WINDOW}": (f"echo w{WINDOW}", 0.7),
    "batos write hot seq": ("zeo commit seq", 0.8),
    "batos write spread seq": ("zeo commit seq", 0.8),
    f"batos write hot w{WINDOW}": (f"zeo commit x{ZEO_THREADS}", None),
    f"batos write spread w{WINDOW}": (f"zeo commit x{ZEO_THREADS}", 0.8),
}
Result = tuple[int, float, list[float], int]  # messages, seconds, latencies, error replies
Maker = Callable[[int], tuple[str, bytes]]
Cases = dict[str, tuple[Callable[[float], Result], list[int]]]  # name -> (run, pids on path)
KEYS: dict[str, Callable[[bytes], tuple[str, bool]]] = {  # reply -> (request id, ok)
    "echo": lambda frame: (ormsgpack.unpackb(frame)["id"], True),
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


def echo_broker(frontend: str, backend: str) -> None:
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    front.bind(frontend)
    back.bind(backend)
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    routes = ((front, lambda f: back.send_multipart([b"worker", *f])),  # [client, payload]
              (back, lambda f: front.send_multipart(f[1:])))  # [worker, client, payload]
    while True:
        events = dict(poller.poll())
        for sock, forward in routes:
            while sock in events:
                try:
                    forward(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break


def echo_worker(backend: str) -> None:
    sock = zmq.Context().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"worker")
    sock.connect(backend)
    while True:
        sock.send_multipart(sock.recv_multipart())  # [client, payload] back as it came


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


def zeo_commits(db: Any, oids: list[bytes], seconds: float) -> Result:
    """One thread per oid, each with its own connection, committing ``n = n + 1``."""
    per: list[list[float]] = [[] for _ in oids]
    start = time.perf_counter()
    stop = start + seconds

    def commit_loop(oid: bytes, out: list[float]) -> None:
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        conn = db.open(transaction_manager=tm)
        try:
            obj = conn.get(oid)
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                obj.n = obj.n + 1
                tm.commit()
                tm.begin()
                out.append(time.perf_counter() - t0)
        finally:
            tm.abort()
            conn.close()

    threads = [threading.Thread(target=commit_loop, args=a) for a in zip(oids, per, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = [x for p in per for x in p]
    return len(latencies), time.perf_counter() - start, latencies, 0


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


def cpu_seconds(pids: list[int]) -> float:
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


def setup(stack: contextlib.ExitStack, tmp: Path) -> Cases:
    """Start every process (stopped by ``stack``); answers case -> (run, pids on its path)."""
    fe, be = f"tcp://127.0.0.1:{free_port()}", f"ipc://{tmp}/echo-be.sock"
    spawn = multiprocessing.get_context("spawn")
    echo = [spawn.Process(target=echo_broker, args=(fe, be), daemon=True),
            spawn.Process(target=echo_worker, args=(be,), daemon=True)]
    for proc in echo:
        proc.start()
        stack.callback(proc.join, 5)
        stack.callback(proc.terminate)
    zeo_sock = tmp / "zeo.sock"
    zeo = spawn_child(stack, [sys.executable, "-m", "ZEO.runzeo", "-a", str(zeo_sock), "-f",
                              str(tmp / "raw.fs")], tmp / "zeo.log")
    wait_until(zeo_sock.exists, 30, "raw ZEO server")
    db = open_db(zeo=str(zeo_sock), pool_size=ZEO_THREADS + 2)
    stack.callback(db.close)
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    conn.root()["bench"] = objs = [UvmObject({"n": 0}) for _ in range(ZEO_THREADS)]
    tm.commit()
    conn.close()
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
    ctx = zmq.Context()
    stack.callback(ctx.destroy, linger=0)
    socks = {name: ctx.socket(zmq.DEALER) for name in ("echo", "batos")}
    for name, address in (("echo", fe), ("batos", endpoint)):
        socks[name].setsockopt(zmq.LINGER, 0)
        socks[name].connect(address)
    read = request_maker(["genesis"], "name")
    # a ROUTER drops what it cannot route yet: probe until the worker answers
    wait_until(lambda: bool(socks["echo"].send(read(0)[1]) or socks["echo"].poll(100)),
               30, "echo worker")
    me = os.getpid()
    paths = {"echo": [me, *(p.pid for p in echo)], "batos": [me, sup.pid, *leftovers],
             "zeo": [me, zeo.pid]}
    cases: Cases = {}
    for mode, window in (("seq", 1), (f"w{WINDOW}", WINDOW)):
        for name, sock, make in (("echo", "echo", read), ("batos read", "batos", read),
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
    rounds, round_s = (2, 0.3) if opts.quick else (5, 2.5)
    print("\n".join(machine()))
    print(f"mode:     {'quick' if opts.quick else 'full'}: {rounds} rounds of {round_s:g}s per "
          f"case, window {WINDOW}\n")
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="batos-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        cases = setup(stack, tmp)
        for run, _pids in cases.values():  # warm up caches and connection pools
            run(min(0.2, round_s / 3))
        results: dict[str, list[tuple[Result, float]]] = {name: [] for name in cases}
        for _ in range(rounds):  # alternate the cases in every round
            for name, (run, pids) in cases.items():
                cpu = cpu_seconds(pids)
                result = run(round_s)
                results[name].append((result, (cpu_seconds(pids) - cpu) / max(1, result[0])))
    report(results)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


def report(results: dict[str, list[tuple[Result, float]]]) -> None:
    rates = {name: [r[0] / r[1] for r, _cpu in rs] for name, rs in results.items()}
    best = {name: max(r) for name, r in rates.items()}
    print(f"{'case':<24}{'best/s':>8}{'median/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'cpu ms':>8}"
          f"{'errors':>7}  best as a share of the baseline's best")
    for name, rs in results.items():
        lat = sorted(x for r, _cpu in rs for x in r[2])
        p50, p99 = (lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 for q in (0.5, 0.99))
        cpu = statistics.median(c for _r, c in rs) * 1e3
        base = BASE.get(name)
        share = f"{best[name] / best[base[0]]:6.1%} of {base[0]}" if base else ""
        print(f"{name:<24}{best[name]:>8.0f}{statistics.median(rates[name]):>9.0f}{p50:>8.2f}"
              f"{p99:>8.2f}{cpu:>8.2f}{sum(r[3] for r, _cpu in rs):>7}  {share}")
    print("\ntargets (best against best):")
    for what, goal, against in (("read-only", 0.7, "the raw 3-hop echo"),
                                ("writing", 0.8, "raw ZEO commits")):
        shares = {n: best[n] / best[b] for n, (b, g) in BASE.items() if g == goal}
        verdict = "met" if all(s >= goal for s in shares.values()) else "NOT met"
        detail = ", ".join(f"{n} {s:.1%}" for n, s in shares.items())
        print(f"  {what} messages >= {goal:.0%} of {against}: {verdict} ({detail})")


if __name__ == "__main__":
    main()
