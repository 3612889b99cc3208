"""The three shells' completion scripts, written from the records ``batos.completion.tree``
reads from the argparse tree (``Command``, ``Option``: defined here).

Each script holds tables keyed by the command path (``batos keys generate``) and, for an
option's value, by ``<path>|<option>``; one function walks the words typed so far to the
command they name (skipping each option's value), then offers what fits the word being
completed: an option's value (its choices, files, folders, or nothing), the command's
options, its subcommands, or its positional argument's files or choices. The value of
``--x=...`` written in one word is not completed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Command", "Option", "bash", "fish", "zsh"]


@dataclass
class Option:
    """One option of a command, as completion needs it."""

    flags: list[str]
    help: str
    takes_value: bool
    choices: list[str] = field(default_factory=list)
    kind: str = ""  # "file", "dir" or "" (any value)


@dataclass
class Command:
    """One command (or group) of the tree, as completion needs it."""

    path: str  # "batos", "batos keys", "batos keys generate"
    help: str
    subcommands: dict[str, str] = field(default_factory=dict)  # name -> help
    options: list[Option] = field(default_factory=list)
    positional: str = ""  # what a positional completes to: "file", "dir" or "" (nothing)
    positional_choices: list[str] = field(default_factory=list)


HEADER = ("# {shell} completion for batos, generated from its commands by "
          "`batos completion {shell}`;\n# regenerate it after an upgrade.\n")


def _value_kind(option: Option) -> str:
    """An option's entry in the value table: ``=a b`` (choices), ``file``, ``dir``, ``value``."""
    if option.choices:
        return "=" + " ".join(option.choices)
    return option.kind or "value"


def _positional(command: Command) -> str:
    if command.positional_choices:
        return "=" + " ".join(command.positional_choices)
    return command.positional


def _sh(text: str) -> str:
    """``text`` in single quotes for bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _tables(commands: list[Command], entry: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """Lines of the four tables, as ``[key]=value`` (bash) or ``key value`` (zsh) pairs."""
    def pair(key: str, value: str) -> str:
        return f"  [{_sh(key)}]={_sh(value)}" if entry == "bash" else f"  {_sh(key)} {_sh(value)}"

    subs, opts, args, pos = [], [], [], []
    for c in commands:
        flags = [f for o in c.options for f in o.flags]
        if entry == "bash":
            opts.append(pair(c.path, " ".join(flags)))
            if c.subcommands:
                subs.append(pair(c.path, " ".join(c.subcommands)))
        else:
            opts.append(pair(c.path, "\n".join(
                f"{f.replace(':', chr(92) + ':')}:{o.help}" for o in c.options for f in o.flags)))
            if c.subcommands:
                subs.append(pair(c.path, "\n".join(
                    f"{n}:{h}" for n, h in c.subcommands.items())))
        for o in c.options:
            if o.takes_value:
                args += [pair(f"{c.path}|{f}", _value_kind(o)) for f in o.flags]
        if _positional(c):
            pos.append(pair(c.path, _positional(c)))
    return subs, opts, args, pos


def bash(commands: list[Command]) -> str:
    subs, opts, args, pos = _tables(commands, "bash")
    tables = "\n".join(
        f"declare -gA {name}=(\n" + "\n".join(lines) + "\n)"
        for name, lines in (("_batos_subs", subs), ("_batos_opts", opts),
                            ("_batos_args", args), ("_batos_pos", pos)))
    return HEADER.format(shell="bash") + tables + r"""

_batos_offer() {  # offer what $1 says ("=a b", file, dir, value) for the word $2
    case $1 in
        =*) mapfile -t COMPREPLY < <(compgen -W "${1#=}" -- "$2") ;;
        file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$2") ;;
        dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$2") ;;
        *) COMPREPLY=() ;;
    esac
}

_batos() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd=batos word i
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ $word == -* ]]; then
            if [[ $word != *=* && -n ${_batos_args["$cmd|$word"]+set} ]] && ((i + 1 < COMP_CWORD)); then
                ((i++))
            fi
        elif [[ -n ${_batos_opts["$cmd $word"]+set} ]]; then
            cmd="$cmd $word"
        fi
    done
    if ((COMP_CWORD > 1)) && [[ $prev == -* && -n ${_batos_args["$cmd|$prev"]+set} ]]; then
        _batos_offer "${_batos_args["$cmd|$prev"]}" "$cur"
    elif [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_batos_opts[$cmd]}" -- "$cur")
    elif [[ -n ${_batos_subs[$cmd]+set} ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${_batos_subs[$cmd]}" -- "$cur")
    elif [[ -n ${_batos_pos[$cmd]+set} ]]; then
        _batos_offer "${_batos_pos[$cmd]}" "$cur"
    fi
    return 0
}

complete -F _batos batos
"""


def zsh(commands: list[Command]) -> str:
    subs, opts, args, pos = _tables(commands, "zsh")
    tables = "\n".join(
        f"{name}=(\n" + "\n".join(lines) + "\n)"
        for name, lines in (("_batos_subs", subs), ("_batos_opts", opts),
                            ("_batos_args", args), ("_batos_pos", pos)))
    return "#compdef batos\n" + HEADER.format(shell="zsh") + r"""
typeset -gA _batos_subs _batos_opts _batos_args _batos_pos
""" + tables + r"""

_batos_offer() {  # offer what $1 says ("=a b", file, dir, value)
    local -a items
    case $1 in
        '='*) items=(${=${1#=}}); compadd -a items ;;  # quoted: =word is a command's path
        file) _files ;;
        dir) _files -/ ;;
        *) _message 'a value' ;;
    esac
}

_batos() {
    local cmd=batos word key i
    local -a items
    for ((i = 2; i < CURRENT; i++)); do
        word=${words[i]}
        if [[ $word == -* ]]; then
            key="$cmd|$word"
            if [[ $word != *=* && -n ${_batos_args[$key]+set} ]] && ((i + 1 < CURRENT)); then
                ((i++))
            fi
        else
            key="$cmd $word"
            [[ -n ${_batos_opts[$key]+set} ]] && cmd=$key
        fi
    done
    key="$cmd|${words[CURRENT-1]}"
    if ((CURRENT > 2)) && [[ ${words[CURRENT-1]} == -* && -n ${_batos_args[$key]+set} ]]; then
        _batos_offer "${_batos_args[$key]}"
    elif [[ ${words[CURRENT]} == -* ]]; then
        items=(${(f)_batos_opts[$cmd]})
        _describe -t options option items
    elif [[ -n ${_batos_subs[$cmd]+set} ]]; then
        items=(${(f)_batos_subs[$cmd]})
        _describe -t commands command items
    elif [[ -n ${_batos_pos[$cmd]+set} ]]; then
        _batos_offer "${_batos_pos[$cmd]}"
    fi
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
    _batos "$@"
else
    compdef _batos batos
fi
"""


def _fish(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(commands: list[Command]) -> str:
    paths = " ".join(_fish(c.path) for c in commands)
    valued = " ".join(_fish(f"{c.path}|{f}") for c in commands for o in c.options
                      if o.takes_value for f in o.flags)
    lines = [HEADER.format(shell="fish").rstrip("\n"),
             f"set -g __batos_paths {paths}",
             f"set -g __batos_valued {valued}",
             r"""
function __batos_command --description 'the batos command the words typed so far name'
    set -l cmd batos
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip = 1
            set skip 0
        else if string match -q -- '-*' $word
            if not string match -q -- '*=*' $word; and contains -- "$cmd|$word" $__batos_valued
                set skip 1
            end
        else if contains -- "$cmd $word" $__batos_paths
            set cmd "$cmd $word"
        end
    end
    echo $cmd
end

function __batos_is
    test (__batos_command) = "$argv[1]"
end

complete -c batos -f"""]
    for c in commands:
        when = f"-n {_fish('__batos_is ' + _fish(c.path))}"
        for name, text in c.subcommands.items():
            lines.append(f"complete -c batos {when} -a {_fish(name)} -d {_fish(text)}")
        for o in c.options:
            names = " ".join(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}"
                             for f in o.flags)
            value = ""
            if o.takes_value:
                value = {"file": " -r -F", "dir": " -x -a '(__fish_complete_directories)'"
                         }.get(o.kind, " -x")
                if o.choices:
                    value = f" -x -a {_fish(' '.join(o.choices))}"
            lines.append(f"complete -c batos {when} {names}{value} -d {_fish(o.help)}")
        if c.positional_choices:
            lines.append(f"complete -c batos {when} -a {_fish(' '.join(c.positional_choices))}")
        elif c.positional == "file":
            lines.append(f"complete -c batos {when} -F")
        elif c.positional == "dir":
            lines.append(f"complete -c batos {when} -a '(__fish_complete_directories)'")
    return "\n".join(lines) + "\n"
