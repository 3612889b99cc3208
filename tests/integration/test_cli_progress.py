"""``batos evolve`` and ``batos rollback`` show their handover as it runs: a real ``batos
up`` in uv mode, the ``batos`` command in its own process, evolves that add a hand-made
wheel offline (``handover_fixtures``: a few seconds each).

* on stderr one line per phase, in order (build, incarnate, validate, switch, then the
  switch itself), each with the seconds since sending, non-decreasing; on stdout a short
  summary: the outcome and handover, env before -> after (short ids), the one package
  added or changed with its versions, the validation's counts; no package list;
* with ``--json`` every stdout line parses: the handover's events, each naming this
  request and its handover, then the reply as the last line; the same ``--id`` sent
  again answers that handover's outcome and starts none;
* a handover that fails shows the phases it reached, then one error line;
* ``batos rollback`` shows its phases and summary the same way.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.handover_fixtures import (
    SharedDirs,
    handover_rows,
    run_batos,
    shared_dirs,
    uv_supervisor,
    wait_idle,
)
from tests.integration.supervisor_fixtures import Supervisor

pytestmark = pytest.mark.integration

TIMEOUT = 180.0
LINE = re.compile(r"\[\s*(\d+\.\d)s\] (\S+)")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> SharedDirs:
    return shared_dirs(tmp_path_factory)


@pytest.fixture(scope="module")
def sup(tmp_path_factory: pytest.TempPathFactory, dirs: SharedDirs) -> Iterator[Supervisor]:
    with uv_supervisor(tmp_path_factory.mktemp("cli-progress"), dirs) as supervisor:
        yield supervisor


def evolve(sup: Supervisor, dirs: SharedDirs, *args: str) -> Any:
    return run_batos("evolve", "--endpoint", sup.endpoint, "--find-links", dirs.wheels,
                     "--offline", "--probation", "1", *args, timeout=TIMEOUT)


def other_greetlib(state: dict[str, Any]) -> tuple[str | None, str]:
    """greetlib's version now (None: absent) and a different one to evolve to."""
    now = state["env"]["packages"].get("greetlib")
    return now, "1.1" if now != "1.1" else "1.2"


def shown(err: str) -> list[tuple[float, str]]:
    """(seconds, what) of each progress line on stderr."""
    return [(float(m[1]), m[2]) for line in err.splitlines() if (m := LINE.match(line))]


def test_evolve_shows_each_phase_then_a_short_summary(sup: Supervisor, dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    now, target = other_greetlib(before)
    done = evolve(sup, dirs, "--add", f"greetlib=={target}")
    assert done.code == 0, done
    progress = shown(done.err)
    assert [what for _, what in progress] == ["build", "incarnate", "validate", "switch",
                                              "switched"], done.err
    seconds = [s for s, _ in progress]
    assert seconds == sorted(seconds)
    assert len(done.err.splitlines()) == len(progress)  # nothing else on stderr

    after = wait_idle(sup)
    lines = done.out.splitlines()
    assert re.fullmatch(r"switched: evolve h-[0-9a-f]+ in \d+\.\ds \(build .*\)", lines[0]), lines
    assert lines[1] == f"env {before['env']['id'][:12]} -> {after['env']['id'][:12]}"
    change = f"  + greetlib {target}" if now is None else f"  ~ greetlib {now} -> {target}"
    assert lines[2] == change
    assert re.fullmatch(r"validated: [1-9]\d* objects, \d+ methods, (\d+)/\1 modules import, "
                        r"(\d+)/\2 self-checks ok", lines[3]), lines
    assert len(lines) <= 6
    assert "zodb" not in done.out.lower()


def test_evolve_json_is_each_event_then_the_reply_and_an_id_runs_once(
        sup: Supervisor, dirs: SharedDirs) -> None:
    _, target = other_greetlib(wait_idle(sup))
    rid = str(uuid.uuid4())
    done = evolve(sup, dirs, "--add", f"greetlib=={target}", "--json", "--id", rid)
    assert done.code == 0, done
    assert done.err == ""
    rows = [json.loads(line) for line in done.out.splitlines()]
    *events, reply = rows
    assert (reply["id"], reply["ok"], reply["result"]["outcome"]) == (rid, True, "switched")
    assert "error" not in reply
    handover = reply["result"]["handover"]
    assert [e["data"].get("phase", e["kind"]) for e in events] == [
        "build", "incarnate", "validate", "switch", "handover.switched"]
    for event in events:
        assert event["kind"].startswith("handover.")
        assert (event["data"]["request"], event["data"]["handover"]) == (rid, handover)

    wait_idle(sup)
    count = len(handover_rows(sup.home))
    again = evolve(sup, dirs, "--add", f"greetlib=={target}", "--json", "--id", rid)
    assert again.code == 0, again
    (line,) = again.out.splitlines()  # no events: nothing ran
    resent = json.loads(line)
    assert (resent["id"], resent["result"]["handover"]) == (rid, handover)
    assert len(handover_rows(sup.home)) == count


def test_a_failed_evolve_shows_the_phases_it_reached_then_one_error(
        sup: Supervisor, dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    done = evolve(sup, dirs, "--add", "boomlib==1.0")
    assert done.code == 1, done
    assert done.out == ""
    *lines, last = done.err.splitlines()
    whats = [what for _, what in shown("\n".join(lines))]
    assert whats[:3] == ["build", "incarnate", "validate"], done.err
    assert whats[-1] == "completed:"
    assert "completed: failed in validate: " in lines[-1]
    assert last.startswith("batos evolve: HandoverFailed: ")
    assert "boomlib" in last
    assert wait_idle(sup)["env"]["id"] == before["env"]["id"]


def test_rollback_shows_its_phases_and_summary(sup: Supervisor, dirs: SharedDirs) -> None:
    before = wait_idle(sup)
    done = run_batos("rollback", "--endpoint", sup.endpoint, "--probation", "1",
                     timeout=TIMEOUT)
    assert done.code == 0, done
    assert [what for _, what in shown(done.err)] == ["build", "incarnate", "validate", "switch",
                                                     "switched"], done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("switched: rollback h-")
    after = wait_idle(sup)
    assert after["env"]["id"] != before["env"]["id"]
    assert lines[1] == f"env {before['env']['id'][:12]} -> {after['env']['id'][:12]}"
