"""Crash safety: a message is in the image whole or not at all, and acked means durable.

A child process (``children/crash_writer.py``) commits numbered ``record:``
messages in a loop against a FileStorage image and prints each number once
its ``Kernel.send`` has returned. It is SIGKILLed at a random moment (seeded)
20 times. After each kill the image is opened in this process and must hold:

* every acknowledged number, in full;
* nothing else but possibly the one message in flight at the kill
  (max acknowledged + 1);
* every present number in every part: each ``record:`` writes a new record
  object, its name in the name index, the object index, counters on two
  other objects and a slot on genesis, and all of them must agree;
* a FileStorage that opens without error (a torn trailing transaction is
  recovered by ZODB's tail truncation) and then passes ``fstest``.

At the end ``batos verify`` in a separate process must accept the image.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import transaction
from ZODB.scripts import fstest

from tests.integration.lines import Lines
from uvm import bootstrap, open_db

pytestmark = pytest.mark.integration

CHILD = Path(__file__).parent / "children" / "crash_writer.py"
_LOCAL_BATOS = Path(sys.executable).with_name("batos")
BATOS = str(_LOCAL_BATOS) if _LOCAL_BATOS.exists() else shutil.which("batos") or "batos"
ROUNDS = 20
MAX_DELAY = 0.3
SEED = 20240611


def kill_and_reap(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: pgid == pid
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)


def read_image(path: Path) -> set[int]:
    """Open the image for writing (as a restarted process would) and check every record."""
    db = open_db(path)
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    try:
        root = conn.root()
        names, objects = root["batos.names"], root["batos.objects"]

        def slots(name: str) -> dict[str, Any]:
            return objects[names[name]]._slots

        present: dict[int, int] = {}
        for name, uuid in names.items():
            if name.startswith("rec-"):
                present[int(name[4:])] = objects[uuid]._slots.get("n")
        for number, n in present.items():
            assert n == number, f"record rec-{number} holds n={n!r}"
        numbers = set(present)
        top = max(numbers, default=0)
        assert numbers == set(range(1, top + 1)), f"gaps in the records: {sorted(numbers)[-10:]}"
        stored = [o for o in objects.values() if o._slots.get("kind") == "record" and "n" in o._slots]
        assert len(stored) == len(numbers), "a record object is in the index without its name"
        a, b = slots("crashA"), slots("crashB")
        assert (a["count"], a["last"]) == (len(numbers), top), f"crashA disagrees: {a}"
        assert (b["total"], b["last"]) == (sum(numbers), top), f"crashB disagrees: {b}"
        assert slots("genesis").get("lastRecorded", 0) == top, "genesis.lastRecorded disagrees"
        return numbers
    finally:
        tm.abort()
        conn.close()
        db.close()


def run_round(image: Path, start: int, delay: float, log: Path) -> list[int]:
    """Start the writer, let it commit for ``delay`` s, SIGKILL it; the numbers it acked."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(image)], stdout=subprocess.PIPE, stderr=err,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True,
        )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        try:
            ready = lines.get(timeout=30)
        except queue.Empty:
            raise AssertionError(f"writer not READY within 30s: {log.read_text()}") from None
        assert ready == f"READY {start}", f"{ready!r}; stderr: {log.read_text()}"
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            assert line is not None, f"writer died before the kill: {log.read_text()}"
            acked.append(int(line))
    finally:
        kill_and_reap(proc)
    assert proc.returncode == -signal.SIGKILL, f"writer exited {proc.returncode}: {log.read_text()}"
    acked += [int(line) for line in lines.until_eof(timeout=10)]  # flushed before the kill
    assert acked == list(range(start, start + len(acked))), "acks out of order"
    return acked


@pytest.mark.timeout(180)
def test_sigkill_during_commits_never_loses_acked_or_leaves_partial(tmp_path: Path) -> None:
    image = tmp_path / "live_image.fs"
    db = open_db(image)
    bootstrap(db)
    db.close()

    rng = random.Random(SEED)
    committed: set[int] = set()
    total_acked = in_flight_kept = torn_tails = 0
    for rnd in range(ROUNDS):
        start = max(committed, default=0) + 1
        acked = run_round(image, start, rng.uniform(0.0, MAX_DELAY), tmp_path / f"writer{rnd}.err")
        total_acked += len(acked)
        try:
            fstest.check(str(image))
        except fstest.FormatError:
            torn_tails += 1  # killed while writing a transaction; opening must recover
        present = read_image(image)
        fstest.check(str(image))  # after recovery the file is well formed
        must = committed | set(acked)
        in_flight = max(must, default=0) + 1
        assert must <= present, f"round {rnd}: acked but lost: {sorted(must - present)}"
        assert present <= must | {in_flight}, (
            f"round {rnd}: unexpected messages present: {sorted(present - must)}"
        )
        in_flight_kept += in_flight in present
        committed = present

    print(f"\n{ROUNDS} kills: {total_acked} acked, {len(committed)} committed, "
          f"{in_flight_kept} in-flight kept, {torn_tails} torn tails recovered")
    assert total_acked >= ROUNDS, "the writer hardly ran; the test proved little"

    verify = subprocess.run(
        [BATOS, "verify", "--image", str(image)], capture_output=True, text=True,
        timeout=60, start_new_session=True, env={**os.environ, "BATOS_HOME": str(tmp_path)},
    )
    assert verify.returncode == 0, verify.stderr
    assert "verify ok" in verify.stdout
