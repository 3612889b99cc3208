"""``batos completion bash|zsh|fish``: scripts generated from the argparse tree.

Each script is generated, checked for syntax by its shell where that shell is installed,
names every command, and completes in a real shell process: bash always (sourced, its
function run on prepared words), fish through its own ``complete -C``, zsh with the
completion system's builtins stood in by functions that print what they are given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

import pytest

from batos.completion import parsers, script, tree
from batos.main import build_parser, main

SHELLS = ("bash", "zsh", "fish")
SYNTAX = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}


def generated(shell: str, capsys) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def shell_or_skip(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed here, so its script's syntax cannot be checked")
    return path


def run_shell(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_names_every_command(shell, capsys):
    text = generated(shell, capsys)
    for path, _parser in parsers(build_parser()):
        for word in path.split():
            assert word in text, f"{shell}: {path!r}"
    assert "--add" in text  # options too
    assert "current" in text  # and choices (batos up --env-mode)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_is_valid_for_its_shell(shell, capsys, tmp_path):
    text = generated(shell, capsys)
    file = tmp_path / f"batos.{shell}"
    file.write_text(text)
    run_shell([shell_or_skip(shell), *SYNTAX[shell][1:], str(file)])


def test_json_holds_the_script(capsys):
    assert main(["completion", "fish", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shell"] == "fish"
    assert "complete -c batos" in data["script"]


def test_a_new_command_is_completed_without_editing_anything():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    extra = sub.add_parser("frobnicate", help="a command added later")
    extra.add_argument("--level", choices=["low", "high"])
    extra.add_argument("--report", metavar="FILE")
    commands = {c.path: c for c in tree(parser)}
    assert commands["batos"].subcommands["frobnicate"] == "a command added later"
    options = {o.flags[0]: o for o in commands["batos frobnicate"].options}
    assert options["--level"].choices == ["low", "high"]
    assert options["--report"].kind == "file"
    assert "frobnicate" in script("bash", parser)


def test_path_options_complete_files_or_folders():
    commands = {c.path: c for c in tree(build_parser())}
    kinds = {o.flags[-1]: o.kind for o in commands["batos bootstrap"].options}
    assert kinds["--image"] == "file"
    assert kinds["--home"] == "dir"
    assert commands["batos crucible check"].positional == "file"
    assert commands["batos completion"].positional_choices == list(SHELLS)


# sourced inside a function, as bash-completion's loader does: the tables must stay global
BASH_TRY = r"""
load() { source "$1"; }
load "$1"
try() {
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _batos
    printf '%s\n' "$*=>${COMPREPLY[*]}"
}
try batos ev
try batos evolve --a
try batos keys ""
try batos up --env-mode ""
try batos send --home keys ""
try batos up --home "$2/fol"
"""


def _answers(out: str) -> dict[str, list[str]]:
    pairs = (line.split("=>", 1) for line in out.splitlines() if "=>" in line)
    return {words.strip(): found.split() for words, found in pairs}


def test_bash_completes_commands_options_and_values(capsys, tmp_path):
    file = tmp_path / "batos.bash"
    file.write_text(generated("bash", capsys))
    (tmp_path / "folder").mkdir()
    got = _answers(run_shell(["bash", "--norc", "-c", BASH_TRY, "bash", str(file), str(tmp_path)]))
    assert "evolve" in got["batos ev"]
    assert all(w.startswith("ev") for w in got["batos ev"])
    assert "--add" in got["batos evolve --a"]
    assert all(w.startswith("--a") for w in got["batos evolve --a"])
    assert set(got["batos keys"]) == {"generate", "authorize", "revoke", "list"}
    assert got["batos up --env-mode"] == ["uv", "current"]
    assert got["batos send --home keys"] == []  # keys is --home's value, not the command
    assert got[f"batos up --home {tmp_path}/fol"] == [f"{tmp_path}/folder"]


def test_fish_completes_commands_and_options(capsys, tmp_path):
    fish = shell_or_skip("fish")
    file = tmp_path / "batos.fish"
    file.write_text(generated("fish", capsys))
    out = run_shell([fish, "--no-config", "-c",
                     f"source {file}; complete -C 'batos ev'; echo ---; complete -C 'batos evolve --a'"])
    commands, options = out.split("---\n")
    assert {line.split("\t")[0] for line in commands.splitlines()} == {"evolve", "evaluate"}
    assert [line.split("\t")[0] for line in options.splitlines()] == ["--add"]


ZSH_TRY = r"""
compdef() { : }
_describe() { print -rl -- "${(@P)4}" }
compadd() { print -rl -- "${(@P)2}" }
_files() { print -r -- "FILES $*" }
_message() { : }
source "$1"
try() { words=("$@"); CURRENT=$#words; print -r -- "== $*"; _batos }
try batos ev
try batos evolve --a
try batos up --env-mode ''
try batos up --home ''
"""


def test_zsh_offers_commands_options_and_values(capsys, tmp_path):
    zsh = shell_or_skip("zsh")
    file = tmp_path / "_batos"
    file.write_text(generated("zsh", capsys))
    out = run_shell([zsh, "-f", "-c", ZSH_TRY, "zsh", str(file)])
    blocks = {b.split("\n", 1)[0].strip(): b.split("\n")[1:] for b in out.split("== ")[1:]}
    assert any(line.startswith("evolve:") for line in blocks["batos ev"])  # with its help
    assert any(line.startswith("--add:") for line in blocks["batos evolve --a"])
    assert [line for line in blocks["batos up --env-mode"] if line] == ["uv", "current"]
    assert [line for line in blocks["batos up --home"] if line] == ["FILES -/"]


def test_the_install_lines_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["completion", "--help"])
    out = capsys.readouterr().out
    assert "bash-completion/completions/batos" in out
    assert "source <(batos completion bash)" in out


def test_every_script_says_how_it_was_made():
    parser = build_parser()
    for shell in SHELLS:
        assert f"`batos completion {shell}`" in script(shell, parser)
