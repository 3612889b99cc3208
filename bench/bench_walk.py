"""Benchmark the validation walk through ZEO against the raw reads of the same storage.

A runzeo server of its own on a FileStorage; ``populate`` fills the image through it
(clones of one prototype: a UvmObject, its method and the method's history, a slot
dict holding a list and a dict: six records a clone, about ``--objects`` records in
all). Then each case runs in a fresh process (a cold ZEO client, as a handover's
candidate incarnation is), a few times, cases interleaved:

    walk zeo         ``uvm.image_walk.walk_image`` on ``open_db(zeo=...)``: what
                     ``validate_image`` does in the incarnation (``uvm.record_feed``'s
                     ZEO feed)
    walk zeo, prefetch   the same walk reading through ZODB's own path
                     (``Connection.prefetch``: ZEO's ``ClientStorage.prefetch``, then the
                     MVCC load): the read path the walk had before issue 14
    raw zeo feed     baseline: the same reachable records in the same order through the
                     same feed, references found by ``referencesf``, nothing unpickled:
                     what reading the storage costs
    raw zeo prefetch baseline: the same through ZEO's public prefetch and load
    walk file        information: the walk of the FileStorage opened read-only (what
                     ``uvm.control`` did before, behind the server's back)

Each line: objects/s (best and median), the client process's CPU per record, the ZEO
server's CPU per record. Issue 14's target: the walk through ZEO >= 50,000 objects/s on
a 20k-object image. Run ``python bench/bench_walk.py [--quick] [--objects N] [--runs N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from uvm import Kernel, bootstrap, open_db  # noqa: E402

PROTO = "walkproto"
TOTAL = "def total(self):\n    return self.i + len(self.d['k'])\n"
RECORDS_PER_CLONE = 6
CASES = ("walk zeo", "walk zeo, prefetch", "raw zeo feed", "raw zeo prefetch", "walk file")
BATCH = 1000  # clones per applyActs: (uvm.acts.MAX_ACTS)


def populate(db: Any, objects: int) -> int:
    """About ``objects`` records more in the image (clones of ``walkproto``, made first
    if missing); answers the clones made."""
    kernel = Kernel(db)
    if not _named(kernel):
        kernel.send("genesis", "applyActs:", [[
            {"action": "CLONE_PROTOTYPE", "target": "genesis", "name": PROTO},
            {"action": "REMOVE_SLOT", "target": PROTO, "slot": "display_yourself"},
            {"action": "DEFINE_METHOD", "target": PROTO, "selector": "total", "source": TOTAL}]])
    clones = max(1, objects // RECORDS_PER_CLONE)
    for at in range(0, clones, BATCH):
        kernel.send("genesis", "applyActs:", [[
            {"action": "CLONE_PROTOTYPE", "target": PROTO,
             "slots": {"i": i, "d": {"k": [i, "x"], "m": {"z": i}}}}
            for i in range(at, min(clones, at + BATCH))]])
    return clones


def _named(kernel: Kernel) -> bool:
    return kernel.read(lambda cycle: PROTO in cycle.registry.names)


# --- one case, in a fresh process --------------------------------------------------


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _raw(conn: Any, feed: Any) -> int:
    """The walk's reads alone: breadth-first by raw records, references by referencesf."""
    from ZODB.serialize import referencesf
    from ZODB.utils import z64

    from uvm.image_walk import _WINDOW

    seen, order, asked, position = {z64}, [z64], 0, 0
    while position < len(order):
        if asked - position < _WINDOW // 2 and asked < len(order):
            upto = min(len(order), position + _WINDOW)
            feed.ask(order[asked:upto])
            asked = upto
        data = feed.take(order[position])
        position += 1
        for ref in sorted(set(referencesf(data))) if data is not None else ():
            if ref not in seen:
                seen.add(ref)
                order.append(ref)
    return len(order)


def child(case: str, zeo: str, image: str, server_pid: int) -> dict[str, Any]:
    import transaction

    import uvm.image_walk as image_walk
    from uvm.image import catch_up
    from uvm.record_feed import StorageFeed, feed_for

    db = open_db(image, read_only=True) if case == "walk file" else open_db(zeo=zeo)
    try:
        if "prefetch" in case:
            image_walk.feed_for = StorageFeed  # the walk as it read before issue 14
        server = _server_cpu(server_pid)
        cpu, start = time.process_time(), time.perf_counter()
        if case.startswith("walk"):
            walk = image_walk.Walk(frozenset(), image_walk.Failures(), float("inf"))
            image_walk.walk_image(db, walk)
            count, feed, failures = walk.count, walk.feed, list(walk.failures)
        else:
            catch_up(db, None)
            tm = transaction.TransactionManager(explicit=True)
            tm.begin()
            conn = db.open(transaction_manager=tm)
            try:
                feed_ = StorageFeed(conn) if "prefetch" in case else feed_for(conn)
                count, feed, failures = _raw(conn, feed_), feed_.kind, []
            finally:
                tm.abort()
                conn.close()
        wall = time.perf_counter() - start
        return {"case": case, "objects": count, "wall": wall, "feed": feed,
                "client_cpu": time.process_time() - cpu,
                "server_cpu": _server_cpu(server_pid) - server, "failures": failures}
    finally:
        db.close()


# --- the run --------------------------------------------------------------------


def start_zeo(folder: Path) -> subprocess.Popen[bytes]:
    sock = folder / "zeo.sock"
    with (folder / "zeo.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "ZEO.runzeo", "-a", str(sock), "-f", str(folder / "image.fs")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket(socket.AF_UNIX) as probe:
            with contextlib.suppress(OSError):
                probe.connect(str(sock))
                return server
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"runzeo did not start: {(folder / 'zeo.log').read_text()}")
        time.sleep(0.05)


def stop_zeo(server: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, 15)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait(timeout=10)


def run_case(case: str, folder: Path, server: subprocess.Popen[bytes]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--folder", str(folder),
         "--server-pid", str(server.pid)],
        capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{case} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 records, 2 runs")
    parser.add_argument("--objects", type=int, default=20_000, help="records to add")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        folder = Path(opts.folder)
        print(json.dumps(child(opts.child, str(folder / "zeo.sock"), str(folder / "image.fs"),
                               opts.server_pid)))
        return
    objects, runs = (2_000, 2) if opts.quick else (opts.objects, opts.runs)
    folder = Path(tempfile.mkdtemp(prefix="batos-walk-"))
    server = start_zeo(folder)
    try:
        db = open_db(zeo=str(folder / "zeo.sock"))
        try:
            bootstrap(db)
            started = time.perf_counter()
            clones = populate(db, objects)
            built = time.perf_counter() - started
        finally:
            db.close()
        print(f"machine:  {machine()}")
        print(f"image:    {clones:,} clones of {PROTO} through ZEO in {built:.1f} s; "
              f"cases in fresh processes (cold ZEO client), {runs} runs each, interleaved")
        results: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        for _ in range(runs):
            for case in CASES:
                results[case].append(run_case(case, folder, server))
        report(results)
        print(f"load at the end: {machine().rsplit('load ', 1)[1]}")
    finally:
        stop_zeo(server)
        shutil.rmtree(folder, ignore_errors=True)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n{'case':<22}{'objects':>8}{'best/s':>9}{'median/s':>10}"
          f"{'client us/obj':>15}{'server us/obj':>15}  feed")
    rates: dict[str, float] = {}
    for case, rows in results.items():
        count = rows[0]["objects"]
        per_s = [row["objects"] / row["wall"] for row in rows]
        rates[case] = max(per_s)
        client = min(row["client_cpu"] for row in rows) / count * 1e6
        server = min(row["server_cpu"] for row in rows) / count * 1e6
        print(f"{case:<22}{count:>8,}{max(per_s):>9,.0f}{statistics.median(per_s):>10,.0f}"
              f"{client:>15.1f}{server:>15.1f}  {rows[0]['feed']}")
        if rows[0]["failures"]:
            print(f"  failures: {rows[0]['failures'][:3]}")
    walk, raw = rates["walk zeo"], rates["raw zeo feed"]
    print(f"\nwalk zeo / raw zeo feed (best): {walk / raw:.0%}; walk zeo / walk zeo, prefetch: "
          f"{walk / rates['walk zeo, prefetch']:.1f}x; walk zeo / walk file: "
          f"{walk / rates['walk file']:.1f}x")
    print(f"validation walk through ZEO >= 50,000 objects/s: "
          f"{'met' if walk >= 50_000 else 'NOT met'} ({walk:,.0f}/s best)")


if __name__ == "__main__":
    main()
