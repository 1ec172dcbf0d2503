"""G.fst: the grammar (language-model) transducer, built from an ARPA file by Kaldi's arpa2fst.

:func:`arpa_to_g` checks the ARPA file and the ``words.txt`` symbol table first (kaldilm
aborts the whole process on bad input, and silently drops n-grams whose words are missing
from the symbol table), then calls :func:`kaldilm.arpa2fst`. As in Kaldi's
``arpa2fst --disambig-symbol=#0 --read-symbol-table=words.txt``, back-off arcs carry ``#0`` on
the input side and epsilon on the output side, ``<s>`` and ``</s>`` become epsilons (``</s>`` is
the final weight), and weights are ``-ln P`` (tropical semiring).

>>> arpa_to_g("lm.arpa", words_txt="lang/words.txt", out_path="lang/G.fst")  # doctest: +SKIP
PosixPath('lang/G.fst')
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from asr.errors import GraphError, LangError
from asr.fileio import atomic_write
from asr.lang.arpa import BOS, EOS, read_arpa, truncate_model, write_arpa
from asr.lang.symbols import read_symbol_table

__all__ = ["arpa_to_g", "read_word_symbols"]


def read_word_symbols(words_txt: str | os.PathLike) -> dict[str, int]:
    """``word -> id`` of a Kaldi/OpenFst symbol table (``word id`` per line)."""
    try:
        table = read_symbol_table(words_txt)
    except LangError as err:
        raise GraphError(str(err)) from None
    if len(table) == 0:
        raise GraphError(f"{words_txt}: the symbol table is empty")
    return dict(table.pairs)


def arpa_to_g(
    arpa_path: str | os.PathLike,
    *,
    words_txt: str | os.PathLike,
    out_path: str | os.PathLike,
    disambig_symbol: str = "#0",
    max_order: int | None = None,
) -> Path:
    """Compile ``arpa_path`` into a binary OpenFst ``G.fst`` at ``out_path`` (atomically).

    ``words_txt``: the word symbol table (must contain every ARPA word, ``<s>``, ``</s>`` and
    ``disambig_symbol``). ``disambig_symbol``: input label of back-off arcs (``""`` keeps
    epsilons and ``<s>``/``</s>`` labels, as arpa2fst without ``--disambig-symbol``).
    ``max_order``: use n-grams up to this order only (``None``: all). The model is truncated
    here (higher orders dropped, back-off weights of the new top order reset to 1) and the
    truncated ARPA handed to arpa2fst; kaldilm's own ``max_order`` keeps those back-off
    weights, which makes G unnormalized (every word's weight is paid once more).
    Raises :class:`GraphError` (or :class:`asr.errors.LmError` for a malformed ARPA file).
    """
    arpa_path, words_txt, out_path = Path(arpa_path), Path(words_txt), Path(out_path)
    if max_order is not None and max_order < 1:
        raise GraphError(f"max_order must be >= 1, got {max_order}")
    symbols = read_word_symbols(words_txt)
    model = read_arpa(arpa_path)  # validates the file; LmError names the bad line
    for required in (BOS, EOS):
        if required not in model.word_to_id:
            raise GraphError(f"{arpa_path}: the ARPA file has no {required} unigram")
    required_symbols = [BOS, EOS] + ([disambig_symbol] if disambig_symbol else [])
    missing_special = [s for s in required_symbols if s not in symbols]
    if missing_special:
        raise GraphError(f"{words_txt}: missing symbol(s) {' '.join(missing_special)}")
    unknown = [w for w in model.vocab if w not in symbols]
    if unknown:
        shown = " ".join(unknown[:20]) + (" ..." if len(unknown) > 20 else "")
        raise GraphError(
            f"{arpa_path}: {len(unknown)} word(s) of the ARPA file are not in {words_txt}: {shown}"
        )
    import kaldilm  # heavy import, only when needed

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".arpa2fst.", dir=out_path.parent) as tmp_dir:
        tmp_fst = Path(tmp_dir) / "G.fst"
        input_arpa = arpa_path
        if max_order is not None and max_order < model.order:
            input_arpa = Path(tmp_dir) / f"order{max_order}.arpa"
            write_arpa(truncate_model(model, max_order), input_arpa)
        log_path = Path(tmp_dir) / "arpa2fst.log"
        try:
            with _stderr_to(log_path):  # kaldilm logs "[I] Reading ..." lines on every call
                kaldilm.arpa2fst(
                    input_arpa=str(input_arpa),
                    output_fst=str(tmp_fst),
                    disambig_symbol=disambig_symbol,
                    read_symbol_table=str(words_txt),
                )
        except RuntimeError as err:  # pragma: no cover - kaldilm usually aborts instead
            log = log_path.read_text(errors="replace")[-2000:]
            raise GraphError(f"{arpa_path}: arpa2fst failed: {err}\n{log}") from err
        if not tmp_fst.is_file() or tmp_fst.stat().st_size == 0:
            raise GraphError(f"{arpa_path}: arpa2fst wrote no FST")
        with tmp_fst.open("rb") as src, atomic_write(out_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return out_path


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (C++ logging included) to ``path`` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "wb") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)
