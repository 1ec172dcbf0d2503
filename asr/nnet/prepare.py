"""Training targets for the neural acoustic models, from a data dir + alignments or + lexicon.

* DNN-HMM: per-frame pdf-ids from GMM alignments (transition-ids mapped through the
  alignment model's ``tid2pdf``), :func:`frame_targets`; the alignment's model and the
  data dir's features must agree on ``num_frames`` per utterance.
* CTC: token sequences from the transcripts (``text``) through the lexicon,
  :func:`token_targets`. Tokens are the lang dir's real phones in phone-id order
  (no ``<eps>``, no ``#n``), with the blank ``<blk>`` as token 0 — exactly the tokens
  of ``asr graph mktlg LANG OUT`` (:func:`asr.graph.ctc.mktlg` with ``tokens=None``),
  so the CTC model's output column ``k`` is the TLG's ``ilabel_to_pdf`` ``k``. Each word
  takes its first pronunciation in ``LANG/phones/align_lexicon.txt`` (position-dependent
  phones included when the lang uses them). OOV words either map to the lang's OOV word
  (``oov="map"``, e.g. ``<UNK> -> SPN``) or drop their utterance (``oov="skip"``).

>>> token_table(lang_dir)  # doctest: +SKIP
['<blk>', 'SIL', 'SPN', 'N', 'Y']
>>> targets, skipped = token_targets({"u1": "YES NO"}, lang_dir=lang_dir)  # doctest: +SKIP
>>> targets["u1"].tolist(), skipped  # doctest: +SKIP
([4, 3], {})
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.errors import AsrError, TrainingError

__all__ = [
    "BLANK_SYMBOL",
    "TargetStats",
    "frame_targets",
    "read_pronunciations",
    "token_table",
    "token_targets",
    "write_token_table",
]

BLANK_SYMBOL = "<blk>"
_OOV_POLICIES = ("map", "skip")


@dataclass(frozen=True)
class TargetStats:
    """How many utterances got targets, and why the others did not (``utt_id -> reason``)."""

    num_kept: int
    skipped: Mapping[str, str]


def frame_targets(
    alignments: Mapping[str, np.ndarray],
    *,
    tid2pdf: np.ndarray,
    num_frames: Mapping[str, int] | None = None,
) -> tuple[dict[str, np.ndarray], TargetStats]:
    """Per-frame pdf-ids ``utt_id -> (num_frames,) int64`` from transition-id alignments.

    ``tid2pdf``: the alignment model's map (index 0 unused). With ``num_frames``
    (``utt_id -> feature frames``), utterances whose alignment length differs, or
    that have no features, are skipped (reported in the stats).
    """
    tid2pdf = np.asarray(tid2pdf, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for utt_id, ali in alignments.items():
        ali = np.asarray(ali, dtype=np.int64)
        if ali.size and (ali.min() < 1 or ali.max() >= len(tid2pdf)):
            raise TrainingError(
                f"utterance {utt_id}: transition-ids outside 1..{len(tid2pdf) - 1}; "
                "the alignments were made with another model"
            )
        if num_frames is not None:
            frames = num_frames.get(utt_id)
            if frames is None:
                skipped[utt_id] = "no features"
                continue
            if frames != len(ali):
                skipped[utt_id] = f"alignment has {len(ali)} frames, features {frames}"
                continue
        out[utt_id] = tid2pdf[ali]
    return out, TargetStats(num_kept=len(out), skipped=skipped)


def _lang_phones(lang_dir: Path):
    from asr.lang import read_lang

    try:
        return read_lang(lang_dir)
    except AsrError as err:
        raise TrainingError(f"cannot read lang dir {lang_dir}: {err}") from None


def token_table(lang_dir: str | os.PathLike) -> list[str]:
    """``[<blk>, phone, ...]``: token ``k`` is entry ``k`` (the TLG's default tokens)."""
    lang = _lang_phones(Path(lang_dir))
    disambig = set(lang.disambig_phone_ids)
    phones = [s for s, i in sorted(lang.phones.pairs, key=lambda p: p[1]) if i != 0]
    return [BLANK_SYMBOL] + [p for p in phones if lang.phones[p] not in disambig]


def write_token_table(tokens: list[str], path: str | os.PathLike) -> None:
    """Write ``tokens.txt`` (``symbol index`` per line), atomically."""
    from asr.fileio import atomic_write_text

    atomic_write_text(path, "".join(f"{t} {k}\n" for k, t in enumerate(tokens)))


def read_pronunciations(lang_dir: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """``word -> phones`` of each word's FIRST pronunciation in ``LANG/phones/align_lexicon.txt``
    (``word word phone ...`` lines); falls back to ``LANG/lexicon.txt`` (``word phone ...``)."""
    lang_dir = Path(lang_dir)
    align_lex = lang_dir / "phones" / "align_lexicon.txt"
    path, skip = (align_lex, 2) if align_lex.is_file() else (lang_dir / "lexicon.txt", 1)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TrainingError(f"{path}: not found; is {lang_dir} a lang dir?") from None
    prons: dict[str, tuple[str, ...]] = {}
    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) <= skip:
            raise TrainingError(f"{path}:{line_no}: a word without phones: {line!r}")
        prons.setdefault(fields[0], tuple(fields[skip:]))
    return prons


def token_targets(
    texts: Mapping[str, str],
    *,
    lang_dir: str | os.PathLike,
    oov: str = "map",
) -> tuple[dict[str, np.ndarray], TargetStats]:
    """Token ids ``utt_id -> (num_tokens,) int64`` of each transcript (see the module docstring).

    Utterances with no tokens, or with OOV words under ``oov="skip"`` (or with no OOV
    word in the lang), are skipped and reported in the stats.
    """
    if oov not in _OOV_POLICIES:
        raise TrainingError(f"oov must be one of {_OOV_POLICIES}, got {oov!r}")
    lang_dir = Path(lang_dir)
    lang = _lang_phones(lang_dir)
    tokens = token_table(lang_dir)
    index = {t: k for k, t in enumerate(tokens)}
    prons = read_pronunciations(lang_dir)
    unknown = sorted({p for pron in prons.values() for p in pron} - set(index))
    if unknown:
        raise TrainingError(f"{lang_dir}: lexicon phones {unknown[:10]} are not tokens")
    word_tokens = {w: np.array([index[p] for p in pron], np.int64) for w, pron in prons.items()}
    oov_tokens = word_tokens.get(lang.oov_word)
    out: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for utt_id, text in texts.items():
        pieces, missing = [], []
        for word in text.split():
            ids = word_tokens.get(word)
            if ids is None:
                missing.append(word)
                ids = oov_tokens
            if ids is not None:
                pieces.append(ids)
        if missing and (oov == "skip" or oov_tokens is None):
            skipped[utt_id] = f"OOV words {missing[:5]}"
        elif not pieces:
            skipped[utt_id] = "empty transcript"
        else:
            out[utt_id] = np.concatenate(pieces)
    return out, TargetStats(num_kept=len(out), skipped=skipped)
