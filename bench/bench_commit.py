"""What a write costs over a real ZEO server: raw commits against kernel writes.

In one process, over ``python -m ZEO.runzeo`` (a FileStorage in a temporary folder,
on a Unix socket; the server is started through a small wrapper that counts the
conflicts it resolves), the same change ``obj.n += 1`` is committed

* raw: open a connection, change the object, commit (``transaction`` alone);
* raw + record: the same, plus ``ReplyStore.get`` (a miss) and ``record`` in the same
  transaction: the cost of the exactly-once record without the kernel around it;
* ``Kernel.send(obj, "bump")`` without a request id;
* ``Kernel.send(obj, "bump", request_id=<uuid4>)``: the effect and the reply record
  in one transaction;

each sequentially (x1) and from 4 threads at once, every thread on its own object
(x4; a thread's shard is its index where ``ReplyStore``/``Kernel.send`` take
``shard``). Rates are the best of several alternating rounds; ratios are against the
raw commit at the same concurrency in the same run. CPU per write is the process's
own (all its threads) and the ZEO server's, over all rounds of a case. Conflicts:
ConflictErrors the client retried (raw: its own loop; kernel: the kernel's retry log)
and the conflicts the server resolved (BTrees bucket merges).

Run ``python bench/bench_commit.py [--quick]``.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import shutil
import socket
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

import transaction
from bench_bridge import machine as bridge_machine
from ZODB.POSException import ConflictError

from uvm import Kernel, bootstrap, open_db
from uvm.registry import Registry
from uvm.replies import ReplyStore

BUMP = "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"
THREADS = 4
# runzeo, with FileStorage's conflict resolution counted on stderr (one line each)
SERVER = """\
import sys
import ZODB.ConflictResolution as cr
_resolve = cr.ConflictResolvingStorage.tryToResolveConflict
def counted(self, *args, **kw):
    try:
        data = _resolve(self, *args, **kw)
    except Exception:
        sys.stderr.write("CONFLICT unresolved\\n"); sys.stderr.flush()
        raise
    sys.stderr.write("CONFLICT resolved\\n"); sys.stderr.flush()
    return data
cr.ConflictResolvingStorage.tryToResolveConflict = counted
from ZEO.runzeo import main
main(sys.argv[1:])
"""


def machine() -> list[str]:
    return [*bridge_machine(), f"BTrees:   {version('BTrees')}"]


class Counter(logging.Handler):
    """Counts the kernel's "conflict on ..., retry" debug records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("conflict on"):
            self.retries += 1


class Server:
    def __init__(self, folder: Path) -> None:
        self.sock = folder / "zeo.sock"
        self.log = folder / "zeo.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, "-a", str(self.sock), "-f", str(folder / "zeo.fs")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.accepting():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"runzeo did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def accepting(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.sock))
            except OSError:
                return False
        return True

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def resolved(self) -> tuple[int, int]:
        text = self.log.read_text()
        return text.count("CONFLICT resolved"), text.count("CONFLICT unresolved")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def takes_shard(fn: Callable[..., Any]) -> bool:
    return "shard" in inspect.signature(fn).parameters


class Cases:
    """The write cases; ``raw_conflicts`` counts the raw loops' retried ConflictErrors."""

    def __init__(self, db: Any, kernel: Kernel) -> None:
        self.db, self.kernel = db, kernel
        self.raw_conflicts = 0
        self.lock = threading.Lock()
        first = kernel.send("genesis", "clone")["$ref"]
        kernel.send(first, "defineMethod:source:", ["bump", BUMP])
        self.refs = [first] + [kernel.send(first, "clone")["$ref"] for _ in range(THREADS - 1)]
        for ref in self.refs:
            kernel.send(ref, "setSlot:value:", ["n", 0])
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        conn = db.open(transaction_manager=tm)
        registry = Registry(conn.root())
        self.oids = [registry.resolve(ref)._p_oid for ref in self.refs]
        tm.abort()
        conn.close()
        self.store_shards = takes_shard(ReplyStore.__init__)
        self.kernel_shards = takes_shard(kernel.send)

    def raw(self, k: int, record: bool) -> None:
        tm = transaction.TransactionManager(explicit=True)
        while True:
            tm.begin()
            conn = self.db.open(transaction_manager=tm)
            try:
                obj = conn.get(self.oids[k])
                obj.n = obj.n + 1
                if record:
                    root = conn.root()
                    store = (ReplyStore(root, shard=str(k)) if self.store_shards
                             else ReplyStore(root))
                    request_id = str(uuid.uuid4())
                    if store.get(request_id) is ReplyStore.MISSING:  # as the kernel does
                        store.record(request_id, obj.n)
                tm.commit()
                return
            except ConflictError:
                tm.abort()
                with self.lock:
                    self.raw_conflicts += 1
            finally:
                conn.close()

    def send(self, k: int, with_id: bool) -> None:
        if not with_id:
            self.kernel.send(self.refs[k], "bump")
        elif self.kernel_shards:
            self.kernel.send(self.refs[k], "bump", request_id=str(uuid.uuid4()), shard=str(k))
        else:
            self.kernel.send(self.refs[k], "bump", request_id=str(uuid.uuid4()))

    def all(self) -> dict[str, Callable[[int], None]]:
        kinds: dict[str, Callable[[int], None]] = {
            "raw commit": lambda k: self.raw(k, False),
            "raw + record": lambda k: self.raw(k, True),
            "kernel, no id": lambda k: self.send(k, False),
            "kernel, with id": lambda k: self.send(k, True),
        }
        cases: dict[str, Callable[[int], None]] = {}
        for threads in (1, THREADS):
            for name, fn in kinds.items():
                cases[f"{name} x{threads}"] = threaded(fn, threads)
        return cases


def threaded(fn: Callable[[int], None], threads: int) -> Callable[[int], None]:
    """``count`` writes in all: one thread inline, or ``threads`` threads sharing them."""
    def run(count: int) -> None:
        if threads == 1:
            for _ in range(count):
                fn(0)
            return
        each = count // threads

        def work(k: int) -> None:
            for _ in range(each):
                fn(k)

        pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return run


def measure(cases: Cases, server: Server, counter: Counter, rounds: int,
            round_s: float) -> list[tuple[str, float, float, float, int, int, int]]:
    runs = cases.all()
    counts: dict[str, int] = {}
    for name, run in runs.items():  # warm up and size each round to about round_s
        n, elapsed = THREADS * 4, 0.0
        while elapsed < min(0.1, round_s / 2):
            n *= 2
            t0 = time.perf_counter()
            run(n)
            elapsed = time.perf_counter() - t0
        counts[name] = max(THREADS, int(n * round_s / elapsed) // THREADS * THREADS)
    best = dict.fromkeys(runs, 0.0)
    cpu = dict.fromkeys(runs, 0.0)
    server_cpu = dict.fromkeys(runs, 0.0)
    retried = dict.fromkeys(runs, 0)
    resolved = dict.fromkeys(runs, 0)
    unresolved = dict.fromkeys(runs, 0)
    for _ in range(rounds):  # alternate the cases within every round to spread drift
        for name, run in runs.items():
            before = (cases.raw_conflicts + counter.retries, server.resolved())
            c0, s0, t0 = time.process_time(), server.cpu(), time.perf_counter()
            run(counts[name])
            wall = time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            server_cpu[name] += server.cpu() - s0
            best[name] = max(best[name], counts[name] / wall)
            retried[name] += cases.raw_conflicts + counter.retries - before[0]
            now = server.resolved()
            resolved[name] += now[0] - before[1][0]
            unresolved[name] += now[1] - before[1][1]
    rows = []
    for name in runs:
        writes = counts[name] * rounds
        rows.append((name, best[name], cpu[name] / writes * 1e6, server_cpu[name] / writes * 1e6,
                     retried[name], resolved[name], unresolved[name]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (about 30 s)")
    opts = parser.parse_args()
    rounds, round_s = (3, 0.5) if opts.quick else (5, 1.5)
    print("\n".join(machine()))
    print(f"mode:     {'quick' if opts.quick else 'full'}\n")
    folder = Path(tempfile.mkdtemp(prefix="batos-bc-"))  # short: socket paths max ~107 bytes
    server = Server(folder)
    counter = Counter()
    log = logging.getLogger("batos.kernel")
    log.addHandler(counter)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    db = None
    try:
        db = open_db(zeo=str(server.sock))
        bootstrap(db)
        kernel = Kernel(db)
        cases = Cases(db, kernel)
        print(f"shards: ReplyStore(shard=) {'yes' if cases.store_shards else 'no'}, "
              f"Kernel.send(shard=) {'yes' if cases.kernel_shards else 'no'}")
        rows = measure(cases, server, counter, rounds, round_s)
        raw = {name[-2:]: rate for name, rate, *_ in rows if name.startswith("raw commit")}
        print(f"\n== writes per second: best of {rounds} alternating rounds; CPU over all rounds ==")
        print(f"{'case':<22}{'best/s':>8}{'x raw':>7}{'cpu us/w':>10}{'zeo us/w':>10}"
              f"{'retried':>9}{'resolved':>9}{'unresolv':>9}")
        for name, rate, cpu, zeo, retried, resolved, unresolved in rows:
            print(f"{name:<22}{rate:>8.0f}{rate / raw[name[-2:]]:>7.2f}{cpu:>10.0f}{zeo:>10.0f}"
                  f"{retried:>9}{resolved:>9}{unresolved:>9}")
        records = kernel.read(lambda cycle: len(ReplyStore(cycle.connection.root())))
        print(f"\nreply records: {records}")
    finally:
        if db is not None:
            db.close()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
