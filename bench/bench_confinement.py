"""What confinement costs at start: bubblewrap around a python, and an incarnation's spawn -> Ready.

(a) ``/bin/true`` (bubblewrap's own cost), a bare interpreter, ``python -c pass``, and
``python -c "import batos.root.incarnation"``, plain and inside ``envs.sandbox.wrap`` (the
incarnation's profile: same binds, no network), ``ROUNDS`` runs each, alternating; median and min in ms.

(b) An incarnation (``python -m batos.root.incarnation``, the supervisor's argv, on the
running interpreter) against a real ZEO server and a backend ROUTER, from spawn to its
``Ready``, then ``Stop``: ``unconfined``, ``bwrap only`` (the sandbox around
``--unconfined``: no lock, no fork-server) and ``confined`` (the default: bwrap + the
process lock + the fork-server), alternating, after a warm-up start that bootstraps the
image. Goal (issue 11): confined <= unconfined + 100 ms.

Run ``python bench/bench_confinement.py [--quick]``; results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq
from bench_bridge import machine

from bridge.codec import decode_control, encode
from bridge.messages import Ready, Stop
from envs import sandbox
from lexicon.frames import CONTROL
from supervisor import process
from supervisor.config import Home
from supervisor.zeo import ZeoServer

ROOT = Path(__file__).resolve().parents[1]


def bare(rounds: int) -> list[tuple[str, float, float, float, float]]:
    rows = []
    for label, plain_argv in (
            ("/bin/true (bwrap alone)", ["/bin/true"]),
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import batos.root.incarnation'",
             [sys.executable, "-c", "import batos.root.incarnation"])):
        boxed_argv = sandbox.wrap(plain_argv, python=sys.executable, read_only=[ROOT])
        times: dict[str, list[float]] = {"plain": [], "boxed": []}
        for _ in range(rounds):
            for kind, argv in (("plain", plain_argv), ("boxed", boxed_argv)):
                started = time.perf_counter()
                subprocess.run(argv, check=True, cwd=ROOT, stdin=subprocess.DEVNULL)
                times[kind].append((time.perf_counter() - started) * 1000)
        rows.append((label, statistics.median(times["plain"]), min(times["plain"]),
                     statistics.median(times["boxed"]), min(times["boxed"])))
    return rows


MODES = ("unconfined", "bwrap only", "confined")


def incarnation_argv(mode: str, home: Home, ident: str) -> list[str]:
    """What ``supervisor.incarnations.spawn_incarnation`` runs, per mode: ``unconfined``
    (no sandbox, no lock), ``bwrap only`` (the sandbox around ``--unconfined``: no
    lock, no fork-server) and ``confined`` (the default: bwrap + lock + fork-server)."""
    argv = [sys.executable, "-m", "batos.root.incarnation", "--backend", home.backend, "--zeo",
            str(home.zeo_socket), "--id", ident, "--env-id", "current", "--workers", "4",
            "--heartbeat", "1.0", "--packages", "", "--image", str(home.image)]
    if mode != "confined":
        argv.append("--unconfined")
    if mode == "unconfined":
        return argv
    return sandbox.wrap(argv, python=sys.executable, read_only=[home.sockets, home.image, ROOT])


def incarnation_starts(folder: Path, rounds: int) -> dict[str, list[float]]:
    """spawn -> Ready in ms per mode, ``rounds`` each, alternating, after one warm-up
    start that bootstraps the image."""
    home = Home.at(folder / "home")
    home.prepare()
    zeo = ZeoServer(home.image, home.zeo_socket, home.logs / "zeo.log")
    zeo.start()
    ctx = zmq.Context()
    backend = ctx.socket(zmq.ROUTER)
    backend.setsockopt(zmq.LINGER, 0)
    backend.bind(home.backend)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for round_ in range(rounds + 1):
            for mode in MODES:
                ident = f"bench-{round_}-{MODES.index(mode)}"
                argv = incarnation_argv(mode, home, ident)
                started = time.perf_counter()
                proc = process.spawn(argv, log_file=home.logs / f"{ident}.log",
                                     sandboxed=mode != "unconfined")
                while True:
                    if not backend.poll(60_000):
                        raise RuntimeError(f"no Ready from {ident} in 60 s; see its log")
                    frames = backend.recv_multipart()
                    if frames[0] == ident.encode() and frames[1] == CONTROL and isinstance(
                            decode_control(frames[2]), Ready):
                        break
                took = (time.perf_counter() - started) * 1000
                if round_:  # the first round bootstraps the image: a warm-up
                    times[mode].append(took)
                backend.send_multipart([ident.encode(), CONTROL, encode(Stop(reason="bench"))])
                if process.stop(proc, ident, grace=20) != 0:
                    raise RuntimeError(f"{ident} did not stop cleanly; see its log")
    finally:
        backend.close()
        ctx.term()
        zeo.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, kills = (3, 2) if args.quick else (10, 8)
    reason = sandbox.available()
    if reason is not None:
        print(f"no sandbox here: {reason}", file=sys.stderr)
        return 2
    print("\n".join(machine()))
    print(f"\n(a) interpreter start, {rounds} runs each, ms: median (min)")
    print("| command | plain | in bwrap | + |")
    print("|---|---|---|---|")
    for label, plain, plain_min, boxed, boxed_min in bare(rounds):
        print(f"| {label} | {plain:.1f} ({plain_min:.1f}) | {boxed:.1f} ({boxed_min:.1f}) | "
              f"{boxed - plain:+.1f} |")
    with tempfile.TemporaryDirectory(prefix="batos-bench-confine-") as tmp:
        times = incarnation_starts(Path(tmp), kills)
    print(f"\n(b) incarnation spawn -> Ready (image open through ZEO, bootstrap done), "
          f"{kills} starts each, alternating, ms")
    print("| mode | median | min | max |")
    print("|---|---|---|---|")
    for mode in MODES:
        values = times[mode]
        print(f"| {mode} | {statistics.median(values):.0f} | {min(values):.0f} | "
              f"{max(values):.0f} |")
    base = statistics.median(times["unconfined"])
    for mode in MODES[1:]:
        print(f"{mode} - unconfined (medians): {statistics.median(times[mode]) - base:+.0f} ms")
    print("goal (issue 11): confined <= unconfined + 100 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
