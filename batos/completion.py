"""``batos completion bash|zsh|fish``: a shell completion script, generated from the
argparse tree, so a new command, option or choice is completed without editing this.

``tree(parser)`` reads the tree into plain ``Command`` records: each command's path
(``batos keys generate``), its subcommands with their help, its options (whether one
takes a value, its choices, whether the value is a file or a folder), and what its
positional arguments complete to. ``batos.completion_scripts`` holds the records and writes each shell's
script from those records; the scripts hold the tables and one small function that
walks the words typed so far to the command they name.

A value is completed as a file or a folder when the action says so (an attribute
``complete = "file"`` or ``"dir"`` a module may set on what ``add_argument`` returns),
else when its metavar says PATH/FILE/DIR, else by its name (``--image``, ``--home``,
``--out``...: ``FILE_NAMES``, ``DIR_NAMES``).

Install: ``batos completion bash > ~/.local/share/bash-completion/completions/batos``,
``batos completion zsh > "${fpath[1]}/_batos"``, ``batos completion fish >
~/.config/fish/completions/batos.fish``; or for this shell only
``source <(batos completion bash)``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from .completion_scripts import Command, Option, bash, fish, zsh
from .output import add_json, emit

__all__ = ["DIR_NAMES", "FILE_NAMES", "Command", "Option", "add_commands", "cmd_completion",
           "parsers", "script", "tree"]

SHELLS = ("bash", "zsh", "fish")

#: option or positional names whose value is a file
FILE_NAMES = frozenset({"image", "config", "file", "screenshot", "public_key_file"})
#: ... or a folder
DIR_NAMES = frozenset({"home", "out", "data", "base", "adapter", "against", "unit_dir",
                       "find_links"})


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="print a shell completion script",
                       epilog="examples:\n"
                              "  batos completion bash > ~/.local/share/bash-completion/completions/batos\n"
                              "  batos completion zsh > \"${fpath[1]}/_batos\"\n"
                              "  batos completion fish > ~/.config/fish/completions/batos.fish\n"
                              "  source <(batos completion bash)    # this shell only")
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    add_json(p, "print {shell, script} as JSON")
    p.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    text = script(args.shell, args.root_parser)
    emit(args, {"shell": args.shell, "script": text}, lambda data: data["script"].rstrip("\n"))
    return 0


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` of the tree under ``parser``."""
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](tree(parser))


def parsers(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the tree with its command path (``""`` for the root, ``"keys generate"``)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}".strip())


def tree(parser: argparse.ArgumentParser) -> list[Command]:
    """The commands under ``parser`` (the root first), as plain records."""
    commands = []
    helps: dict[str, str] = {}
    for path, p in parsers(parser):
        command = Command(path=f"batos {path}".strip(), help=helps.get(path, ""))
        for action in p._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    text = _text(choice.help)
                    command.subcommands[choice.dest] = text
                    helps[f"{path} {choice.dest}".strip()] = text
            elif action.option_strings:
                command.options.append(Option(
                    flags=list(action.option_strings), help=_text(action.help, action.default),
                    takes_value=action.nargs != 0, choices=_choices(action), kind=_kind(action)))
            else:
                command.positional = command.positional or _kind(action)
                command.positional_choices += _choices(action)
        commands.append(command)
    return commands


def _choices(action: argparse.Action) -> list[str]:
    return [str(c) for c in action.choices] if action.choices else []


def _kind(action: argparse.Action) -> str:
    given = getattr(action, "complete", None)
    if given in ("file", "dir"):
        return given
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    if metavar in ("DIR", "FOLDER"):
        return "dir"
    if metavar in ("PATH", "FILE"):
        return "file"
    if action.dest in DIR_NAMES:
        return "dir"
    if action.dest in FILE_NAMES:
        return "file"
    return ""


def _text(help_text: str | None, default: object = None) -> str:
    """A help text on one short line, with ``%(default)s`` filled in."""
    if not help_text:
        return ""
    text = help_text.replace("%(default)s", str(default)).replace("%%", "%")
    text = " ".join(text.split())
    return text if len(text) <= 72 else text[:71].rstrip() + "…"
