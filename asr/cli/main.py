"""Entry point of the ``asr`` command: one module per subcommand group.

Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)``, which
adds its subcommand(s) and sets ``func`` (taking the parsed namespace and
returning an exit code) as a parser default. Heavy imports (torch, kaldifst)
happen inside those functions so ``asr --help`` stays fast.

An argument ``@FILE`` stands for the options written in FILE (Kaldi-style conf files, as the
recipes keep theirs in ``recipes/<corpus>/conf/``): shell words, one or more options a line,
``#`` comments; ``asr train mono DATA LANG EXP @conf/mono.conf --nj 4``.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from asr import __version__
from asr.errors import AsrError

COMMAND_MODULES: tuple[str, ...] = (
    "asr.cli.prepare",
    "asr.cli.features",
    "asr.cli.score",
    "asr.cli.lang",
    "asr.cli.lm",
    "asr.cli.hmm",
    "asr.cli.graph",
    "asr.cli.decode",
    "asr.cli.train",
    "asr.cli.align",
    "asr.cli.results",
    "asr.cli.export",
    "asr.cli.transcribe",
    "asr.cli.plot",
    "asr.cli.serve",
    "asr.cli.stream",
    "asr.cli.timing",
)


EPILOG = """Each command has --help with examples: asr COMMAND --help, asr train mono --help.

examples:
  asr prepare yesno --corpus-dir ../shared/data/yesno --out data/yesno
  asr features compute data/yesno/train --nj 2
  asr transcribe --model exp/yesno/mono/bundle ../shared/data/yesno/waves_yesno/0_0_1_0_1_0_1_1.wav
  asr train mono data/an4/train data/an4/lang exp/an4/mono @recipes/an4/conf/mono.conf --nj 2
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr",
        epilog=EPILOG,
        description="Speech recognition pipeline: prepare data, compute features, "
        "build graphs, train, decode, transcribe and serve.\n\n"
        "An argument @FILE reads options from FILE (one or more a line, # comments).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        fromfile_prefix_chars="@",
    )
    parser.convert_arg_line_to_args = read_option_line
    parser.add_argument("--version", action="version", version=f"asr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def read_option_line(line: str) -> list[str]:
    """The arguments on one line of an ``@FILE`` option file: shell words, ``#`` comments.

    >>> read_option_line("--epochs=8 --context 6,6  # the TDNN's")
    ['--epochs=8', '--context', '6,6']
    """
    return shlex.split(line, comments=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AsrError as err:
        print(f"asr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asr {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # disk full, read-only or missing output dirs, permissions
        print(f"asr {args.command}: error: {os_error_message(err)}", file=sys.stderr)
        return 1


def os_error_message(err: OSError) -> str:
    """One line for an OSError: the path(s) it names and the cause, without the errno prefix.

    >>> import errno
    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device", "exp/a.ark"))
    'exp/a.ark: No space left on device'
    """
    cause = err.strerror or str(err) or type(err).__name__
    if err.filename is None:
        return cause
    if err.filename2 is not None:
        return f"{err.filename} -> {err.filename2}: {cause}"
    return f"{err.filename}: {cause}"


if __name__ == "__main__":
    sys.exit(main())
