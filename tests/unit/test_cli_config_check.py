"""``[mind]`` and ``[inquiry]`` are checked at ``batos up``, before anything starts.

``batos.config_check.problems`` names the table, the key and what is wrong; its models'
keys are pinned to what the incarnation reads, so a key added there and not here fails
a test instead of being refused at start. ``batos up`` with a bad table exits 2 with
one line (JSON with ``--json``) and leaves the home as it was.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from batos.config_check import InquiryTable, MindOptions, problems
from batos.main import main
from batos.root.inquiry import TRAINER_KEYS
from batos.root.mind import MIND_KEYS
from weaver.inquiry import InquiryConfig

GOOD_MIND = {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m",
             "timeout": 30, "attempts": 3, "policy": {"reviews": {"logic": "advisory"}}}
GOOD_INQUIRY = {"enabled": True, "idle_seconds": 300, "threshold": 0.4, "max_steps": 8,
                "facet": "persona response", "templates": "none", "interval": 10, "lr": 1e-3,
                "qlora": False, "eval_limit": None}


def test_good_tables_have_no_problems():
    assert problems(GOOD_MIND, GOOD_INQUIRY) == []
    assert problems({}, {}) == []
    assert problems({"attempts": 1}, {}) == []  # the backend from BATOS_MIND_* or [vllm]


def test_the_keys_are_those_the_incarnation_reads():
    assert set(MindOptions.model_fields) == MIND_KEYS
    loop_keys = {f.name for f in dataclasses.fields(InquiryConfig)}
    assert loop_keys | set(TRAINER_KEYS) | {"interval"} <= set(InquiryTable.model_fields)
    # and what the supervisor fills in from [vllm] (supervisor.incarnations.inquiry_config)
    assert {"base_model", "vllm_url", "max_loras", "max_lora_rank", "home"} <= set(
        InquiryTable.model_fields)


@pytest.mark.parametrize(("mind", "inquiry", "expected"), [
    ({**GOOD_MIND, "timeot": 3}, {},
     "[mind] timeot: not a key of [mind] (did you mean timeout?)"),
    ({**GOOD_MIND, "attempts": "3"}, {},
     "[mind] attempts: Input should be a valid integer, got '3'"),
    ({**GOOD_MIND, "retries": "many"}, {}, "[mind] retries: Input should be a valid integer"),
    ({"backend": "openai", "base_url": "http://x"}, {}, "[mind]: backend 'openai' needs model"),
    ({"base_url": "http://x", "model": "m"}, {}, "[mind] backend: Field required"),
    ({**GOOD_MIND, "policy": {"limits": {"cpu_seconds": 0}}}, {},
     "[mind] policy.limits.cpu_seconds: Input should be greater than 0, got 0"),
    ({**GOOD_MIND, "policy": {"logik": "off"}}, {}, "[mind] policy.logik: not a key of [mind] policy"),
    ({}, {"max_step": 3}, "[inquiry] max_step: not a key of [inquiry] (did you mean max_steps?)"),
    ({}, {"enabled": "yes"}, "[inquiry] enabled: Input should be a valid boolean, got 'yes'"),
    ({}, {"max_steps": 2.5}, "[inquiry] max_steps: Input should be a valid integer"),
    ({}, {"budget_seconds": 0}, "[inquiry] budget_seconds: Input should be greater than 0, got 0"),
    ({}, {"templates": "some"}, "[inquiry] templates: Input should be 'missing', 'all' or 'none'"),
])
def test_a_bad_key_or_type_names_the_table_and_key(mind, inquiry, expected):
    found = problems(mind, inquiry)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_every_problem_is_reported_at_once():
    found = problems({**GOOD_MIND, "attempts": 0, "colour": "red"},
                     {"rank": "eight", "threshold": -1})
    assert len(found) == 4
    assert [line.split()[0] for line in found] == ["[mind]", "[mind]", "[inquiry]", "[inquiry]"]


def _home(tmp_path, config: str):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(config)
    return home


BAD = '[mind]\nbackend = "replay"\npath = "answers.jsonl"\nattempts = "2"\n\n[inquiry]\nmax_step = 3\n'


def test_up_refuses_a_bad_table_before_anything_starts(tmp_path, capsys):
    home = _home(tmp_path, BAD)
    assert main(["up", "--home", str(home), "--env-mode", "current"]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("batos up: ConfigError: [mind] attempts: Input should be a valid integer")
    assert "[inquiry] max_step: not a key of [inquiry] (did you mean max_steps?)" in line
    assert captured.out == ""
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]  # nothing was started


def test_up_with_json_refuses_as_a_json_line(tmp_path, capsys):
    home = _home(tmp_path, BAD)
    assert main(["up", "--home", str(home), "--json"]) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["type"] == "ConfigError"
    assert error["problems"] == [
        "[mind] attempts: Input should be a valid integer, got '2'",
        "[inquiry] max_step: not a key of [inquiry] (did you mean max_steps?)",
    ]
    assert sorted(p.name for p in home.iterdir()) == ["config.toml"]


def test_up_names_a_config_file_error_too(tmp_path, capsys):
    home = _home(tmp_path, "workers = 'two'\n")
    assert main(["up", "--home", str(home)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("batos up: ConfigError: config ")
    assert "workers" in line
