"""ReplayBackend and Recorder: matching, placeholders, limits, reloads, threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from weaver import (
    BadAnswer,
    BadMindConfig,
    MindUnavailable,
    Recorder,
    ReplayBackend,
    ReplayMiss,
    request_key,
)
from weaver.chat import Answer


def write(path: Path, *lines: dict) -> Path:
    with path.open("a") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return path


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are the mind."}, {"role": "user", "content": text}]


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def test_request_key_ignores_ids_and_times():
    a = user("obj 3f2b8c1e-9d4a-4e6b-8a7c-1b2d3e4f5a6b at 2024-05-01T10:00:00Z, t=1714557600.25")
    b = user("obj 0a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d at 2030-12-31 23:59:59.5+02:00, t=1999999999.0")
    assert request_key(a, None, None) == request_key(b, None, None)
    assert request_key(a, None, None) != request_key(a, SCHEMA, None)
    assert request_key(a, None, None) != request_key(a, None, "adapter")
    assert request_key(a, None, None) != request_key(user("obj 42 at noon"), None, None)


def test_match_lines_answer_by_substrings(tmp_path):
    path = write(tmp_path / "r.jsonl",
                 {"match": ["does not understand", "#double"], "answer": {"text": "def double(self):\n    return 2\n"}},
                 {"match": ["#triple"], "answer": {"text": '{"n": 3}'}})
    mind = ReplayBackend(path)
    answer = mind.chat(user("Object x does not understand #double"))
    assert isinstance(answer, Answer)
    assert answer.text.startswith("def double")
    assert answer.parsed is None
    assert answer.model == "replay"
    assert answer.structured is False
    assert mind.chat(user("#triple please"), schema=SCHEMA).parsed == {"n": 3}


def test_exact_key_wins_over_match(tmp_path):
    messages = user("hello there")
    path = write(tmp_path / "r.jsonl",
                 {"match": ["hello"], "answer": {"text": "by match"}},
                 {"key": request_key(messages, None, None), "answer": {"text": "by key"}})
    assert ReplayBackend(path).chat(messages).text == "by key"
    assert ReplayBackend(path).chat(user("hello you")).text == "by match"


def test_times_limits_a_line_then_the_next_one_answers(tmp_path):
    path = write(tmp_path / "r.jsonl",
                 {"match": ["ask"], "times": 1, "answer": {"text": "first"}},
                 {"match": ["ask"], "times": 2, "answer": {"text": "second"}})
    mind = ReplayBackend(path)
    assert [mind.chat(user("ask")).text for _ in range(3)] == ["first", "second", "second"]
    with pytest.raises(ReplayMiss):
        mind.chat(user("ask"))


def test_parsed_comes_from_the_line_or_the_text(tmp_path):
    path = write(tmp_path / "r.jsonl",
                 {"match": ["#alpha"], "answer": {"text": "ignored", "parsed": {"n": 1}}},
                 {"match": ["#beta"], "answer": {"text": "```json\n{\"n\": 2}\n```"}},
                 {"match": ["#gamma"], "answer": {"text": "no json"}})
    mind = ReplayBackend(path)
    assert mind.chat(user("#alpha"), schema=SCHEMA).parsed == {"n": 1}
    assert mind.chat(user("#beta"), schema=SCHEMA).parsed == {"n": 2}
    assert mind.chat(user("#gamma")).text == "no json"
    with pytest.raises(BadAnswer) as info:
        mind.chat(user("#gamma"), schema=SCHEMA)
    assert info.value.text == "no json"


def test_error_lines_raise_the_named_error(tmp_path):
    path = write(tmp_path / "r.jsonl",
                 {"match": ["down"], "error": {"type": "MindUnavailable", "message": "server gone"}},
                 {"match": ["bad"], "error": {"type": "BadAnswer", "message": "garbage"},
                  "answer": {"text": "%%%"}})
    mind = ReplayBackend(path)
    with pytest.raises(MindUnavailable, match="server gone"):
        mind.chat(user("down"))
    with pytest.raises(BadAnswer, match="garbage") as info:
        mind.chat(user("bad"))
    assert info.value.text == "%%%"


def test_replay_miss_names_the_file_the_prompt_and_how_to_record(tmp_path):
    path = write(tmp_path / "r.jsonl", {"match": ["nothing like it"], "answer": {"text": "x"}})
    with pytest.raises(ReplayMiss) as info:
        ReplayBackend(path).chat(user("Object counter does not understand #frobnicate"))
    message = str(info.value)
    assert str(path) in message
    assert "Object counter does not understand #frobnicate" in message
    assert "BATOS_MIND_RECORD" in message


def test_appended_lines_are_seen_without_reopening(tmp_path):
    path = write(tmp_path / "r.jsonl", {"match": ["one"], "answer": {"text": "1"}})
    mind = ReplayBackend(path)
    assert mind.chat(user("one")).text == "1"
    with pytest.raises(ReplayMiss):
        mind.chat(user("two"))
    write(path, {"match": ["two"], "answer": {"text": "2"}})
    assert mind.chat(user("two")).text == "2"


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(BadMindConfig, match="does not exist.*BATOS_MIND_RECORD"):
        ReplayBackend(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(("line", "complaint"), [
    ("not json", "not a JSON line"),
    ("[1]", "must be a JSON object"),
    ('{"match": ["a"]}', "needs an 'answer'"),
    ('{"answer": {"text": "x"}}', "'request', a 'key' or a 'match'"),
    ('{"match": ["a"], "answer": {"text": 3}}', "'text' string"),
    ('{"match": ["a"], "answer": {"text": "x"}, "times": -1}', "times"),
])
def test_a_bad_line_is_named_with_its_number(tmp_path, line, complaint):
    path = tmp_path / "r.jsonl"
    path.write_text('{"match": ["ok"], "answer": {"text": "fine"}}\n\n' + line + "\n")
    with pytest.raises(BadMindConfig, match=f"r.jsonl:3.*{complaint}"):
        ReplayBackend(path)


class Counting:
    """A backend of our own: answers with a counter (the seam Recorder wraps)."""

    model = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def chat(self, messages, *, schema=None, schema_name="answer", max_tokens=1024,
             temperature=0.0, model=None):
        with self.lock:
            self.calls += 1
            n = self.calls
        return Answer(text=json.dumps({"n": n}), parsed={"n": n} if schema else None,
                      model=model or self.model, structured=schema is not None, elapsed=0.0,
                      usage={"completion_tokens": 3})

    def close(self):
        pass


def test_recorder_lines_are_whole_under_threads_and_replay(tmp_path):
    path = tmp_path / "deep" / "rec.jsonl"
    recorder = Recorder(Counting(), path)
    threads = [threading.Thread(target=lambda i=i: recorder.chat(user(f"question {i}"), schema=SCHEMA))
               for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 16
    assert {line["key"] for line in lines} == {request_key(user(f"question {i}"), SCHEMA, None)
                                                for i in range(16)}
    replay = ReplayBackend(path)
    for line in lines:
        question = line["request"]["messages"][-1]["content"]
        answer = replay.chat(user(question), schema=SCHEMA)
        assert answer.parsed == line["answer"]["parsed"]
        assert answer.model == "counting"
        assert answer.structured is True
        assert answer.usage == {"completion_tokens": 3}


def test_replay_is_safe_under_threads(tmp_path):
    path = write(tmp_path / "r.jsonl", {"match": ["q"], "times": 50, "answer": {"text": "a"}})
    mind = ReplayBackend(path)
    outcomes: list[str] = []

    def ask() -> None:
        for _ in range(10):
            try:
                outcomes.append(mind.chat(user("q")).text)
            except ReplayMiss:
                outcomes.append("miss")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes).count("a") == 50
    assert outcomes.count("miss") == 30
