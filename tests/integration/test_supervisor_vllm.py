"""A real supervisor running the real vLLM CPU server from its ``[vllm]`` table.

One test, one vLLM start plus one restart (each start is a minute or two on a small
CPU machine): the supervisor serves at once without waiting for vLLM, reports it
``ready`` in ``status`` with a ``base_url`` whose ``/v1/models`` lists the served name,
hands incarnations a mind pointed at it, notices a SIGKILL of the server and starts it
again on the same port, and stops it (and every process it started) on SIGTERM.

Without the vLLM venv (or transformers to build the tiny model) the test is skipped;
under CI (``$CI`` set) it fails instead, as in tests/integration/vllm_fixtures.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.config import Home
from supervisor.vllm import default_python
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import (  # noqa: F401
    EventStream,
    Supervisor,
    Supervisors,
    alive,
    supervisors_fixture,
)
from weaver.tinymodel import build_tiny_model

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

SERVED = "tiny-llama"
VLLM_START = 420.0  # s: one start on 2 shared cores, with margin


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the vLLM tests, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    if not default_python().exists():
        _unavailable(f"no vLLM venv ({default_python()}): run scripts/install-vllm")
    for module in ("transformers", "tokenizers", "torch"):
        if importlib.util.find_spec(module) is None:
            _unavailable(f"{module} is missing to build the tiny model: pip install -e '.[train]'")
    return build_tiny_model(tmp_path / SERVED)


def models(base_url: str) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as reply:
        return [entry["id"] for entry in json.loads(reply.read())["data"]]


def vllm_status(sup: Supervisor) -> dict[str, Any]:
    sup.check_running()
    return sup.status()["vllm"]


def family(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@pytest.mark.timeout(900)
def test_the_supervisor_runs_restarts_and_stops_vllm(supervisors: Supervisors, tiny_model: Path):
    sup = supervisors.start(config={
        "stop_grace": 5,
        "vllm": {"enabled": True, "model": str(tiny_model), "served_model_name": SERVED,
                 "dtype": "float32", "startup_timeout": VLLM_START, "stop_grace": 15},
    })
    # serving did not wait for vLLM
    first = vllm_status(sup)
    assert first["state"] == "starting", first
    base_url = first["base_url"]
    assert base_url == f"http://127.0.0.1:{first['port']}/v1"
    inc = psutil.Process(sup.active_pid())
    assert json.loads(inc.environ()["BATOS_MIND_CONFIG"]) == {
        "backend": "openai", "base_url": base_url, "model": SERVED,
        "max_loras": 2, "max_lora_rank": 16}
    inquiry = json.loads(inc.environ()["BATOS_INQUIRY_CONFIG"])
    assert inquiry["vllm_url"] == base_url
    assert inquiry["base_model"] == str(tiny_model)
    with EventStream(sup.status()["supervisor"]["events"], topic=b"vllm") as events:
        ready = wait_until(lambda: (s := vllm_status(sup))["state"] == "ready" and s,
                           VLLM_START, interval=1.0)
        assert ready["pid"] == first["pid"]
        assert SERVED in models(base_url)
        events.wait_for(lambda e: e["kind"] == "vllm.ready", 10)

        killed = family(ready["pid"])
        os.kill(ready["pid"], signal.SIGKILL)
        exited = events.wait_for(lambda e: e["kind"] == "vllm.exited", 30)
        assert exited["data"]["pid"] == ready["pid"]
        assert exited["data"]["exit_code"] == -signal.SIGKILL
        wait_until(lambda: not any(alive(p) for p in killed), 30, interval=0.2)

        again = wait_until(lambda: (s := vllm_status(sup))["state"] == "ready" and s,
                           VLLM_START, interval=1.0)
    assert again["restarts"] == 1
    assert again["pid"] != ready["pid"]
    assert again["base_url"] == base_url  # the incarnations' mind still points at it
    assert SERVED in models(base_url)
    children = json.loads((Home.at(sup.home).run / "children.json").read_text())
    assert children[str(again["pid"])]["what"] == "vllm"

    serving = family(again["pid"])
    assert sup.terminate() == 0
    assert not [p.pid for p in serving if alive(p)]
