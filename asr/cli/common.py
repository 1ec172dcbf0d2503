"""Helpers shared by CLI subcommands (argument types, defaults from env)."""

from __future__ import annotations

import os
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
