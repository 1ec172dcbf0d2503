"""Shared fixtures: where the real corpora are, and helpers to find them.

Corpora are read from ``$ASR_CORPORA`` or ``../shared/data`` next to the
checkout. Tests that need them skip with a clear reason elsewhere, but fail on
CI (``CI=true``), where nothing may be skipped silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def corpora_root() -> Path:
    env = os.environ.get("ASR_CORPORA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set ASR_CORPORA to the corpora folder)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    return _require(corpora_root(), "corpora folder")


@pytest.fixture(scope="session")
def an4_dir() -> Path:
    return _require(corpora_root() / "an4", "AN4 corpus")


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    return _require(corpora_root() / "fsdd", "FSDD corpus")


@pytest.fixture(scope="session")
def yesno_dir() -> Path:
    return _require(corpora_root() / "yesno", "yesno corpus")


@pytest.fixture(scope="session")
def cmudict_dir() -> Path:
    return _require(corpora_root() / "cmudict", "CMUdict")


@pytest.fixture(scope="session")
def speechocean762_dir() -> Path:
    return _require(corpora_root() / "speechocean762", "speechocean762 corpus")
