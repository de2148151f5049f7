"""Shell completion scripts (`mlc completion bash|zsh|fish`), generated from the CLI's own
argparse parser, so that a new command or flag completes without editing a script.

Completed: commands, each command's flags, the choices of `--format` and other fixed sets,
folders after `-C`/`--out`, and environment names (environments/*.yaml of the project in
the current folder, or of `-C DIR`) after `--env` and where a command takes ENV.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

SHELLS = ("bash", "zsh", "fish")

# Arguments whose values are environment names or folders, by destination.
_ENV_DESTS = {"env", "environment", "env_name", "source", "target"}
_DIR_DESTS = {"directory", "out"}


@dataclass
class _Command:
    name: str
    help: str
    flags: list[str] = field(default_factory=list)
    values: dict[str, list[str] | str] = field(default_factory=dict)  # flag -> choices | kind
    positionals: list[list[str] | str] = field(default_factory=list)


def _kind(action: argparse.Action) -> list[str] | str | None:
    if action.choices:
        return [str(c) for c in action.choices]
    if action.dest in _ENV_DESTS:
        return "env"
    if action.dest in _DIR_DESTS:
        return "dir"
    return None


def _commands(parser: argparse.ArgumentParser) -> list[_Command]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    out = []
    for name, p in sub.choices.items():
        command = _Command(name, helps.get(name, ""))
        for action in p._actions:
            if action.option_strings:
                command.flags += [o for o in action.option_strings if o.startswith("--")
                                  or len(o) == 2]
                if action.nargs != 0:
                    kind = _kind(action)
                    for option in action.option_strings:
                        command.values[option] = kind or "any"
            elif action.nargs != argparse.SUPPRESS:
                command.positionals.append(_kind(action) or "any")
        out.append(command)
    return out


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    if shell == "bash":
        return _bash(commands)
    if shell == "zsh":
        # zsh runs the bash function through its bashcompinit layer: one logic, two shells
        return ("#compdef mlc\nautoload -U +X bashcompinit && bashcompinit\n"
                + _bash(commands))
    if shell == "fish":
        return _fish(commands)
    raise ValueError(shell)


def _words(values: list[str] | str) -> str:
    if values == "env":
        return '$(_mlc_envs)'
    return " ".join(values) if isinstance(values, list) else ""


def _bash(commands: list[_Command]) -> str:
    lines = [
        "# mlc completion for bash; load with: source <(mlc completion bash)",
        "_mlc_envs() {",
        '    local dir="." i',
        "    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do",
        '        [[ ${COMP_WORDS[i]} == -C ]] && dir="${COMP_WORDS[i+1]}"',
        "    done",
        '    local f; for f in "$dir"/environments/*.yaml; do',
        '        [[ -e $f ]] && f="${f##*/}" && echo "${f%.yaml}"',
        "    done",
        "}",
        "_mlc() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" npos=0 i w',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        '        if [[ -z $cmd ]]; then [[ $w != -* ]] && cmd="$w"; continue; fi',
        '        case "$cmd $w" in',
    ]
    takes_value = sorted({f"{c.name} {flag}" for c in commands for flag in c.values})
    if takes_value:
        lines.append("            " + "|".join(f'"{k}"' for k in takes_value)
                     + ") ((i++)); continue ;;")
    lines += [
        "        esac",
        "        [[ $w != -* ]] && ((npos++))",
        "    done",
        "    if [[ -z $cmd ]]; then",
        '        COMPREPLY=($(compgen -W "' + " ".join(c.name for c in commands)
        + ' --version --help" -- "$cur"))',
        "        return",
        "    fi",
        '    case "$cmd $prev" in',
    ]
    for c in commands:
        for flag, values in sorted(c.values.items()):
            if values == "dir":
                lines.append(f'        "{c.name} {flag}") COMPREPLY=($(compgen -d -- "$cur")); '
                             "return ;;")
            elif values == "any":
                lines.append(f'        "{c.name} {flag}") COMPREPLY=($(compgen -f -- "$cur")); '
                             "return ;;")
            else:
                lines.append(f'        "{c.name} {flag}") COMPREPLY=($(compgen -W "'
                             f'{_words(values)}" -- "$cur")); return ;;')
    lines += ["    esac", '    if [[ $cur == -* ]]; then', '        case "$cmd" in']
    for c in commands:
        lines.append(f'            {c.name}) COMPREPLY=($(compgen -W "{" ".join(c.flags)}" '
                     '-- "$cur")) ;;')
    lines += ["        esac", "        return", "    fi", '    case "$cmd $npos" in']
    for c in commands:
        for index, values in enumerate(c.positionals):
            if values == "any":
                continue
            lines.append(f'        "{c.name} {index}") COMPREPLY=($(compgen -W "'
                         f'{_words(values)}" -- "$cur")) ;;')
    lines += ["    esac", "}", "complete -F _mlc mlc", ""]
    return "\n".join(lines)


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(commands: list[_Command]) -> str:
    names = " ".join(c.name for c in commands)
    lines = [
        "# mlc completion for fish; load with: mlc completion fish | source",
        "function __mlc_envs",
        "    set -l dir .",
        "    set -l words (commandline -opc)",
        "    set -l i (contains -i -- -C $words)",
        "    and set dir $words[(math $i + 1)]",
        "    for f in $dir/environments/*.yaml",
        "        basename $f .yaml",
        "    end",
        "end",
        "complete -c mlc -f",
        f"complete -c mlc -n 'not __fish_seen_subcommand_from {names}' -l version "
        "-d 'print the version'",
    ]
    for c in commands:
        lines.append(f"complete -c mlc -n 'not __fish_seen_subcommand_from {names}' "
                     f"-a {c.name} -d {_fish_quote(c.help[:80])}")
        seen = f"-n '__fish_seen_subcommand_from {c.name}'"
        for flag in c.flags:
            if flag in ("-h", "--help"):
                continue
            option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            values = c.values.get(flag)
            extra = ""
            if values == "dir":
                extra = " -r -a '(__fish_complete_directories)'"
            elif values == "env":
                extra = " -r -a '(__mlc_envs)'"
            elif isinstance(values, list):
                extra = f" -r -a {_fish_quote(' '.join(values))}"
            elif values == "any":
                extra = " -r"
            lines.append(f"complete -c mlc {seen} {option}{extra}")
        for values in c.positionals[:1]:
            if values == "env":
                lines.append(f"complete -c mlc {seen} -a '(__mlc_envs)'")
            elif isinstance(values, list):
                lines.append(f"complete -c mlc {seen} -a {_fish_quote(' '.join(values))}")
    return "\n".join(lines) + "\n"
