"""``batos ui --screenshot``: a real Kivy window rendered offscreen against a real supervisor.

Each test runs the command as a child process (``SDL_VIDEODRIVER=offscreen``), then reads
the PNG (decoded here with zlib: it must not be one colour) and the JSON beside it (the
texts the window drew). The screenshots stay in ``artifacts/ui/`` (gitignored) for a
person to look at. Skipped when Kivy (the ``ui`` extra) is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.integration.supervisor_fixtures import (
    BATOS,
    Supervisor,
    Supervisors,
    supervisors_fixture,  # noqa: F401
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("kivy") is None,
                       reason="Kivy is not installed (pip install -e '.[ui]')"),
]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "ui"
UI_TIMEOUT = 120


def ui_command() -> list[str]:
    """``batos ui``; ``python -m batos.ui`` while batos/main.py does not register it yet."""
    from batos.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [BATOS, "ui"] if "ui" in sub.choices else [sys.executable, "-m", "batos.ui"]


def screenshot(sup: Supervisor, name: str, tmp_path: Path) -> tuple[Path, dict[str, Any], str]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTIFACTS / f"{name}.png"
    png.unlink(missing_ok=True)
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1",
           "KIVY_NO_CONSOLELOG": "1", "KIVY_HOME": str(tmp_path / "kivy")}
    done = subprocess.run([*ui_command(), "--endpoint", sup.endpoint, "--screenshot", str(png)],
                          capture_output=True, text=True, timeout=UI_TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    sidecar = json.loads(png.with_name(png.name + ".json").read_text())
    return png, sidecar, done.stderr


def png_colours(path: Path) -> int:
    """How many distinct pixels a PNG (8-bit RGB or RGBA, as Kivy writes) has; filters undone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    channels = 3
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, _height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8, depth
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    seen: set[bytes] = set()
    for start in range(0, len(raw), stride + 1):
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + best) & 0xFF
        seen.update(bytes(line[i:i + channels]) for i in range(0, stride, channels * 7))
        previous = line
    return len(seen)


@pytest.fixture
def sup(supervisors: Supervisors) -> Supervisor:
    return supervisors.start()


def test_the_window_from_the_image_draws_genesis(sup: Supervisor, tmp_path: Path) -> None:
    assert sup.client.send("genesis", "respondsTo:", "display_yourself") is True
    png, drawn, _log = screenshot(sup, "genesis", tmp_path)
    assert drawn["origin"] == "image"
    assert drawn["banner"] == ""
    assert drawn["ready"] is True
    for slot in ("description", "name", "parent*", "display_yourself"):
        assert slot in drawn["texts"], drawn["texts"]
    assert "-> traits" in drawn["texts"]
    assert png_colours(png) > 10


def test_a_new_version_in_the_image_is_what_the_next_ui_shows(sup: Supervisor,
                                                              tmp_path: Path) -> None:
    source = sup.client.send("genesis", "display_yourself")
    changed = source.replace('TITLE = "batos: the living image"',
                             'TITLE = "batos, redrawn by a new version"')
    assert changed != source
    sup.client.send("genesis", "defineMethod:source:", "display_yourself",
                    "def display_yourself(self):\n    return " + repr(changed) + "\n",
                    "a new title")
    png, drawn, _log = screenshot(sup, "new-version", tmp_path)
    assert drawn["origin"] == "image"
    assert "batos, redrawn by a new version" in drawn["texts"]
    assert "description" in drawn["texts"]
    assert png_colours(png) > 10


@pytest.mark.parametrize(("name", "breakage", "reason"), [
    ("syntax-error", "def make_app(session:\n", "does not parse"),
    ("forbidden-import", "import subprocess\n", "'subprocess'"),
])
def test_a_broken_window_falls_back_to_the_seed(sup: Supervisor, tmp_path: Path, name: str,
                                                breakage: str, reason: str) -> None:
    source = sup.client.send("genesis", "display_yourself") + "\n" + breakage
    sup.client.send("genesis", "defineMethod:source:", "display_yourself",
                    "def display_yourself(self):\n    return " + repr(source) + "\n", "broken")
    png, drawn, log = screenshot(sup, f"fallback-{name}", tmp_path)
    assert drawn["origin"] == "fallback"
    assert reason in drawn["banner"]
    assert any(t.startswith("FALLBACK: ") and reason in t for t in drawn["texts"])
    assert "parent*" in drawn["texts"]
    assert "showing the seed window" in log
    assert png_colours(png) > 10
