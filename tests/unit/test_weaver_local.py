"""TransformersBackend with a tiny random Llama built locally (weaver.tinymodel).

The model says nothing sensible; these tests check the answer's shape, greedy
determinism, and that a schema request answered with garbage is a BadAnswer.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from weaver import (  # noqa: E402
    Answer,
    BadAnswer,
    BadMindConfig,
    TransformersBackend,
    extract_json,
    mind_from_env,
)
from weaver.tinymodel import build_tiny_model  # noqa: E402

ASK = [{"role": "system", "content": "You write methods."},
       {"role": "user", "content": "Write a method that doubles n."}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A fixed corpus keeps the tokenizer (and so the greedy text) the same in every checkout.
    corpus = ["def double(self):\n    return 2 * self.n\n", "A method doubles n. " * 20] * 20
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", hidden_size=64,
                            heads=2, layers=1, vocab_size=400, corpus=corpus)


@pytest.fixture(scope="module")
def mind(model_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(model_dir)
    yield backend
    backend.close()


def test_answers_a_chat(mind):
    answer = mind.chat(ASK, max_tokens=12)
    assert isinstance(answer, Answer)
    assert isinstance(answer.text, str)
    assert answer.parsed is None
    assert answer.structured is False
    assert answer.model == "tiny-llama"
    assert answer.usage["prompt_tokens"] > 0
    assert 0 < answer.usage["completion_tokens"] <= 12
    assert answer.elapsed > 0


def test_greedy_is_deterministic(mind):
    assert mind.chat(ASK, max_tokens=10).text == mind.chat(ASK, max_tokens=10).text


def test_sampling_runs(mind):
    assert isinstance(mind.chat(ASK, max_tokens=5, temperature=0.9).text, str)


def test_schema_with_garbage_is_a_bad_answer(mind):
    # Greedy decoding answers the same text with or without a schema (none is
    # enforced here), so what the schema request must do is known in advance.
    text = mind.chat(ASK, max_tokens=16).text
    try:
        expected = extract_json(text)
    except BadAnswer:
        with pytest.raises(BadAnswer, match="JSON") as info:
            mind.chat(ASK, schema={"type": "object"}, max_tokens=16)
        assert info.value.text == text
    else:  # by chance a JSON value in random text: it is parsed, not enforced
        answer = mind.chat(ASK, schema={"type": "object"}, max_tokens=16)
        assert (answer.parsed, answer.structured) == (expected, False)


def test_threads_take_turns(mind):
    texts: list[str] = []
    threads = [threading.Thread(target=lambda: texts.append(mind.chat(ASK, max_tokens=4).text))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(texts) == 3
    assert len(set(texts)) == 1


def test_from_env_with_a_name(model_dir):
    backend = mind_from_env({"BATOS_MIND_LOCAL": str(model_dir), "BATOS_MIND_MODEL": "seed-mind"})
    assert isinstance(backend, TransformersBackend)
    assert backend.chat(ASK, max_tokens=2).model == "seed-mind"


def test_a_folder_without_a_model_is_bad_config(tmp_path):
    with pytest.raises(BadMindConfig, match="no config.json"):
        TransformersBackend(tmp_path)
