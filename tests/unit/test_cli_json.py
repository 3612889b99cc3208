"""Every command that runs without a supervisor prints JSON that parses with ``--json``,
and fails in the one format: one line ``batos <command>: <Type>: <message>``, or
``{"error": {"type", "message"}}`` on stderr with ``--json``; exit codes per
``batos.output``. (``crucible check --json`` runs a trial worker: it is checked in
``tests/integration/test_crucible_trial.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batos.main import main
from supervisor import handover_log as hl
from uvm import Kernel, bootstrap, open_db


@pytest.fixture(autouse=True)
def no_mind(monkeypatch):
    for name in ("BATOS_MIND_URL", "BATOS_MIND_MODEL", "BATOS_MIND_LOCAL", "BATOS_MIND_REPLAY",
                 "BATOS_MIND_RECORD", "BATOS_MIND_CONFIG", "BATOS_INQUIRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "image.fs"
    db = open_db(path)
    try:
        bootstrap(db)
    finally:
        db.close()
    return path


def as_json(capsys, *argv: str, code: int = 0):
    assert main([*argv, "--json"]) == code
    out = capsys.readouterr().out
    return json.loads(out)


def test_bootstrap_and_verify(tmp_path, capsys):
    path = str(tmp_path / "new.fs")
    made = as_json(capsys, "bootstrap", "--image", path)
    assert made["changed"] is True
    assert "genesis" in made["created_objects"]
    assert as_json(capsys, "bootstrap", "--image", path)["changed"] is False
    checked = as_json(capsys, "verify", "--image", path)
    assert checked["ok"] is True
    assert checked["problems"] == []
    assert checked["counts"]


def test_send_with_an_image(image, capsys):
    reply = as_json(capsys, "send", "--image", str(image), "genesis", "printString")
    assert reply["ok"] is True
    assert isinstance(reply["result"], str)


def test_quarantine_and_inquiry_status(image, capsys):
    assert as_json(capsys, "quarantine", "list", "--image", str(image)) == []
    assert as_json(capsys, "quarantine", "list", "--history", "--image", str(image)) == []
    status = as_json(capsys, "inquiry", "status", "--image", str(image))
    assert set(status) == {"config", "facets", "cycles", "entropy"}


def test_dataset_build(image, tmp_path, capsys):
    out = tmp_path / "narrative"
    manifest = as_json(capsys, "dataset", "build", "--image", str(image), "--home",
                       str(tmp_path / "home"), "--out", str(out), "--templates", "all")
    assert manifest["turns"] == manifest["train"] + manifest["held_out"]
    assert (out / "manifest.json").is_file()


def test_keys(tmp_path, capsys):
    home, other = str(tmp_path / "home"), tmp_path / "other"
    made = as_json(capsys, "keys", "generate", "--home", home)
    assert Path(made["server_public_key"]).is_file()
    as_json(capsys, "keys", "generate", "--home", str(other))
    added = as_json(capsys, "keys", "authorize", "--home", home, "--name", "laptop",
                    str(other / "keys" / "client.key"))
    assert Path(added["authorized"]).name == "laptop.key"
    assert as_json(capsys, "keys", "list", "--home", home) == ["laptop", "local"]
    assert Path(as_json(capsys, "keys", "revoke", "--home", home, "laptop")["revoked"]).name == "laptop.key"


def test_service_install_dry_run_and_into_a_folder(tmp_path, capsys):
    units = tmp_path / "units"
    planned = as_json(capsys, "service", "install", "--user", "--home", str(tmp_path / "home"),
                      "--unit-dir", str(units), "--dry-run")
    assert planned["written"] is False
    assert "ExecStart=" in planned["text"]
    assert not units.exists()
    written = as_json(capsys, "service", "install", "--user", "--home", str(tmp_path / "home"),
                      "--unit-dir", str(units))
    assert Path(written["unit"]).read_text() == planned["text"]
    assert any("systemctl --user enable" in line for line in written["enable"])


def test_service_dry_run_shows_the_unit(tmp_path, capsys):
    assert main(["service", "install", "--user", "--home", str(tmp_path), "--unit-dir",
                 str(tmp_path / "units"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"would write {tmp_path / 'units' / 'batos.service'} (--dry-run):")
    assert "[Service]" in out
    assert not (tmp_path / "units").exists()


def test_handovers_on_a_log(tmp_path, capsys):
    home = tmp_path / "home"
    assert as_json(capsys, "handovers", "--home", str(home)) == {"handovers": [], "verify": None}
    with hl.HandoverLog(home / "logs" / hl.LOG_FILE) as log:
        log.append("h-1", "requested", kind="evolve", add=["six"], remove=[], who="alice")
        log.append("h-1", "completed", outcome="completed", total=2.0, served=3)
    data = as_json(capsys, "handovers", "--home", str(home), "--verify")
    assert [row["handover"] for row in data["handovers"]] == ["h-1"]
    assert data["verify"]["ok"] is True


def test_a_quarantined_method_in_the_human_list(image, capsys):
    db = open_db(image)
    try:
        kernel = Kernel(db)
        kernel.send("genesis", "defineMethod:source:", ["crash", "def crash(self):\n    return 1\n"])
        kernel.quarantine("genesis", "crash", "killed twice", "req-9")
    finally:
        db.close()
    assert main(["quarantine", "list", "--image", str(image)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert " crash " in line
    assert "request=req-9" in line


# --- errors: one line, or a JSON line with --json -------------------------------------


ERRORS = [
    # (argv with {tmp} for the temp folder, the command's name, the error type, exit code)
    (["verify", "--image", "{tmp}/none.fs"], "verify", "ImageError", 1),
    (["inquiry", "status", "--image", "{tmp}/none.fs"], "inquiry status", "ImageError", 1),
    (["dataset", "build", "--image", "{tmp}/none.fs", "--out", "{tmp}/out"], "dataset build",
     "ImageError", 1),
    (["keys", "authorize", "--home", "{tmp}", "{tmp}/nothing.key"], "keys authorize",
     "KeysMissing", 1),
    (["crucible", "check", "{tmp}/nothing.py", "--receiver", "genesis"], "crucible check",
     "UsageError", 2),
    (["send", "--image", "{tmp}/none.fs", "genesis", "printString"], "send", "ImageError", 1),
    (["keys", "revoke"], "keys revoke", "UsageError", 2),
]


@pytest.mark.parametrize(("argv", "command", "kind", "code"), ERRORS,
                         ids=[e[1] + "-" + e[2] for e in ERRORS])
def test_an_error_is_one_line_or_one_json_line(tmp_path, capsys, argv, command, kind, code):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]

    def run(*extra: str) -> int:
        try:
            return main(argv + list(extra))
        except SystemExit as exc:  # argparse's usage errors
            return int(exc.code)

    assert run() == code
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"batos {command}: {kind}: ")
    assert run("--json") == code
    captured = capsys.readouterr()
    assert captured.out == ""
    error = json.loads(captured.err)["error"]
    assert error["type"] == kind
    assert error["message"]
