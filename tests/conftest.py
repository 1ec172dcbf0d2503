"""Shared fixtures: where the real corpora are, helpers to find them, and the fixtures that
several test modules use (their material lives in ``tests/support/``; test modules never
import each other).

Corpora are read from ``$ASR_CORPORA`` or ``../shared/data`` next to the
checkout. Tests that need them skip with a clear reason elsewhere, but fail on
CI (``CI=true``), where nothing may be skipped silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Plain ``assert`` in the shared helpers reports values as in test modules.
pytest.register_assert_rewrite("tests.support")

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


@pytest.fixture(scope="module")
def yesno_server_bundle(yesno_dir, tmp_path_factory) -> Path:
    """A small yesno monophone bundle (10 iterations) for the real-model server tests."""
    from tests.support.yesno_server import build_server_bundle

    return build_server_bundle(yesno_dir, tmp_path_factory.mktemp("server_yesno"))


@pytest.fixture(scope="module")
def recognizer(yesno_server_bundle):
    """The :class:`asr.recognizer.Recognizer` of :func:`yesno_server_bundle` on the CPU (test
    modules with a recognizer of their own override it)."""
    from asr.recognizer import Recognizer

    return Recognizer.from_dir(yesno_server_bundle, device="cpu")
