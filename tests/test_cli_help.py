"""Every ``asr`` command's ``--help``: walks the whole parser tree of
:func:`asr.cli.main.build_parser` (every subcommand, recursively) and checks that each help
has an ``example:``/``examples:`` block with a real command line of that very command, that
every option and argument says what it is, and that the examples parse."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from asr.cli.main import build_parser

_HEADER = re.compile(r"^examples?\b[^\n]*:$")


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(command words, parser)`` for ``parser`` and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


COMMANDS = list(walk(build_parser()))
IDS = [" ".join(("asr", *path)) for path, _ in COMMANDS]


def example_lines(help_text: str) -> list[str]:
    """The command lines of the help's last ``example:``/``examples:`` block: the indented
    lines right after its header (``\\`` continues a line; ``# ...`` lines are comments)."""
    lines = help_text.rstrip("\n").splitlines()
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if not headers:
        return []
    commands, current = [], ""
    for line in lines[headers[-1] + 1 :]:
        if line and not line.startswith(" "):
            break
        text = line.strip()
        if not text or (text.startswith("#") and not current):
            continue
        current += text[:-1] + " " if text.endswith("\\") else text
        if not text.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def test_the_walk_finds_every_command():
    assert len(COMMANDS) > 30
    for expected in ["score", "decode", "train", "train mono", "train ctc", "align", "results",
                     "stream", "graph mkgraph", "graph mktlg", "plot alignment", "plot results",
                     "features", "lang", "hmm", "lm", "prepare", "export", "transcribe",
                     "serve"]:  # fmt: skip
        assert f"asr {expected}" in IDS, expected


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_help_has_examples_of_this_command(path, parser):
    text = parser.format_help()
    commands = example_lines(text)
    assert commands, f"`asr {' '.join(path)} --help` has no examples: block"
    own = [c for c in commands if first_command(c)[: len(path) + 1] == ["asr", *path]]
    assert own, f"no example runs `asr {' '.join(path)}`: {commands}"


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_every_option_and_argument_has_help(path, parser):
    missing = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert not missing, f"asr {' '.join(path)}: no help for {missing}"


def first_command(line: str) -> list[str]:
    """The words of the first simple command of a shell line (up to ``;``, ``&``, ``|``,
    ``&&``, a redirection or a comment)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            if token[0] in "<>" and words and words[-1].isdigit():
                words.pop()  # the 2 of 2>FILE
            break
        words.append(token)
    return words


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_examples_parse(path, parser):
    """Each example of a leaf command is accepted by the parser (names, option values)."""
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        return
    top = build_parser()
    for command in example_lines(parser.format_help()):
        words = first_command(command)
        if words[: len(path) + 1] == ["asr", *path]:
            # @FILE option files are read relative to the cwd: parse without them
            args = top.parse_args([w for w in words[1:] if not w.startswith("@")])
            assert args.func is not None, command


def test_readme_quick_start_says_hebrew_how_to_stop_and_its_commands_parse():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Quick start")
    section = readme[start : readme.index("\n## ", start + 1)]
    assert "Hebrew" in section and "will not be recognized" in section
    assert "kill %1" in section and "SIGTERM" in section and "Ctrl-C" in section
    opening = section.index("```bash") + len("```bash")
    block = section[opening : section.index("```", opening)]
    commands = [first_command(line) for line in block.splitlines() if line.startswith("asr ")]
    assert len(commands) >= 4
    top = build_parser()
    for words in commands:
        assert top.parse_args(words[1:]).func is not None, words


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_help_ends_with_its_examples(path, parser):
    """The examples are the last thing ``--help`` prints (nothing unindented after them)."""
    lines = [line for line in parser.format_help().rstrip("\n").splitlines() if line.strip()]
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    assert headers, f"asr {' '.join(path)}: no examples block"
    trailing = [line for line in lines[headers[-1] + 1 :] if not line.startswith(" ")]
    assert not trailing, f"asr {' '.join(path)}: text after the examples: {trailing[:2]}"
