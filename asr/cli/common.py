"""Helpers shared by CLI subcommands (argument types, defaults from env)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

DEFAULT_CORPORA = Path("../shared/data")


def default_corpora_dir() -> Path:
    """``$ASR_CORPORA`` if set, else ``../shared/data`` (relative to the cwd)."""
    env = os.environ.get("ASR_CORPORA")
    return Path(env) if env else DEFAULT_CORPORA


def progress_enabled() -> bool:
    """Show progress bars only when stderr is a terminal (keeps logs clean)."""
    return sys.stderr.isatty()


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but paragraphs with indented lines (``examples:`` blocks, lists of
    outputs) keep their lines as written; prose paragraphs are wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in re.split(r"\n[ \t]*\n", text.strip("\n")):
            lines = paragraph.splitlines()
            if any(line.startswith(" ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)
