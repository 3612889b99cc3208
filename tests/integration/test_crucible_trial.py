"""The trial stage against real images: a FileStorage held open for writing by this test
process (the worker opens it read-only beside it) and a real ZEO server.

Every trial must leave the image exactly as it was.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from crucible import Crucible, ImageRef, Policy, Proposal, TrialLimits, TrialRunner
from tests.conftest import wait_until
from tests.integration.crucible_fixtures import gone, image_state
from tests.integration.zeo_fixtures import (
    kill_and_reap,
    start_runzeo,
    zeo_address_fixture,  # noqa: F401
)
from uvm import Kernel, bootstrap, open_db

pytestmark = pytest.mark.integration

BUMP = "def bump(self, k):\n    self.n = self.n + k\n    return self.n\n"
FAST = TrialLimits(cpu_seconds=1.0, memory_mb=256, wall_seconds=5.0)


@pytest.fixture
def runner(db: Any, image_path: Path):
    Kernel(db).send("genesis", "setSlot:value:", ["n", 41])
    with TrialRunner(ImageRef(path=str(image_path)), FAST) as r:
        yield r


def trial(runner: TrialRunner, source: str, selector: str = "bump:", args=(1,)) -> Any:
    return runner.run(Proposal(source=source), receiver="genesis", selector=selector,
                      args=list(args))


def test_a_good_method_passes_with_its_result_and_the_image_is_unchanged(db, image_path, runner):
    before = image_state(db, image_path)
    verdict = trial(runner, BUMP)
    assert verdict.status == "pass", verdict.reasons
    assert verdict.detail["result"] == 42
    assert verdict.detail["changed"] is True  # it wrote a slot, and that was aborted
    assert image_state(db, image_path) == before
    assert Kernel(db).send("genesis", "n") == 41


def test_a_trial_sees_a_commit_made_just_before_it(db, runner):
    Kernel(db).send("genesis", "setSlot:value:", ["n", 99])
    verdict = trial(runner, BUMP)
    assert verdict.detail["result"] == 100


def test_an_exception_fails_with_its_type(runner):
    verdict = trial(runner, "def bump(self, k):\n    return k / 0\n")
    assert verdict.status == "fail"
    assert "ZeroDivisionError" in verdict.reasons[0]


def test_an_unserializable_result_fails(runner):
    verdict = trial(runner, "def bump(self, k):\n    return {k: 1}\n")
    assert verdict.status == "fail"
    assert "cannot leave the image" in verdict.reasons[0]


def test_cpu_limit(db, image_path):
    with TrialRunner(ImageRef(path=str(image_path)),
                     TrialLimits(cpu_seconds=0.5, wall_seconds=20)) as r:
        verdict = trial(r, "def bump(self, k):\n    while True:\n        k = k + 1\n")
    assert verdict.status == "fail"
    assert "CPU limit of 0.5s" in verdict.reasons[0]


def test_wall_clock_limit(db, image_path):
    with TrialRunner(ImageRef(path=str(image_path)),
                     TrialLimits(cpu_seconds=30, wall_seconds=1.0)) as r:
        verdict = trial(r, "def bump(self, k):\n    while True:\n        k = k + 1\n")
    assert verdict.status == "fail"
    assert "wall-clock limit of 1s" in verdict.reasons[0]


@pytest.mark.parametrize("through", ["here", "fork-server"])
def test_a_worker_holding_the_gil_past_the_wall_clock_is_killed_and_reaped(db, image_path, through):
    """A C loop the budget cannot interrupt: the parent kills the worker at the wall clock,
    through its process group when it started it (envs.children), through the fork-server
    when that started it; the killed worker is reaped, the spare stays."""
    import psutil

    from crucible.trial import worker_command
    from envs.spawner import Spawner

    server = Spawner.start([worker_command(network=False)]) if through == "fork-server" else None
    try:
        with TrialRunner(ImageRef(path=str(image_path)), TrialLimits(cpu_seconds=30, wall_seconds=1.0),
                         spawner=server) as r:
            verdict = trial(r, "def bump(self, k):\n    return sum(range(10**12))\n")
            assert verdict.status == "fail"
            assert verdict.detail["killed"] is True
            assert "wall-clock limit of 1s" in verdict.reasons[0]
            spare = wait_until(lambda: (pids := r.live_pids()) and len(pids) == 1 and pids)
            if server is not None:
                wait_until(lambda: [p.pid for p in psutil.Process(server.server_pid).children()]
                           == spare)
    finally:
        if server is not None:
            server.close()


def test_memory_limit(runner):
    verdict = trial(runner, "def bump(self, k):\n    return 'x' * 10**10\n")
    assert verdict.status == "fail"
    assert "out of memory" in verdict.reasons[0]


def test_recursion_fails(runner):
    verdict = trial(runner, "def bump(self, k):\n    return self.bump(k)\n")
    assert verdict.status == "fail"
    assert "recursed too deeply" in verdict.reasons[0]


def test_acts_are_applied_on_the_receiver_and_aborted(db, image_path, runner):
    before = image_state(db, image_path)
    acts = [{"action": "ADD_SLOT", "slot": "step", "value": 5},
            {"action": "DEFINE_METHOD", "selector": "bump:",
             "source": "def bump(self, k):\n    return self.n + self.step * k\n"}]
    verdict = runner.run(Proposal(acts=acts), receiver="genesis", selector="bump:", args=[2])
    assert verdict.status == "pass", verdict.reasons
    assert verdict.detail["result"] == 51
    missing = runner.run(Proposal(acts=acts[:1]), receiver="genesis", selector="bump:", args=[2])
    assert missing.status == "fail"
    assert "does not understand" in missing.reasons[0]
    assert image_state(db, image_path) == before


def test_every_worker_is_gone_after_close(db, image_path):
    r = TrialRunner(ImageRef(path=str(image_path)), FAST)
    assert trial(r, "def bump(self, k):\n    return k\n").status == "pass"
    pids = wait_until(r.live_pids)
    r.close()
    assert all(gone(pid) for pid in pids)
    assert r.live_pids() == []
    verdict = trial(r, BUMP)
    assert verdict.status == "error"
    assert "closed" in verdict.reasons[0]


def test_workers_are_single_use_and_a_warm_spare_follows(db, image_path, runner):
    first = trial(runner, BUMP)
    second = trial(runner, BUMP)
    assert first.status == second.status == "pass"
    assert second.detail["result"] == 42  # the first trial's write never reached the second


def test_the_crucible_runs_the_trial_after_static(db, image_path):
    with Crucible(image=ImageRef(path=str(image_path)), policy=Policy(limits=FAST)) as c:
        verdict = c.review("def double(self, x):\n    return 2 * x\n", receiver="genesis",
                           selector="double:", args=[21])
        assert verdict.approved, verdict.reasons
        assert verdict.stage("trial").detail["result"] == 42
        bad = c.review("def double(self, x):\n    return x[5]\n", receiver="genesis",
                       selector="double:", args=[21])
    assert not bad.approved
    assert bad.reasons[0].startswith("trial: ")


def test_zeo_image(zeo_address):
    db = open_db(zeo=zeo_address)
    try:
        bootstrap(db)
        kernel = Kernel(db)
        kernel.send("genesis", "setSlot:value:", ["n", 1])
        with TrialRunner(ImageRef(zeo=zeo_address), FAST) as r:
            assert trial(r, BUMP).detail["result"] == 2
            last = db.storage.lastTransaction()
            kernel.send("genesis", "setSlot:value:", ["n", 10])
            assert trial(r, BUMP).detail["result"] == 11  # the warm spare sees the new commit
            failed = trial(r, "def bump(self, k):\n    return [][k]\n")
            assert failed.status == "fail"
        assert kernel.send("genesis", "n") == 10
        assert db.storage.lastTransaction() != last  # (our own commit moved it; trials did not)
        assert db.storage.lastTransaction() == _last_after(db)
    finally:
        db.close()


def _last_after(db: Any) -> bytes:
    db.storage.sync()
    return db.storage.lastTransaction()


def _cli(*argv: str) -> int:
    from batos import crucible as command

    parser = argparse.ArgumentParser()
    command.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_check_against_an_image(db, image_path, tmp_path, capsys):
    good = tmp_path / "double.py"
    good.write_text("def double(self, x):\n    return 2 * x\n")
    assert _cli("crucible", "check", str(good), "--receiver", "genesis", "--args", "[21]",
                "--image", str(image_path), "--json") == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["approved"] is True
    assert verdict["stages"][1]["detail"]["result"] == 42
    assert _cli("crucible", "check", str(good), "--receiver", "genesis", "--args", "[21]",
                "--image", str(image_path)) == 0
    shown = capsys.readouterr().out.splitlines()  # for a person: the outcome, a line per stage
    assert shown[0] == "approved"
    assert any(line.split()[:3] == ["trial", "pass", "result=42"] for line in shown)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"source": "def double(self, x):\n    import os\n    return 1\n"}))
    assert _cli("crucible", "check", str(bad), "--receiver", "genesis", "--selector", "double:",
                "--image", str(image_path), "--json") == 1
    assert "static: " in json.loads(capsys.readouterr().out)["reasons"][0]
    assert _cli("crucible", "check", str(bad), "--receiver", "genesis", "--selector", "double:",
                "--image", str(image_path)) == 1
    assert capsys.readouterr().out.startswith("rejected: static: ")
    assert _cli("crucible", "check", str(good), "--receiver", "genesis", "--args", "{",
                "--image", str(image_path)) == 2
    assert "--args is not JSON" in capsys.readouterr().err
    assert _cli("crucible", "check", str(good), "--receiver", "genesis",
                "--image", str(tmp_path / "none.fs"), "--json") == 2
    assert json.loads(capsys.readouterr().err)["error"]["type"] == "ImageError"


def test_a_sandboxed_worker_reaches_a_zeo_socket_recreated_by_a_restart(tmp_path):
    """Workers started outside an incarnation run in bwrap and see the ZEO socket's folder
    read-only (not the socket file read-write): connecting works, and a socket the server
    recreated is the one they see. The runner is made on a thread that then ends: the
    workers, started by the runner's own starter thread, outlive it (--die-with-parent)."""
    import shutil
    import tempfile
    import threading

    from envs import sandbox

    if sandbox.available() is not None:
        pytest.skip(f"no OS sandbox: {sandbox.available()}")
    sockdir = Path(tempfile.mkdtemp(prefix="batos-zeo-"))
    sock, storage, log = sockdir / "zeo.sock", tmp_path / "zeo.fs", tmp_path / "zeo.log"
    server = start_runzeo(sock, storage, log)
    made: dict[str, Any] = {}
    try:
        db = open_db(zeo=str(sock))
        try:
            bootstrap(db)
            Kernel(db).send("genesis", "setSlot:value:", ["n", 1])
        finally:
            db.close()
        maker = threading.Thread(
            target=lambda: made.update(r=TrialRunner(ImageRef(zeo=str(sock)), FAST)))
        maker.start()
        maker.join()
        r = made["r"]
        assert r.sandbox == "bwrap"
        spare = wait_until(r.live_pids)  # started on the starter thread, alive after maker
        assert trial(r, BUMP).detail["result"] == 2
        argv = r._starter.argv
        grants = {(argv[i], argv[i + 1]) for i in range(len(argv) - 1)}
        assert ("--ro-bind", str(sockdir)) in grants
        assert not any(str(sock) == argv[i + 1] for i in range(len(argv) - 1)
                       if argv[i] in ("--bind", "--ro-bind"))
        # the worker killed after that trial leaves live_pids once the starter thread reaps it
        wait_until(lambda: (pids := r.live_pids()) and all(not gone(pid) for pid in pids))
        assert spare  # the first spare served the first trial
        # the server restarts and recreates its socket; the warm spare started before
        kill_and_reap(server, grace=10.0)
        sock.unlink(missing_ok=True)
        server = start_runzeo(sock, storage, log)
        verdict = trial(r, BUMP)
        assert verdict.status == "pass", verdict.reasons
        assert verdict.detail["result"] == 2  # trials never commit
        r.close()
    finally:
        if "r" in made:
            made["r"].close()
        kill_and_reap(server, grace=10.0)
        shutil.rmtree(sockdir, ignore_errors=True)
