"""extract_json and extract_code: the payload found in a model's free text, or BadAnswer."""

from __future__ import annotations

import pytest

from weaver import BadAnswer, extract_code, extract_json


@pytest.mark.parametrize(("text", "expected"), [
    ('{"a": 1}', {"a": 1}),
    ('  [1, 2, 3]\n', [1, 2, 3]),
    ("42", 42),
    ('Here you go:\n```json\n{"verdict": "approve"}\n```\nAnything else?', {"verdict": "approve"}),
    ('```\n{"x": [1, {"y": 2}]}\n```', {"x": [1, {"y": 2}]}),
    ('```python\nprint(1)\n```\n```json\n{"k": true}\n```', {"k": True}),
    ('The answer is {"a": "b}{"} and that is all.', {"a": "b}{"}),
    ('Acts: [{"action": "CLONE_PROTOTYPE", "name": "x"}] done', [{"action": "CLONE_PROTOTYPE", "name": "x"}]),
    ('{not json} but then {"ok": 1}', {"ok": 1}),
    ('escaped "quote": {"s": "a \\" } b"}', {"s": 'a " } b'}),
    ('```json\n{"cut": "off", "n": 1}', {"cut": "off", "n": 1}),  # unclosed fence
])
def test_extract_json_finds_the_value(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "no json here", '{"a": 1', "```json\n{broken\n```", "[1, 2",
])
def test_extract_json_raises_bad_answer_with_the_text(text):
    with pytest.raises(BadAnswer) as info:
        extract_json(text)
    assert info.value.text == text


def test_extract_json_on_a_long_garbage_text_is_quick():
    text = "{[" * 5000 + "garbage"
    with pytest.raises(BadAnswer):
        extract_json(text)


METHOD = "def double(self):\n    return 2 * self.n\n"


@pytest.mark.parametrize("text", [
    METHOD,
    f"```python\n{METHOD}```",
    f"Here is the method:\n\n```py\n{METHOD}```\nIt doubles n.",
    f"```\n{METHOD}```",
    f"Sure. Here it is:\n{METHOD}\nThis returns twice n.",
    f"```python\n{METHOD}",  # cut off before the closing fence
])
def test_extract_code_finds_the_function(text):
    assert extract_code(text) == METHOD


def test_python_fence_wins_over_other_fences():
    text = f"```json\n{{\"a\": 1}}\n```\n```python\n{METHOD}```"
    assert extract_code(text) == METHOD


def test_fenced_code_is_returned_even_when_it_does_not_parse():
    # The reviewer reports the syntax error with its own reasons.
    assert extract_code("```python\ndef broken(:\n```") == "def broken(:\n"


def test_decorated_and_async_definitions():
    source = "@staticmethod\ndef f():\n    return 1\n"
    assert extract_code("ok:\n" + source) == source
    assert extract_code("async def g(self):\n    return 1") == "async def g(self):\n    return 1\n"


@pytest.mark.parametrize("text", [
    "", "I do not know how to do that.", "x = 1", "def (broken", "hello world",
])
def test_extract_code_raises_bad_answer(text):
    with pytest.raises(BadAnswer) as info:
        extract_code(text)
    assert info.value.text == text
