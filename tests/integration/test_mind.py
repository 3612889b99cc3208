"""The mind end to end with the replay backend and the real crucible.

``docs/examples/mind-replay.jsonl`` is the recording the README's transcript
uses: it answers ``greet:`` and ``double:`` with working methods and ``leak``
with one that imports ``os``. Every path here is real: the CLI in its own
process, the crucible's trial worker in another, a supervisor with its ZEO
server and incarnation for the last tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge import RemoteError
from tests.integration.supervisor_fixtures import (  # noqa: F401 - the fixture
    BATOS,
    Supervisors,
    supervisors_fixture,
)

ROOT = Path(__file__).resolve().parents[2]
REPLAY = ROOT / "docs" / "examples" / "mind-replay.jsonl"

pytestmark = pytest.mark.integration


def batos(*args: str, mind: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_MIND")}
    if mind:
        env["BATOS_MIND_REPLAY"] = str(REPLAY)
    proc = subprocess.run([BATOS, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"batos {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def image_digest(path: Path) -> tuple[int, bytes]:
    data = path.read_bytes()
    return len(data), data[-64:]


def test_a_message_nobody_understands_becomes_a_method_across_processes(tmp_path: Path):
    image = str(tmp_path / "live_image.fs")
    batos("bootstrap", "--image", image, mind=False)
    out = batos("send", "--image", image, "genesis", "greet:", '"world"')
    assert json.loads(out.stdout) == "hello world, from genesis"
    # a new process without any mind: the method is in the image now
    again = batos("send", "--image", image, "genesis", "greet:", '"again"', mind=False)
    assert json.loads(again.stdout) == "hello again, from genesis"
    history = json.loads(batos("send", "--image", image, "genesis", "methodHistory:",
                               '"greet:"', mind=False).stdout)
    assert [v["author"] for v in history] == ["mind"]
    verdict = history[0]["meta"]["verdict"]
    assert verdict["approved"] is True
    assert verdict["stages"]["static"] == "pass"
    assert verdict["stages"]["trial"] == "pass"


def test_a_hostile_proposal_is_rejected_and_changes_nothing(tmp_path: Path):
    image = tmp_path / "live_image.fs"
    batos("bootstrap", "--image", str(image), mind=False)
    batos("send", "--image", str(image), "genesis", "double:", "21")  # a record exists
    before = batos("send", "--image", str(image), "genesis", "describe", mind=False).stdout
    proc = batos("send", "--image", str(image), "--json", "genesis", "leak", check=False)
    assert proc.returncode == 1
    error = json.loads(proc.stderr)["error"]
    assert error["type"] == "SynthesisFailed"
    assert "os" in error["message"]
    after = batos("send", "--image", str(image), "genesis", "describe", mind=False).stdout
    assert after == before


def _start(supervisors: Supervisors, **env: str) -> Any:
    return supervisors.start(env={"BATOS_MIND_REPLAY": str(REPLAY), **env})


def test_a_supervised_incarnation_synthesizes(supervisors: Supervisors):
    sup = _start(supervisors)
    client = sup.client
    assert client.send("genesis", "double:", 21) == 42
    assert client.send("genesis", "double:", 5) == 10
    with pytest.raises(RemoteError) as info:
        client.send("genesis", "leak")
    assert info.value.type == "SynthesisFailed"
    verdict = client.send("genesis", "reviewProposal:", {
        "selector": "triple:", "source": "def triple(self, x):\n    return x * 3\n",
        "arguments": [2],
    })
    assert verdict["approved"] is True
    trial = next(s for s in verdict["stages"] if s["stage"] == "trial")
    assert trial["status"] == "pass"
    # reviewing installed nothing
    with pytest.raises(RemoteError):
        client.send("genesis", "triple:", 2)


def test_without_a_mind_the_client_is_told_how_to_configure_one(supervisors: Supervisors):
    sup = supervisors.start()
    with pytest.raises(RemoteError) as info:
        sup.client.send("genesis", "greet:", "x")
    assert info.value.type == "NoMind"
    assert "BATOS_MIND_URL" in str(info.value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_an_inquiry_table_reaches_the_incarnation_which_watches_and_stops_clean(
        supervisors: Supervisors):
    from tests.conftest import wait_until

    sup = supervisors.start(config={"inquiry": {
        "base_model": "/nonexistent/model", "vllm_url": "http://127.0.0.1:9/v1", "interval": 0.2,
    }})
    client = sup.client
    assert client.send("weaver", "inquiryConfig")["enabled"] is False

    def watching() -> bool:
        logs = (sup.home / "logs").glob("inc-*.log")
        return any("inquiry loop: watching" in p.read_text(errors="replace") for p in logs)

    wait_until(watching, timeout=30)
    assert client.send("genesis", "printString").startswith("<genesis")
    # teardown checks that SIGTERM stops the supervisor, the incarnation and its loop cleanly
