"""Benchmark one handover (``batos evolve``) under steady traffic, beside plain restarts.

``batos up`` in uv mode; home and envs in a temporary folder under ``--cache`` (default
``~/.cache/batos-bench-handover``), whose ``uv-cache`` is kept: only the first run
downloads the base env. Evolve 1: the fresh (small) image, no traffic; it warms the
cache. Then ``N`` objects (``applyActs:`` batches of ``CLONE_PROTOTYPE``) and evolve 2,
measured: it adds a ``make_wheel`` wheel (``offline=True``) while a client thread sends
``RATE`` requests/s (``genesis name`` and a counter's ``bump`` alternating, each with its
own id, open loop on one DEALER). Unanswered for ``RESEND_S``: resent by id (delayed);
after ``ATTEMPTS`` sends or on any error reply: failed. The same traffic then runs
through SIGKILL of the incarnation, a stop and start of ``batos up`` and SIGTERM of the
incarnation. Per window (requests by send time): latency p50/p99/max from the first
send, delayed, failed, and the longest time without a successful reply (gap). Phases
come from the handover log, the switch moment from ``handover.switched`` on the event
stream. Exactly once: the counter ends between the writes answered ok and those plus
the failed ones (an error may answer the resend of a write that ran).
Run ``python bench/bench_handover.py [--quick]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq
from bench_bridge import free_port, machine, stop_process, wait_until

from bridge import Client
from bridge.codec import decode_reply, encode, unpack
from bridge.errors import BridgeError
from bridge.messages import SendRequest
from envs import find_uv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.wheels: the wheel maker
from bench.wheels import make_wheel  # noqa: E402

RATE = 100  # requests per second, reads and writes alternating
RESEND_S = 1.0
ATTEMPTS = 10
BATCH = 1000  # clones per applyActs: (uvm.acts.MAX_ACTS)
SWITCH_S = 0.5  # the switch windows: requests sent this long before the switch, and after it
PROBATION = 3.0
RESTART_WAIT = 20.0  # a restart that takes longer counts as "not restarted"
COUNTER = "benchCounter"
BUMP = "def bump(self):\n    self.n = self.n + 1\n    return self.n\n"
PHASES = ("build", "incarnate", "validate", "switch", "drain", "probation", "retire")


@dataclass
class Req:
    id: str
    write: bool
    frame: bytes
    sent: float  # wall clock, comparable with the supervisor's event times
    first: float  # perf_counter at the first send
    last: float  # perf_counter at the latest send
    attempts: int = 1
    answered: float | None = None  # wall clock
    latency: float | None = None
    error: str | None = None


class Load(threading.Thread):
    """Open-loop traffic on its own socket: ``RATE`` per second whatever the replies do."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(name="load", daemon=True)
        self.endpoint, self.reqs, self.messages = endpoint, [], collections.Counter()
        self.stopping = threading.Event()
        self.crashed: Exception | None = None

    def settled(self, before: float) -> bool:
        return all(r.answered or r.error for r in self.reqs if r.sent < before)

    def run(self) -> None:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        out: dict[str, Req] = {}
        next_at = time.perf_counter()
        try:
            while not self.stopping.is_set() or out:
                now = time.perf_counter()
                if not self.stopping.is_set() and now >= next_at:
                    write, rid = len(self.reqs) % 2 == 1, str(uuid.uuid4())
                    frame = encode(SendRequest(id=rid, target=COUNTER if write else "genesis",
                                               selector="bump" if write else "name"))
                    out[rid] = req = Req(rid, write, frame, time.time(), now, now)
                    self.reqs.append(req)
                    sock.send(frame)
                    next_at = max(next_at + 1 / RATE, now - 1.0)  # catch up at most 1 s
                for req in [r for r in out.values() if now - r.last > RESEND_S]:
                    if req.attempts >= ATTEMPTS:
                        req.error = "no reply"
                        del out[req.id]
                    else:
                        req.attempts, req.last = req.attempts + 1, now
                        sock.send(req.frame)
                wait = max(0.0, min(next_at - time.perf_counter(), 0.01))
                while sock.poll(int(wait * 1000), zmq.POLLIN):
                    reply, wait = decode_reply(sock.recv()), 0.0
                    req = out.pop(reply.id, None)
                    if req is None:
                        continue  # a late answer to an earlier send
                    req.answered, req.latency = time.time(), time.perf_counter() - req.first
                    if reply.error is not None:
                        req.error = reply.error.type
                        self.messages[f"{reply.error.type}: {reply.error.message[:70]}"] += 1
        except Exception as exc:  # the main thread raises it (run())
            self.crashed = exc
        finally:
            ctx.destroy(linger=0)


class Service:
    """``batos up`` children on one home and endpoint; the ``stack`` stops them all."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path, endpoint: str) -> None:
        self.stack, self.tmp, self.endpoint = stack, tmp, endpoint
        self.seen: dict[int, psutil.Process] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        stack.callback(self.kill_leftovers)  # runs after every stop below

    def start(self, timeout: float) -> float:
        exe = shutil.which("batos") or str(Path(sys.executable).with_name("batos"))
        argv = [exe, "up", "--home", str(self.tmp / "home"), "--endpoint", self.endpoint,
                "--config", str(self.tmp / "config.toml")]
        started = time.time()
        with open(self.tmp / f"batos-up-{started:.3f}.out", "wb") as out:
            self.proc = proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        self.stack.callback(stop_process, proc)
        self.stack.callback(self.track)  # before the stop: what it has to stop
        wait_until(lambda: proc.poll() is not None or self.active() is not None, timeout, "batos up")
        if proc.poll() is not None:
            raise RuntimeError(f"batos up exited with {proc.returncode}; see {self.tmp}")
        self.track()
        return time.time() - started

    def stop(self) -> None:
        assert self.proc is not None
        self.track()
        stop_process(self.proc)

    def status(self) -> dict[str, Any] | None:
        try:
            with Client(self.endpoint, timeout=1.0, retries=0) as client:
                return client.status()
        except BridgeError:
            return None

    def active(self) -> dict[str, Any] | None:
        """The ready incarnation that serves, or None."""
        st = self.status()
        if not st or st["state"] != "serving":
            return None
        return next((i for i in st["incarnations"]
                     if i["id"] == st["active"] and i["state"] == "ready"), None)

    def track(self) -> None:
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(self.proc.pid).children(recursive=True):  # type: ignore[union-attr]
                self.seen.setdefault(proc.pid, proc)

    def kill_leftovers(self) -> None:
        """ZEO, incarnations and uv builds have sessions of their own: none may outlive us."""
        for proc in self.seen.values():
            with contextlib.suppress(psutil.Error):  # is_running() also rules out a reused pid
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    print(f"killing pid {proc.pid} ({proc.name()}), left behind", file=sys.stderr)
                    proc.kill()


def evolve(client: Client, service: Service, wheels: Path, package: str) -> dict[str, Any]:
    """One evolve, then the wait for its probation to end: reply, log row and times."""
    started = time.time()
    reply = client.evolve(add=[package], offline=True, find_links=[str(wheels)],
                          probation=PROBATION, timeout=600)
    replied = time.time()
    service.track()
    wait_until(lambda: (service.status() or {}).get("handover", 1) is None, 120, "handover end")
    row = client.handovers(last=1)["handovers"][-1]
    return {"reply": reply, "row": row, "started": started, "done": time.time(),
            "to_switch": replied - started, "v": reply["validation"]}


def restart(service: Service, how: str) -> bool:
    """SIGKILL or SIGTERM the serving incarnation, or stop and start ``batos up`` ("up");
    answers whether a new incarnation serves within ``RESTART_WAIT``."""
    old = service.active()
    assert old is not None
    if how == "up":
        service.stop()
        service.start(RESTART_WAIT)
    else:
        os.kill(old["pid"], getattr(signal, how))
    with contextlib.suppress(RuntimeError):
        wait_until(lambda: (service.active() or old)["pid"] != old["pid"], RESTART_WAIT, how)
        service.track()
        return True
    return False


def run(opts: argparse.Namespace, objects: int, steady: float) -> tuple[Any, ...]:
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="run-", dir=opts.cache))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        stack.push(lambda kind, *_: None if kind is None else print_logs(tmp))
        tag = f"1.0.{int(time.time())}"  # versions new to the kept uv cache
        for name in ("benchwarm", "benchlib"):
            make_wheel(tmp / "wheels", name, tag, f"VALUE = {name!r}\n")
        (tmp / "config.toml").write_text(
            f"envs_dir = {json.dumps(str(tmp / 'envs'))}\n"
            f"uv_cache = {json.dumps(str(opts.cache / 'uv-cache'))}\n[env]\nmode = \"uv\"\n")
        service = Service(stack, tmp, f"tcp://127.0.0.1:{free_port()}")
        print(f"start (base env build, first incarnation): {service.start(900):.1f} s")
        client = stack.enter_context(Client(service.endpoint, timeout=120, retries=0))
        first = evolve(client, service, tmp / "wheels", f"benchwarm=={tag}")
        t = time.time()
        acts = [{"action": "CLONE_PROTOTYPE", "target": "genesis", "slots": {"i": i}}
                for i in range(objects)]
        for at in range(0, objects, BATCH):
            client.send("genesis", "applyActs:", acts[at:at + BATCH])
        client.send("genesis", "applyActs:", [
            {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "c", "name": COUNTER,
             "slots": {"n": 0}},
            {"action": "DEFINE_METHOD", "target": "@c", "selector": "bump", "source": BUMP}])
        print(f"populate: {objects:,} objects in {-(-objects // BATCH)} messages: "
              f"{time.time() - t:.1f} s")
        ctx = zmq.Context()
        stack.callback(ctx.destroy, linger=0)
        events = ctx.socket(zmq.SUB)
        events.setsockopt(zmq.SUBSCRIBE, b"handover")
        events.connect(client.status()["supervisor"]["events"])
        load = Load(service.endpoint)
        load.start()
        stack.callback(load.join, RESEND_S * ATTEMPTS + 5)
        stack.callback(load.stopping.set)
        marks: dict[str, tuple[float, float]] = {}
        t = time.time()
        time.sleep(steady)  # a window of steady traffic, by design (not a readiness wait)
        marks["steady (before)"] = (t, time.time())
        second = evolve(client, service, tmp / "wheels", f"benchlib=={tag}")
        marks["handover (evolve 2)"] = (second["started"], second["done"])
        at: dict[str, float] = {}  # phase (or "switched") -> when, on the supervisor's clock
        while events.poll(1000):
            event = unpack(events.recv_multipart()[-1])
            at[event["data"].get("phase") or event["kind"].split(".")[1]] = event["ts"]
        time.sleep(steady)
        t = time.time()
        marks["after"] = (second["done"], t)
        failed_restarts = []
        for how, label in (("SIGKILL", "restart: SIGKILL incarnation"),
                           ("up", "restart: batos up stop+start"),
                           ("SIGTERM", "restart: SIGTERM incarnation")):
            wait_until(lambda t=t: load.settled(t), 60, "answers before a restart")
            back = restart(service, how)
            time.sleep(1.0)  # one more second of traffic after the restart
            marks[label] = (t, t := time.time())
            if not back:  # bring it back for the counter check
                failed_restarts.append(label)
                service.stop()
                service.start(RESTART_WAIT)
                time.sleep(1.0)
                marks["recovery: batos up stop+start"] = (t, t := time.time())
        load.stopping.set()
        load.join(RESEND_S * ATTEMPTS + 5)
        if load.crashed:
            raise RuntimeError("the load thread failed") from load.crashed
        counter = client.send(COUNTER, "n")
    return load, marks, at, first, second, counter, failed_restarts


def print_logs(tmp: Path) -> None:
    """On a failure, before the run folder goes: the end of each ``batos up``'s output."""
    for out in sorted(tmp.glob("batos-up-*.out")):
        tail = "\n".join(out.read_text(errors="replace").splitlines()[-20:])
        print(f"--- {out.name}, last lines:\n{tail}", file=sys.stderr)


def window(reqs: list[Req], t0: float, t1: float) -> dict[str, Any]:
    """Requests sent in [t0, t1)."""
    mine = [r for r in reqs if t0 <= r.sent < t1]
    ok = sorted(r.latency for r in mine if r.latency is not None and r.error is None)
    times = sorted([t0, t1, *(r.answered for r in reqs
                              if r.answered and not r.error and t0 <= r.answered <= t1)])
    nan = float("nan")
    return {"n": len(mine), "p50": ok[len(ok) // 2] * 1e3 if ok else nan,
            "p99": ok[min(len(ok) - 1, int(0.99 * len(ok)))] * 1e3 if ok else nan,
            "max": ok[-1] * 1e3 if ok else nan, "delayed": sum(r.attempts > 1 for r in mine),
            "failed": sum(r.error is not None for r in mine),
            "gap": max(b - a for a, b in zip(times, times[1:], strict=False)) * 1e3,
            "errors": ", ".join(sorted({r.error for r in mine if r.error}))}


def report(load: Load, marks: dict[str, tuple[float, float]], at: dict[str, float],
           first: dict[str, Any], second: dict[str, Any], counter: int,
           failed_restarts: list[str]) -> None:
    print(f"\n{'handover (s)':<29}" + "".join(f"{p:>10}" for p in PHASES)
          + f"{'to switch':>10}{'total':>7}{'objects':>8}{'obj/s':>7}")
    for label, ev in (("evolve 1 (small image, idle)", first), ("evolve 2 (measured)", second)):
        phases, v = ev["row"]["phases"], ev["v"]
        print(f"{label:<29}" + "".join(f"{phases.get(p, float('nan')):>10.3f}" for p in PHASES)
              + f"{ev['to_switch']:>10.2f}{ev['row']['total']:>7.2f}{v['objects']:>8}"
              f"{v['rate']:>7.0f}  {ev['row']['outcome']}")
    print("validation of evolve 2 (s): " + ", ".join(
        f"{k} {s:.3f}" for k, s in second["v"].get("timings", {}).items()))
    for phase, end in zip(PHASES[:3], ("incarnate", "validate", "switched"), strict=True):
        if phase in at and end in at:
            marks[f"  during {phase}"] = (at[phase], at[end])
    if switched := at.get("switched"):
        marks[f"  {SWITCH_S:g} s before the switch"] = (switched - SWITCH_S, switched)
        marks[f"  {SWITCH_S:g} s after the switch"] = (switched, switched + SWITCH_S)
    print(f"\n{'traffic':<32}{'sent':>6}{'p50 ms':>8}{'p99 ms':>9}{'max ms':>9}{'delayed':>8}"
          f"{'failed':>7}{'gap ms':>9}")
    rows = {}
    for label, (t0, t1) in sorted(marks.items(), key=lambda m: m[1][0]):
        rows[label] = w = window(load.reqs, t0, t1)
        note = f"; not restarted within {RESTART_WAIT:g} s" if label in failed_restarts else ""
        print(f"{label:<32}{w['n']:>6}{w['p50']:>8.1f}{w['p99']:>9.1f}{w['max']:>9.1f}"
              f"{w['delayed']:>8}{w['failed']:>7}{w['gap']:>9.0f}  {w['errors']}{note}")
    for message, count in load.messages.most_common():
        print(f"  error replies: {count} x {message}")
    writes = [r for r in load.reqs if r.write]
    acked = sum(r.error is None and r.latency is not None for r in writes)
    unknown = sum(r.error is not None for r in writes)  # an error may answer a resend of one that ran
    once = "ok" if acked <= counter <= acked + unknown else "WRONG"
    print(f"exactly once: {acked} writes answered ok, {unknown} failed (may or may not have run), "
          f"counter n = {counter}: {once}")
    steady, hand = rows["steady (before)"], rows["handover (evolve 2)"]
    nan = {"max": float("nan")}
    before, after = (rows.get(f"  {SWITCH_S:g} s {w} the switch", nan)["max"] for w in ("before", "after"))
    added = max(before, after) - steady["p50"]
    v1, v2 = first["v"], second["v"]
    print("\ntargets:")
    for what, met, detail in (
        ("0 failed requests during the handover", hand["failed"] == 0,
         f"{hand['failed']} of {hand['n']}, {hand['delayed']} delayed"),
        ("latency added at the switch <= 50 ms", added <= 50,
         f"max {before:.1f} ms sent {SWITCH_S:g} s before the switch, {after:.1f} ms after; "
         f"steady p50 {steady['p50']:.1f} ms: +{added:.1f} ms"),
        ("evolve to switch <= 5 s (warm cache, small image)", first["to_switch"] <= 5,
         f"{first['to_switch']:.2f} s; {v2['objects']:,} objects under traffic: "
         f"{second['to_switch']:.2f} s"),
        ("validation >= 20,000 objects/s", v2["rate"] >= 20_000,
         f"{v2['rate']:,.0f}/s over {v2['objects']:,} objects; small image {v1['rate']:,.0f}/s"),
    ):
        print(f"  {what}: {'met' if met else 'NOT met'} ({detail})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 objects, 3 s windows")
    parser.add_argument("--cache", type=Path, help="kept uv cache (and temporary run folders)",
                        default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                        / "batos-bench-handover")
    opts = parser.parse_args()
    objects, steady = (2_000, 3.0) if opts.quick else (20_000, 10.0)
    uv = subprocess.run([find_uv(), "--version"], capture_output=True, text=True).stdout.strip()
    print("\n".join(machine()) + f"\nuv:       {uv}")
    print(f"mode:     {'quick' if opts.quick else 'full'}: {objects:,} objects, {RATE} req/s "
          f"(reads, writes alternating), {steady:g} s steady windows, probation {PROBATION:g} s, "
          f"resend after {RESEND_S:g} s, {ATTEMPTS} sends\n")
    opts.cache.mkdir(parents=True, exist_ok=True)
    report(*run(opts, objects, steady))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
