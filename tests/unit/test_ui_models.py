"""The UI's view models without a window or a supervisor: parsing, diffs, errors, phases;
and the seed window's source against the crucible's static stage (read, never run here:
importing Kivy's widgets opens a window)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ui_seed
from bridge import RemoteError, Timeout
from tests.unit.ui_fixtures import session_fixture  # noqa: F401
from ui_seed import captions, errors, models, runner
from ui_seed.errors import UiSeedError

ROOT = Path(__file__).resolve().parents[2]


def test_args_are_a_json_list() -> None:
    assert models.parse_args("") == []
    assert models.parse_args(' [1, "x", {"$ref": "genesis"}] ') == [1, "x", {"$ref": "genesis"}]
    with pytest.raises(ValueError, match="JSON list"):
        models.parse_args("[1,")
    with pytest.raises(ValueError, match=r"wrap a single value: \[3\]"):
        models.parse_args("3")


def test_diff_names_versions_and_authors() -> None:
    old = {"version": 1, "author": "genesis", "source": "def f(self):\n    return 1\n"}
    new = {"version": 2, "author": "mind", "source": "def f(self):\n    return 2\n"}
    diff = models.diff_versions(old, new)
    assert "--- v1 (genesis)" in diff
    assert "+++ v2 (mind)" in diff
    assert "-    return 1" in diff
    assert "+    return 2" in diff


def test_values_and_references() -> None:
    assert models.refs_in({"$ref": "u1"}) == ["u1"]
    assert models.refs_in([{"$ref": "u1"}, 3, {"$ref": "u2"}]) == ["u1", "u2"]
    assert models.refs_in({"$ref": "u1", "x": 1}) == []
    assert models.render_value("x" * 500, limit=20) == '"' + "x" * 16 + "..."
    slot = models.SlotView("parent*", "parent", {"$ref": "u1"}, refs=[("u1", "traits")])
    assert slot.text == "-> traits"


def test_errors_say_what_to_do() -> None:
    ep = "tcp://10.0.0.1:7719"
    unreachable = models.explain(Timeout("no reply"), ep, reachable=False)
    assert unreachable.kind == "unreachable"
    assert ep in unreachable.message
    assert "batos up" in unreachable.message
    slow = models.explain(Timeout("no reply after 10s"), ep, reachable=True)
    assert slow.kind == "timeout"
    assert "no reply after 10s" in slow.message
    remote = models.explain(RemoteError("UnknownTarget", "no object 'x'", "inc-1"), ep)
    assert remote.kind == "remote"
    assert remote.title == "UnknownTarget (from inc-1)"
    assert remote.text == "UnknownTarget (from inc-1): no object 'x'"


def test_invalid_input_is_refused_before_any_call(session: models.Session) -> None:
    session.console.send("genesis", "setSlot:value:", "[1,")
    assert session.console.error.kind == "invalid"
    assert not session.console.busy
    session.evolve.start("", "")
    assert "nothing to change" in session.evolve.error.message
    session.browser.open("  ")
    assert session.browser.error.kind == "invalid"


def test_handover_phases_come_from_events(session: models.Session) -> None:
    ev = session.evolve
    for ts, phase in [(10.0, "build"), (12.5, "incarnate"), (13.0, "validate")]:
        ev.event({"kind": "handover.phase", "ts": ts, "data": {"handover": "h1", "phase": phase}})
    ev.event({"kind": "handover.completed", "ts": 14.0,
              "data": {"handover": "h1", "outcome": "switched"}})
    assert [(p["phase"], p["seconds"]) for p in ev.phases] == [
        ("build", 2.5), ("incarnate", 0.5), ("validate", 1.0), ("completed: switched", 0.0)]
    ev.event({"kind": "handover.phase", "ts": 20.0, "data": {"handover": "h2", "phase": "build"}})
    assert [p["phase"] for p in ev.phases] == ["build"]
    assert ev.handover == "h2"


def test_seed_window_passes_the_static_stage() -> None:
    assert runner.check_source(runner.seed_source()) == []


@pytest.mark.parametrize(("source", "reason"), [
    ("def make_app(session:\n    pass\n", "does not parse"),
    ("import os\n\ndef make_app(session):\n    return os\n", "'os'"),
    ("import json\n\ndef make_app(session):\n    return json.__dict__\n", "'__dict__'"),
])
def test_static_stage_refuses_broken_windows(source: str, reason: str) -> None:
    reasons = runner.check_source(source)
    assert any(reason in r for r in reasons), reasons


def test_package_root_is_import_light() -> None:
    for name, allowed in (("__init__", {"__future__", "constants"}), ("constants", {"__future__"})):
        tree = ast.parse((ROOT / "ui_seed" / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= allowed, (name, imported)
    assert ui_seed.WINDOW_RESOURCE == "window.py"
    models_imports = {n.module or "" for n in ast.walk(ast.parse(
        (ROOT / "ui_seed" / "models.py").read_text())) if isinstance(n, ast.ImportFrom)}
    assert not any(m.startswith("kivy") for m in models_imports)


def test_window_source_errors_have_ui_seeds_root() -> None:
    assert issubclass(runner.WindowSourceError, UiSeedError)
    assert runner.WindowSourceError is errors.WindowSourceError
    with pytest.raises(UiSeedError, match="defines no make_app"):
        runner.exec_window("X = 1\n", "test")


def test_the_view_models_know_their_session_only_as_a_host() -> None:
    for name in ("delivery", "browse", "service"):
        tree = ast.parse((ROOT / "ui_seed" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "session" not in imported, name


def test_captions_say_what_the_window_draws(session: models.Session) -> None:
    assert captions.connection_text(session) == "tcp://127.0.0.1:9  connecting  (window from image)"
    assert captions.error_text(session) == ""
    session.error = models.UiError("timeout", "Request timed out", "try again")
    assert captions.error_text(session) == "Request timed out: try again"
    last = {"receiver": "genesis", "selector": "greet:", "args": ["x"], "seconds": 1.5,
            "error": None, "result": {"a": 1}, "synthesized": True, "verdict": {"status": "pass"}}
    assert captions.console_result(last).splitlines() == [
        'genesis greet: ["x"]   (1.5s)', "{", '  "a": 1', "}",
        "synthesized by doesNotUnderstand:", "crucible verdict: {", '  "status": "pass"', "}"]
    assert captions.version_line({"version": 2, "author": "mind", "reason": "why"}) == (
        "v2  by mind  why")
    status = {"state": "serving", "active": "inc-1", "served": 7, "handover": {"phase": "build"}}
    assert captions.supervisor_summary(status) == (
        "supervisor serving   active inc-1   served 7   handover build")
    inc = {"id": "inc-1", "role": "active", "state": "serving", "pid": 42, "env_id": "e1",
           "uptime": 3.0, "served": 7, "packages": {"six": "1"}, "python": "3.11"}
    cells = captions.incarnation_cells(inc)
    assert len(cells) == len(captions.INCARNATION_COLUMNS)
    assert cells[-1] == "1 (python 3.11)"
    assert captions.quarantine_text([]) == "quarantined: none"
    assert captions.events_text([]) == "events: none yet"
    assert captions.events_text([{"kind": "zeo.up", "data": {}}]) == "events:\n  zeo.up {}"
    assert captions.phase_line({"phase": "build", "seconds": None}) == "build   ..."
    assert captions.chain_text({"ok": False, "reason": "entry 3"}) == "CHAIN BROKEN: entry 3"
    assert captions.handover_lines({"handover": "h1", "kind": "evolve", "outcome": "switched",
                                    "total": 2.345, "who": "ada", "phases": {"build": 1.0}}) == (
        "h1  evolve  switched  total 2.35s  by ada", "    build 1.0s")
    assert captions.evolve_status(session.evolve) == ""
