"""The mind's prompt names what each capability namespace grants, within its bounds."""

from __future__ import annotations

import pytest

from uvm import capabilities, prompt


def context() -> dict:
    return {"receiver": "u", "names": [], "label": "thing (u)", "slots": [], "chain": [],
            "selector": "average:", "function": "average", "arguments": ["[1, 2]"],
            "examples": []}


def line_of(text: str, name: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(f"  {name}: ")]
    assert len(found) == 1, text
    return found[0]


def test_the_rules_list_each_namespace_with_its_grants() -> None:
    system = prompt.messages(context())[0]["content"]
    for name in capabilities.NAMES:
        line_of(system, name)
    assert line_of(system, "json") == "  json: JSONDecodeError, dumps, loads"
    assert "sqrt" in line_of(system, "math")
    assert "pi" in line_of(system, "math").split(": ", 1)[1].split(", ")
    assert "mean" in line_of(system, "statistics")
    # what a module has and its namespace does not grant is not suggested
    assert "sys" not in line_of(system, "statistics")
    assert "copyreg" not in line_of(system, "re")
    assert "decoder" not in line_of(system, "json")
    assert "sleep" not in line_of(system, "time")


@pytest.mark.parametrize(("names", "limit"), [
    ([f"name{i}" for i in range(200)], 120),
    (["x" * 50] * 10, 60),
    ([], 40),
])
def test_a_namespace_line_stays_within_its_limit_and_says_what_it_left_out(names, limit) -> None:
    line = prompt._listed("ns", names, limit)
    assert len(line) <= limit + len(f"... ({len(names)} more)")
    if names and len(", ".join(names)) > limit:
        assert line.endswith("more)")
        shown = line.split(": ", 1)[1].split(", ")[:-1]
        left = int(line.rsplit("(", 1)[1].split()[0])
        assert len(shown) + left == len(names)


def test_all_grants_stay_within_the_total_limit() -> None:
    text = prompt.grants_text()
    assert len(text) <= prompt.GRANTS_CHARS
    short = prompt.grants_text(limit=300)
    assert len(short) <= 300
    assert short.endswith("(more not listed)")
