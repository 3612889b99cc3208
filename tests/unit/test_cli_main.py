"""``batos`` itself: --version, the tree every command hangs on, and how it fails.

Every command is checked from the tree ``build_parser`` builds, so a new command is held
to the same rules without a new test: it has ``--json``, an example in its help, and a
``command_name`` its errors are printed under.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from batos import main as batos_main
from batos.completion import parsers
from batos.main import build_parser, main
from bridge.messages import PROTOCOL

ROOT = Path(__file__).resolve().parents[2]


def leaves() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command that runs (has no subcommands), with its path."""
    return [(path, p) for path, p in parsers(build_parser())
            if path and not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]


def test_version_names_batos_and_the_protocol(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"batos {version('batos')} (protocol {PROTOCOL})"


def test_python_dash_m_batos_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "batos", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == batos_main.version_line()


def test_every_command_has_its_name_json_and_an_example():
    found = leaves()
    assert {"up", "send", "evolve", "keys generate", "service install", "completion",
            "crucible check", "inquiry status"} <= {path for path, _ in found}
    for path, p in found:
        assert p.get_default("command_name") == path, path
        assert "--json" in p._option_string_actions, f"batos {path} has no --json"
        assert f"batos {path.split()[0]}" in (p.epilog or ""), f"batos {path} has no example"
    for path, p in parsers(build_parser()):  # the groups too (batos keys, batos inquiry)
        assert "batos" in (p.epilog or ""), f"batos {path} has no example"


def test_help_keeps_the_examples_as_written(capsys):
    with pytest.raises(SystemExit):
        main(["keys", "list", "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  batos keys list\n  batos keys list --json" in out


def test_a_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["keys", "revoke"])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("batos keys revoke: UsageError: the following arguments are required: name")
    assert "batos keys revoke --help" in line


def test_a_usage_error_with_json_is_a_json_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["handovers", "--json", "--last", "zero"])
    assert info.value.code == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["type"] == "UsageError"
    assert "--last" in error["message"]


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("batos: UsageError: argument COMMAND: invalid choice")


def _broken(args: argparse.Namespace) -> int:
    raise LookupError("the thing is not there")


def _interrupted(args: argparse.Namespace) -> int:
    raise KeyboardInterrupt


def _patched(monkeypatch, func) -> None:
    """``batos keys list`` running ``func``: a command that fails in a way it did not expect."""
    real = batos_main.build_parser

    def build() -> argparse.ArgumentParser:
        parser = real()
        for path, p in parsers(parser):
            if path == "keys list":
                p.set_defaults(func=func)
        return parser

    monkeypatch.setattr(batos_main, "build_parser", build)


def test_an_unexpected_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    monkeypatch.delenv("BATOS_DEBUG", raising=False)
    _patched(monkeypatch, _broken)
    assert main(["keys", "list"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("batos keys list: LookupError: the thing is not there")
    assert "BATOS_DEBUG=1" in line
    assert main(["keys", "list", "--json"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["type"] == "LookupError"


def test_batos_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("BATOS_DEBUG", "1")
    _patched(monkeypatch, _broken)
    with pytest.raises(LookupError, match="not there"):
        main(["keys", "list"])


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    _patched(monkeypatch, _interrupted)
    assert main(["keys", "list"]) == 130
    assert capsys.readouterr().err.startswith("batos keys list: Interrupted: ")


def test_the_command_modules_come_from_one_list():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    registered = set(sub.choices)
    for name in batos_main.COMMANDS:
        if (ROOT / "batos" / f"{name}.py").exists():
            module = __import__(f"batos.{name}", fromlist=["add_commands"])
            probe = argparse.ArgumentParser()
            module.add_commands(probe.add_subparsers())
            mine = next(a for a in probe._actions if isinstance(a, argparse._SubParsersAction))
            assert set(mine.choices) <= registered, name
        else:
            assert name in batos_main._NOT_YET, f"batos/{name}.py is listed but missing"
