"""The handover audit log: durable appends, a hash chain that names tampering, recovery decisions.

Every test works on a real file in a temporary folder; the only stand-in is a
wrapper around ``os.fsync`` (our own durability seam) to see when it runs.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from batos import audit
from supervisor import handover_chain, handover_entries, handover_report
from supervisor import handover_log as hl
from supervisor.errors import HomeError

ENV_A = {"id": "env-a", "python": "3.11.9", "packages": {"batos": "0.1.0"}}
ENV_B = {"id": "env-b", "python": "3.11.9", "packages": {"batos": "0.1.0", "six": "1.16.0"}}

# One full handover; each item is an (event, data) pair in the order the supervisor writes them.
SCRIPT: list[tuple[str, dict]] = [
    ("requested", {"kind": "evolve", "who": "local", "add": ["six"], "remove": [], "env_before": ENV_A}),
    ("phase.start", {"phase": "build"}),
    ("phase.end", {"phase": "build", "duration": 12.0, "env": ENV_B}),
    ("phase.start", {"phase": "incarnate"}),
    ("phase.end", {"phase": "incarnate", "duration": 2.5, "ok": True}),
    ("phase.start", {"phase": "validate"}),
    ("phase.end", {"phase": "validate", "duration": 0.75, "ok": True}),
    ("phase.start", {"phase": "switch"}),
    ("intent.switch", {"old": "i-1", "new": "i-2", "env_before": "env-a", "env_after": "env-b"}),
    ("switched", {"old": "i-1", "new": "i-2", "in_flight_on_old": 3}),
    ("phase.end", {"phase": "switch", "duration": 0.001, "ok": True}),
    ("phase.start", {"phase": "drain"}),
    ("phase.end", {"phase": "drain", "duration": 1.5, "ok": True}),
    ("phase.start", {"phase": "probation"}),
    ("phase.end", {"phase": "probation", "duration": 30.0, "ok": True}),
    ("phase.start", {"phase": "retire"}),
    ("intent.retire", {"old": "i-1"}),
    ("retired", {"old": "i-1"}),
    ("phase.end", {"phase": "retire", "duration": 0.5, "ok": True}),
    ("completed", {"outcome": "completed", "total": 47.25, "served": 42, "in_flight": 3,
                   "drained": 3, "env_before": ENV_A, "env_after": ENV_B}),
]


class Clock:
    """Deterministic timestamps: each reading is one second after the last."""

    def __init__(self, start: float = 1_738_324_800.0):
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "logs" / hl.LOG_FILE


@pytest.fixture
def log(path: Path):
    with hl.HandoverLog(path, clock=Clock()) as opened:
        yield opened


def play(log: hl.HandoverLog, handover: str, script: list[tuple[str, dict]]) -> None:
    for event, data in script:
        log.append(handover, event, **data)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def write_lines(path: Path, new: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in new))


def edited(line: bytes) -> bytes:
    entry = json.loads(line)
    entry["ts"] += 0.5
    return json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()


# -- writing ---------------------------------------------------------------------------------

def test_entries_are_sorted_compact_and_chained(log, path):
    play(log, "h-1", SCRIPT[:3])
    raw = lines(path)
    assert raw[0].startswith(b'{"data":{"add":["six"],')
    assert b" " not in raw[1]
    entries = [json.loads(line) for line in raw]
    assert [e["seq"] for e in entries] == [0, 1, 2]
    assert entries[0]["prev"] == "0" * 64
    assert entries[1]["prev"] == hashlib.sha256(raw[0]).hexdigest()
    assert entries[2]["prev"] == hashlib.sha256(raw[1]).hexdigest()
    assert log.head == (2, hashlib.sha256(raw[2]).hexdigest()) == handover_chain.head(path)


def test_reopening_continues_the_chain(path):
    with hl.HandoverLog(path) as first:
        play(first, "h-1", SCRIPT[:4])
    with hl.HandoverLog(path) as second:
        assert second.head == handover_chain.head(path)
        entry = second.append("h-1", "phase.end", phase="incarnate", duration=1.0)
    assert entry["seq"] == 4
    result = handover_chain.verify(path)
    assert result.ok, result.reason
    assert result.entries == 5


def test_append_returns_only_after_fsync_of_the_written_line(log, path, monkeypatch):
    real_fsync = os.fsync
    seen: list[int] = []

    def fsync(fd: int) -> None:
        seen.append(len(lines(path)))  # the line is in the file when fsync runs
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    play(log, "h-1", SCRIPT[:3])
    assert seen == [1, 2, 3]


def test_a_failed_write_leaves_no_partial_line_and_the_log_usable(log, path, monkeypatch):
    log.append("h-1", "requested", who="local")
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        monkeypatch.setattr(os, "fsync", real_fsync)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(HomeError, match="cannot write the handover log"):
        log.append("h-1", "phase.start", phase="build")
    assert len(lines(path)) == 1
    assert log.append("h-1", "phase.start", phase="build")["seq"] == 1
    assert handover_chain.verify(path).ok


def test_reopening_after_lines_longer_than_the_tail_block(path):
    with hl.HandoverLog(path) as first:
        first.append("h-1", "requested", note="x" * 200_000)
        first.append("h-1", "recovered", note="y" * 100_000)
    with path.open("ab") as f:
        f.write(b"z" * 70_000)  # a torn fragment longer than one block, too
    with hl.HandoverLog(path) as second:
        assert second.head == handover_chain.head(path)
        assert second.append("h-1", "completed", outcome="completed")["seq"] == 2
    assert handover_chain.verify(path).ok


def test_appends_from_many_threads_keep_one_chain(log, path):
    def worker(n: int) -> None:
        for i in range(20):
            log.append(f"h-{n}", "recovered", i=i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    result = handover_chain.verify(path)
    assert result.ok, result.reason
    assert result.entries == 80


def test_data_that_json_cannot_hold_is_written_as_text(log):
    entry = log.append("h-1", "recovered", where=Path("/x"), n=float("nan"), tags={"b", "a"})
    assert entry["data"] == {"where": "/x", "n": "nan", "tags": ["a", "b"]}


def test_unknown_events_and_phases_are_refused(log):
    with pytest.raises(ValueError, match="unknown handover event"):
        log.append("h-1", "exploded")
    with pytest.raises(ValueError, match="phase"):
        log.append("h-1", "phase.start", phase="meditate")


def test_phase_records_duration_and_failure(log, path):
    with log.phase("h-1", "build") as details:
        details["env_after"] = ENV_B
    with pytest.raises(RuntimeError), log.phase("h-1", "validate"):
        raise RuntimeError("image check failed")
    entries = handover_entries.read_entries(path)
    assert [e["event"] for e in entries] == ["phase.start", "phase.end"] * 2
    assert entries[1]["data"]["ok"] is True
    assert entries[1]["data"]["env_after"] == ENV_B
    assert entries[3]["data"]["ok"] is False
    assert "image check failed" in entries[3]["data"]["error"]


@pytest.mark.parametrize("fragment", [b'{"data":{},"event":"swi', b'{"data":{}}'])
def test_a_torn_last_line_is_cut_off_and_kept_aside(path, fragment, caplog):
    with hl.HandoverLog(path) as first:
        play(first, "h-1", SCRIPT[:2])
    with path.open("ab") as f:
        f.write(fragment)
    assert handover_chain.verify(path).torn
    with caplog.at_level(logging.WARNING, "batos.supervisor.handovers"), hl.HandoverLog(path) as second:
        assert second.append("h-1", "phase.end", phase="build")["seq"] == 2
    assert "torn" in caplog.text
    (copy,) = path.parent.glob(f"{hl.LOG_FILE}.torn-*")
    assert copy.read_bytes() == fragment
    result = handover_chain.verify(path)
    assert (result.ok, result.torn, result.entries) == (True, False, 3)


def test_a_newline_terminated_bad_last_line_is_never_erased(path):
    with hl.HandoverLog(path) as first:
        play(first, "h-1", SCRIPT[:2])
    with path.open("ab") as f:
        f.write(b"garbage\n")
    with hl.HandoverLog(path) as second:
        assert second.append("h-1", "phase.end", phase="build")["seq"] == 3
    assert lines(path)[2] == b"garbage"
    assert handover_chain.verify(path).first_bad == 3


# -- verifying ---------------------------------------------------------------------------------

@pytest.fixture
def chain(log, path) -> list[bytes]:
    play(log, "h-1", SCRIPT[:8])
    assert handover_chain.verify(path).ok
    return lines(path)


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_an_edited_entry_is_named(chain, path, k):
    changed = list(chain)
    changed[k - 1] = edited(changed[k - 1])
    write_lines(path, changed)
    result = handover_chain.verify(path)
    assert not result.ok
    assert (result.first_bad, result.bad_seq) == (k, k - 1)
    assert result.reason.startswith(f"line {k} (seq {k - 1}): edited")


def test_an_edited_last_entry_needs_the_published_head(chain, path):
    anchor = handover_chain.head(path)
    write_lines(path, [*chain[:-1], edited(chain[-1])])
    assert handover_chain.verify(path).ok  # the documented limit: nothing follows the last entry
    result = handover_chain.verify(path, anchor=(anchor[0], anchor[1][:12]))
    assert not result.ok
    assert result.first_bad == len(chain)
    assert "published head" in result.reason


def test_an_edited_seq_is_named(chain, path):
    entry = json.loads(chain[3])
    entry["seq"] = 99
    write_lines(path, [*chain[:3], json.dumps(entry, sort_keys=True, separators=(",", ":")).encode(),
                       *chain[4:]])
    result = handover_chain.verify(path)
    assert (result.ok, result.first_bad) == (False, 4)


def test_a_line_that_is_not_an_entry_is_named(chain, path):
    write_lines(path, [*chain[:2], b'{"seq": 2', *chain[3:]])
    result = handover_chain.verify(path)
    assert (result.ok, result.first_bad) == (False, 3)
    assert "not a valid entry" in result.reason


@pytest.mark.parametrize("k", [1, 2, 5, 7])
def test_a_removed_entry_is_named_by_its_position(chain, path, k):
    write_lines(path, chain[:k - 1] + chain[k:])
    result = handover_chain.verify(path)
    assert not result.ok
    assert result.first_bad == k
    assert "removed" in result.reason
    assert f"seq {k - 1}" in result.reason


def test_entries_cut_off_the_end_need_the_published_head(chain, path):
    anchor = handover_chain.head(path)
    write_lines(path, chain[:-2])
    assert handover_chain.verify(path).ok
    result = handover_chain.verify(path, anchor=anchor)
    assert (result.ok, result.first_bad) == (False, len(chain) - 1)
    assert "removed" in result.reason


@pytest.mark.parametrize("k", [1, 3, 7])
def test_swapped_entries_are_named(chain, path, k):
    swapped = list(chain)
    swapped[k - 1], swapped[k] = swapped[k], swapped[k - 1]
    write_lines(path, swapped)
    result = handover_chain.verify(path)
    assert not result.ok
    assert result.first_bad == k
    assert "out of order" in result.reason
    assert f"line {k + 1}" in result.reason


def test_a_missing_log_verifies_empty(tmp_path):
    result = handover_chain.verify(tmp_path / "nothing.jsonl")
    assert (result.ok, result.entries, result.head_seq) == (True, 0, -1)
    assert handover_chain.head(tmp_path / "nothing.jsonl") == (-1, handover_entries.ZERO_HASH)


# -- summaries and recovery --------------------------------------------------------------------

FAILED_IN_VALIDATE = [
    *SCRIPT[:6],
    ("phase.end", {"phase": "validate", "duration": 0.5, "ok": False}),
    ("failed", {"phase": "validate", "reason": "genesis check: traits.clone missing"}),
    ("completed", {"outcome": "failed", "total": 16.0, "served": 7, "env_before": ENV_A}),
]
ROLLED_BACK = [
    *SCRIPT[:14],
    ("intent.rollback", {"reason": "new incarnation exited with 1", "to": "i-1"}),
    ("rolled_back", {"reason": "new incarnation exited with 1", "to": "i-1"}),
    ("completed", {"outcome": "rolled_back", "total": 20.0, "served": 9, "failed_phase": "probation",
                   "reason": "new incarnation exited with 1"}),
]


def test_summarize_one_row_per_handover(log, path):
    play(log, "h-ok", SCRIPT)
    play(log, "h-bad", FAILED_IN_VALIDATE)
    play(log, "h-back", ROLLED_BACK)
    play(log, "h-lost", SCRIPT[:5])
    play(log, "h-now", SCRIPT[:3])
    rows = {row["handover"]: row for row in handover_report.summarize(path)}
    assert list(rows) == ["h-ok", "h-bad", "h-back", "h-lost", "h-now"]

    ok = rows["h-ok"]
    assert (ok["outcome"], ok["who"], ok["add"], ok["remove"]) == ("completed", "local", ["six"], [])
    assert (ok["total"], ok["served"], ok["env_before"], ok["env_after"]) == (47.25, 42, ENV_A, ENV_B)
    assert list(ok["phases"]) == list(handover_entries.PHASES)
    assert ok["phases"]["probation"] == 30.0

    bad = rows["h-bad"]
    assert (bad["outcome"], bad["failed_phase"], bad["served"]) == ("failed", "validate", 7)
    assert "traits.clone" in bad["reason"]
    assert (rows["h-back"]["outcome"], rows["h-back"]["failed_phase"]) == ("rolled_back", "probation")
    assert rows["h-back"]["reason"] == "new incarnation exited with 1"
    assert rows["h-lost"]["outcome"] == "interrupted"
    now = rows["h-now"]
    assert (now["outcome"], now["env_after"], now["served"]) == ("in progress", ENV_B, None)
    assert (now["total"], now["phases"]) == (2.0, {"build": 12.0})  # 3 entries, a second apart

    assert [r["handover"] for r in handover_report.summarize(path, last=2)] == ["h-lost", "h-now"]


@pytest.mark.parametrize("cut", range(1, len(SCRIPT)))
def test_recovery_decision_at_every_point_of_a_handover(log, path, cut):
    play(log, "h-old", SCRIPT)
    play(log, "h-1", SCRIPT[:cut])
    found = handover_report.interrupted(path)
    assert found is not None
    assert found["handover"] == "h-1"
    switched = any(event == "switched" for event, _ in SCRIPT[:cut])
    assert found["action"] == ("finish" if switched else "revert")
    assert found["keep_env"] == ("env-b" if switched else "env-a")
    assert found["env_before"] == "env-a"
    assert found["old_incarnation"] == ("i-1" if cut > 8 else None)
    reached = [d["phase"] for e, d in SCRIPT[:cut] if e.startswith("phase.")]
    assert found["phase"] == (reached[-1] if reached else None)


def test_recovery_reverts_a_decided_rollback_and_a_failure(log, path):
    play(log, "h-1", ROLLED_BACK[:-2])  # intent.rollback written, then the crash
    found = handover_report.interrupted(path)
    assert (found["switched"], found["intent_rollback"], found["action"]) == (True, True, "revert")
    assert found["keep_env"] == "env-a"
    play(log, "h-2", FAILED_IN_VALIDATE[:-1])
    assert handover_report.interrupted(path)["action"] == "revert"


def test_a_completed_or_recovered_handover_is_not_interrupted(log, path):
    assert handover_report.interrupted(path) is None
    play(log, "h-1", SCRIPT[:12])
    found = handover_report.interrupted(path)
    log.append("h-1", "recovered", found=found, action=found["action"])
    assert handover_report.interrupted(path)["action"] == "finish"  # dying while recovering decides the same
    log.append("h-1", "completed", outcome="completed", after_restart=True)
    assert handover_report.interrupted(path) is None
    assert handover_report.summarize(path)[0]["after_restart"] is True


# -- batos handovers ---------------------------------------------------------------------------

def batos(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="batos")
    audit.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    with hl.HandoverLog(home / "logs" / hl.LOG_FILE, clock=Clock()) as log:
        play(log, "h-ok", SCRIPT)
        play(log, "h-bad", FAILED_IN_VALIDATE)
        log.append("h-back", "requested", kind="rollback", who="alice")
        log.append("h-back", "completed", outcome="completed", total=3.0, served=1)
    return home


def test_cli_prints_one_row_per_handover(home, capsys):
    assert batos("handovers", "--home", str(home)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["WHEN", "(UTC)", "HANDOVER"]
    ok = out[1].split()
    assert ok[2:6] == ["h-ok", "+six", "completed", "47.2s"]
    assert "prob:30.0s" in ok
    assert ok[-1] == "42"
    assert "failed in validate" in out[2]
    assert "why: genesis check" in out[3]
    assert out[4].split()[2:5] == ["h-back", "(rollback)", "completed"]


def test_cli_verify_prints_the_head(home, capsys):
    assert batos("handovers", "--home", str(home), "--verify", "--last", "1") == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert out[1].split()[2] == "h-back"
    seq, digest = handover_chain.head(home / "logs" / hl.LOG_FILE)
    assert out[-1] == f"chain ok: {len(SCRIPT) + len(FAILED_IN_VALIDATE) + 2} entries, head {seq} {digest[:12]}"
    assert batos("handovers", "--home", str(home), "--anchor", f"{seq}:{digest[:12]}") == 0


def test_cli_verify_fails_on_a_broken_chain(home, capsys):
    path = home / "logs" / hl.LOG_FILE
    chain = lines(path)
    write_lines(path, [chain[0], edited(chain[1]), *chain[2:]])
    assert batos("handovers", "--home", str(home)) == 0  # the table still prints, with a warning
    assert "chain is broken" in capsys.readouterr().err
    assert batos("handovers", "--home", str(home), "--verify") == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("chain BROKEN at line 2 (seq 1): edited")
    assert batos("handovers", "--home", str(home), "--verify", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["verify"]["ok"], data["verify"]["first_bad"]) == (False, 2)


def test_cli_json_has_the_rows(home, capsys):
    assert batos("handovers", "--home", str(home), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["handover"] for r in data["handovers"]] == ["h-ok", "h-bad", "h-back"]
    assert data["verify"] is None


def test_cli_without_a_log(tmp_path, capsys):
    assert batos("handovers", "--home", str(tmp_path / "empty"), "--verify") == 0
    assert capsys.readouterr().out.splitlines() == ["no handovers yet", "chain ok: 0 entries"]
    assert not (tmp_path / "empty").exists()  # reading never creates the home


def test_cli_rejects_a_bad_anchor(home):
    with pytest.raises(SystemExit):
        batos("handovers", "--home", str(home), "--anchor", "3:abc")


def test_the_writer_module_names_only_the_writer():
    """The readers and the format live in ``handover_chain``, ``handover_report`` and
    ``handover_entries``; the writer's module exports the writer alone."""
    assert sorted(hl.__all__) == ["HandoverLog", "LOG_FILE", "new_handover_id"]
    assert all(hasattr(hl, name) for name in hl.__all__)
