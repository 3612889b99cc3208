"""The frozen missing-selector suite (bench/mind_tasks.py) is sound.

Its reference methods pass its hidden checks through the real crucible, and a mind
that answers wrongly fails them: the harness can tell a good mind from a bad one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import bench_mind_suite as suite  # noqa: E402
from bench.mind_tasks import TASKS  # noqa: E402
from weaver.chat import Answer  # noqa: E402

pytestmark = pytest.mark.integration


def test_the_suite_has_at_least_thirty_tasks_with_hidden_checks():
    assert len(TASKS) >= 30
    assert len({t["selector"] for t in TASKS}) == len(TASKS)
    assert all(t["checks"] for t in TASKS)


def test_the_reference_answers_solve_every_task(capsys):
    assert suite.main(["--reference", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["pass@1"] == 1.0
    assert result["summary"]["tasks"] == len(TASKS)


class WrongMind(suite.ReferenceMind):
    """Answers every task with a method of the right name that returns 0."""

    def chat(self, messages, **kw):
        answer = super().chat(messages, **kw)
        name = answer.parsed["source"].split("(")[0].removeprefix("def ")
        args = answer.parsed["source"].split("(", 1)[1].split(")")[0]
        wrong = {"thought": "wrong", "source": f"def {name}({args}):\n    return 0\n"}
        return Answer(text="", parsed=wrong, model="wrong", structured=True, elapsed=0.0)


def test_a_wrong_mind_fails_the_hidden_checks(tmp_path):
    outcomes = [suite.run_task(task, WrongMind(), tmp_path, attempts=1) for task in TASKS[:4]]
    assert not any(o["solved"] for o in outcomes)
    assert all("hidden checks" in o.get("error", "") for o in outcomes)
