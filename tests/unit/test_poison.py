"""What operators see of poison messages: the status rows the ledger gives and the lines the
UI's Incarnations tab draws from them (no window, no supervisor)."""

from __future__ import annotations

from bridge.messages import QuarantinedMethod
from supervisor.poison import PoisonLedger
from supervisor.routing import RoutingTable
from tests.unit.ui_fixtures import session_fixture  # noqa: F401
from ui_seed import models

A = (b"\x00", b"client-a")


def _status_after_a_poison_message() -> dict:
    ledger = PoisonLedger()
    table = RoutingTable(poison=ledger)
    for death, incarnation in enumerate(("inc-1", "inc-2"), start=1):
        table.switch(incarnation)
        table.accept("bad", A, b"x", now=death, target="victim", selector="crash:")
        table.release_pending(now=death)
        table.died(incarnation, "-11 SIGSEGV", now=death + 0.5)
        table.switch(None)
        table.orphan(incarnation)
    ledger.quarantines_due("inc-3")
    ledger.report("inc-3", [QuarantinedMethod(holder="a1b2", selector="crash:", request="bad",
                                              reason="killed its incarnation twice")], now=3)
    return {"state": "serving", "incarnations": [], "poisoned": ledger.recent(now=4),
            "quarantined": ledger.reported(now=4)}


def test_status_rows_name_the_request_the_deaths_and_the_quarantine() -> None:
    status = _status_after_a_poison_message()
    [row] = status["poisoned"]
    assert row["id"] == "bad"
    assert (row["target"], row["selector"]) == ("victim", "crash:")
    assert row["deaths"] == ["inc-1: -11 SIGSEGV", "inc-2: -11 SIGSEGV"]
    assert row["quarantine"] == "reported"
    assert row["ago"] == 1.5
    assert status["quarantined"]["reported_by"] == "inc-3"
    assert status["quarantined"]["count"] == 1
    assert status["quarantined"]["ago"] == 1


def test_the_incarnations_tab_lists_quarantined_methods_and_poison_messages(
        session: models.Session) -> None:
    incs = session.incarnations
    assert incs.quarantine_lines == []
    incs.status = _status_after_a_poison_message()
    lines = incs.quarantine_lines
    assert lines[0] == "quarantined: crash: on a1b2 (killed its incarnation twice)"
    assert lines[1].startswith("poison message bad: crash: to victim, 2 death(s): inc-1: -11 SIGSEGV")
    assert lines[1].endswith("[quarantine reported]")
    incs.status = {"state": "serving", "quarantined": {"count": 250, "methods": [
        {"holder": f"o{i}", "selector": "m"} for i in range(100)]}, "poisoned": []}
    lines = incs.quarantine_lines
    assert len(lines) == 11
    assert lines[-1] == "... 240 more quarantined"
