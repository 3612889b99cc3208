"""``batos status`` shows the image's Composite Entropy Metric from a real supervisor."""

from __future__ import annotations

import json
import subprocess

from tests.integration.supervisor_fixtures import (
    BATOS,
    Supervisors,
    supervisors_fixture,  # noqa: F401
)


def batos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATOS, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def test_status_shows_the_cem_of_the_serving_image(supervisors: Supervisors) -> None:
    sup = supervisors.start()
    plain = batos("status", "--endpoint", sup.endpoint, "--verbose")
    assert plain.returncode == 0, plain.stderr
    shown = json.loads(plain.stdout)
    assert shown["state"] == "serving"
    image = shown["image"]
    assert set(image) >= {"cem", "h_cog", "structure", "novelty", "weights", "counts"}
    assert 0 <= image["cem"] <= 1

    as_json = batos("status", "--endpoint", sup.endpoint, "--json")
    assert as_json.returncode == 0, as_json.stderr
    reply = json.loads(as_json.stdout)
    assert reply["ok"] is True
    assert reply["image"]["counts"]["objects"] >= 8

    # an image that no longer understands entropy: status still answers, with the error
    sent = batos("send", "--endpoint", sup.endpoint, "traits", "removeSlot:", "entropy")
    assert sent.returncode == 0, sent.stderr
    degraded = json.loads(batos("status", "--endpoint", sup.endpoint, "--verbose").stdout)
    assert degraded["state"] == "serving"
    assert degraded["image"]["error"]["type"] in {"DoesNotUnderstand", "NoMind"}
