"""Budgets and quarantine through a real supervisor and its confined incarnations.

The incarnations get a small budget (``BATOS_BUDGET_*`` handed through ``[sandbox]
pass_env``) and a heartbeat timeout far longer than it, so what ends an incarnation
here is the budget's own machinery, not the supervisor's heartbeat watch:

* a Python loop over its budget is answered ``BudgetExceeded`` and the incarnation
  keeps serving (same pid);
* C code holding the GIL ends its incarnation through the watchdog's dead man's switch
  (faulthandler, exit 1) well before the heartbeat timeout; twice, and the request is
  answered ``PoisonMessage``; the method is quarantined in the image, the incarnation
  reports it in its heartbeats (``status``), and sending it again answers
  ``Quarantined``;
* a person releases it (``batos quarantine release --zeo``), and it runs again.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from bridge import RemoteError
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (
    BATOS,
    Supervisors,
    supervisors_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

HOG = "def hog(self, n):\n    return sum(range(n))\n"  # C, holding the GIL
SPIN = "def spin(self):\n    while True:\n        pass\n"
BUDGET = {"BATOS_BUDGET_CPU": "1", "BATOS_BUDGET_WALL": "10", "BATOS_BUDGET_GRACE": "1"}


def test_budgets_and_quarantine_in_a_live_system(supervisors: Supervisors) -> None:
    sup = supervisors.start(config={
        "max_restarts": 1, "restart_period": 120, "backoff_initial": 0.05, "backoff_max": 0.2,
        "degraded_retry": 0, "heartbeat_interval": 0.2, "heartbeat_timeout": 60,
        "sandbox": {"pass_env": sorted(BUDGET)},
    }, env=BUDGET)
    client = sup.client
    client.send("genesis", "applyActs:", [
        {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "h", "name": "hogger",
         "slots": {}},
        {"action": "DEFINE_METHOD", "target": "@h", "selector": "hog:", "source": HOG},
        {"action": "DEFINE_METHOD", "target": "@h", "selector": "spin", "source": SPIN},
    ], timeout=30)
    assert client.send("hogger", "hog:", 10) == 45

    # a Python loop: answered, and the same incarnation keeps serving
    pid = sup.active_pid()
    started = time.monotonic()
    with pytest.raises(RemoteError) as over:
        client.send("hogger", "spin", timeout=30)
    assert over.value.type == "BudgetExceeded", over.value
    assert "CPU" in over.value.message
    assert time.monotonic() - started < 20
    assert sup.active_pid() == pid
    assert client.send("hogger", "hog:", 10) == 45

    # C code holding the GIL: the incarnation ends itself, twice, long before heartbeats
    started = time.monotonic()
    with pytest.raises(RemoteError) as poison:
        client.send("hogger", "hog:", 10**15, request_id="hog-1", timeout=90)
    took = time.monotonic() - started
    assert poison.value.type == "PoisonMessage", poison.value
    assert took < 50, took  # two heartbeat timeouts would be 120s
    assert "heartbeat" not in poison.value.message, poison.value.message

    # quarantined in the image, reported by the next incarnation, refused when sent
    def reported() -> Any:
        rows = (sup.status().get("quarantined") or {}).get("methods") or []
        return [r for r in rows if r.get("request") == "hog-1"]
    [row] = wait_until(reported, timeout=30)
    assert row["selector"] == "hog:"
    with pytest.raises(RemoteError) as refused:
        client.send("hogger", "hog:", 10, timeout=30)
    assert refused.value.type == "Quarantined"
    assert "batos quarantine release" in refused.value.message
    assert sup.status()["state"] == "serving"

    # a person releases it through the live image's storage; it runs again
    zeo = sup.status()["zeo"]["address"]
    done = subprocess.run([BATOS, "quarantine", "release", "hogger", "hog:", "--by", "tester",
                           "--reason", "test", "--zeo", zeo, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["released"]["request"] == "hog-1"
    wait_until(lambda: _runs(client), timeout=30)


def _runs(client: Any) -> bool:
    try:
        return client.send("hogger", "hog:", 10, timeout=10) == 45
    except RemoteError as exc:
        if exc.type == "Quarantined":  # the incarnation's view catches up at its next transaction
            return False
        raise
