"""Many-to-many letter/phone alignment by EM, the first step of joint-sequence G2P.

Each word's spelling and pronunciation are cut into *chunks* of 1..``max_letters`` letters
paired with 0..``max_phones`` phones (a *graphone*, e.g. ``ph:F``, ``x:K S``, ``e:-``); the
chunk probabilities are learned by expectation-maximisation over all segmentations of all
entries (forward-backward on each word's ``(letters + 1) x (phones + 1)`` grid), as
Jiampojamarn et al.'s m2m-aligner and Phonetisaurus do with joint probabilities; the best
segmentation of each entry under the final probabilities is its alignment. Phones never go
without letters (no ``0:k`` chunks), so a decoder consumes at least one letter per graphone.

Letters and phones are integer codes ``1..num_letters`` / ``1..num_phones`` (0 is "none"). A
chunk is one integer key ``letter_code * (num_phones + 1) ** 2 + phone_code`` where a code of
up to two symbols is ``first * (base) + second`` (0 when absent), so the chunk table is a dense
array and the compiled E-step touches it by index.

>>> letters = [np.array([1, 2]), np.array([1])]          # "ab", "a"
>>> phones = [np.array([1, 2]), np.array([1])]           # "A B", "A"
>>> result = align_entries(letters, phones, num_letters=2, num_phones=2,
...                        config=AlignConfig(iterations=5))
>>> [chunk_symbols(int(k), 2, 2) for k in result.keys[result.offsets[0]:result.offsets[1]]]
[((1,), (1,)), ((2,), (2,))]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from asr.errors import LangError

__all__ = ["AlignConfig", "Alignment", "align_entries", "chunk_key", "chunk_symbols"]


@dataclass(frozen=True)
class AlignConfig:
    """Which chunks the aligner may use and how long EM runs.

    ``max_letters``/``max_phones``: longest letter / phone side of a chunk (1 or 2).
    ``many_to_many``: allow chunks with several letters *and* several phones (``2:2``);
    off by default, as Phonetisaurus's ``--restrict``. ``letter_deletions``: allow a letter
    with no phone (``1:0``, silent letters). EM stops after ``iterations`` or when the
    log-likelihood improves by less than ``tolerance`` (relative). ``penalize``: the final
    best segmentation weighs a chunk's log-probability by its longer side (``x:K S`` counts
    twice), against EM's preference for few long chunks, as Phonetisaurus's ``--penalize``
    (CMUdict held-out WER 24.9 % with it, 25.7 % without).
    """

    max_letters: int = 2
    max_phones: int = 2
    many_to_many: bool = False
    letter_deletions: bool = True
    iterations: int = 20
    tolerance: float = 1e-5
    penalize: bool = True

    def __post_init__(self) -> None:
        if self.max_letters not in (1, 2) or self.max_phones not in (1, 2):
            raise LangError(
                f"chunk sizes must be 1 or 2, got max_letters={self.max_letters}, "
                f"max_phones={self.max_phones}"
            )
        if self.iterations < 1:
            raise LangError(f"iterations must be >= 1, got {self.iterations}")

    def chunk_shapes(self) -> np.ndarray:
        """(num_shapes, 2) int64 ``(num_letters, num_phones)`` of every allowed chunk."""
        shapes = [
            (nl, np_)
            for nl in range(1, self.max_letters + 1)
            for np_ in range(0 if self.letter_deletions else 1, self.max_phones + 1)
            if not (np_ == 0 and nl > 1) and (self.many_to_many or nl == 1 or np_ <= 1)
        ]
        return np.array(shapes, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Alignment:
    """Best segmentation of every entry.

    ``keys``: (total_chunks,) int64 chunk keys of all aligned entries laid end to end;
    ``offsets``: (num_entries + 1,) start of each entry's chunks (an entry that cannot be
    segmented with the allowed chunks has none); ``aligned``: (num_entries,) bool;
    ``chunk_logprob``: (num_keys,) float64 natural-log chunk probabilities after EM
    (-inf for chunks never used); ``log_likelihood``: per EM iteration.
    """

    keys: np.ndarray
    offsets: np.ndarray
    aligned: np.ndarray
    chunk_logprob: np.ndarray
    log_likelihood: tuple[float, ...]


def chunk_key(
    letters: Sequence[int], phones: Sequence[int], num_letters: int, num_phones: int
) -> int:
    """The integer key of a chunk of letter codes and phone codes."""
    letter_base, phone_base = num_letters + 1, num_phones + 1
    letter_code = 0
    for code in letters:
        letter_code = letter_code * letter_base + int(code)
    phone_code = 0
    for code in phones:
        phone_code = phone_code * phone_base + int(code)
    return letter_code * phone_base * phone_base + phone_code


def chunk_symbols(
    key: int, num_letters: int, num_phones: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Inverse of :func:`chunk_key`: ``(letter codes, phone codes)``."""
    letter_base, phone_base = num_letters + 1, num_phones + 1
    letter_code, phone_code = divmod(int(key), phone_base * phone_base)

    def digits(code: int, base: int) -> tuple[int, ...]:
        first, second = divmod(code, base)
        return tuple(d for d in (first, second) if d)

    return digits(letter_code, letter_base), digits(phone_code, phone_base)


def align_entries(
    letters: Sequence[np.ndarray],
    phones: Sequence[np.ndarray],
    *,
    num_letters: int,
    num_phones: int,
    config: AlignConfig | None = None,
) -> Alignment:
    """EM-align every ``(letters[i], phones[i])`` entry (int codes from 1) and return the best
    segmentation of each under the final chunk probabilities."""
    config = config if config is not None else AlignConfig()
    if len(letters) != len(phones):
        raise LangError(f"{len(letters)} spellings for {len(phones)} pronunciations")
    if not letters:
        raise LangError("nothing to align (no entries)")
    letter_flat, letter_off = _flatten(letters, num_letters, "letter")
    phone_flat, phone_off = _flatten(phones, num_phones, "phone")
    shapes = config.chunk_shapes()
    num_keys = (num_letters + 1) ** 2 * (num_phones + 1) ** 2
    prob = np.ones(num_keys)  # uniform start: every chunk equally likely
    history: list[float] = []
    for _ in range(config.iterations):
        counts = np.zeros(num_keys)
        log_lik = _expectation(
            letter_flat, letter_off, phone_flat, phone_off, shapes, prob, counts,
            num_letters + 1, num_phones + 1,
        )  # fmt: skip
        total = counts.sum()
        if total <= 0:
            raise LangError(
                "no entry can be segmented into the allowed letter/phone chunks "
                f"(max_letters={config.max_letters}, max_phones={config.max_phones})"
            )
        prob = counts / total
        converged = bool(history) and abs(log_lik - history[-1]) <= config.tolerance * abs(log_lik)
        history.append(log_lik)
        if converged:
            break
    keys, counts_per_entry = _viterbi(
        letter_flat, letter_off, phone_flat, phone_off, shapes, prob, num_letters + 1,
        num_phones + 1, config.penalize,
    )  # fmt: skip
    offsets = np.concatenate([[0], np.cumsum(counts_per_entry)]).astype(np.int64)
    with np.errstate(divide="ignore"):
        chunk_logprob = np.log(prob)
    return Alignment(
        keys=keys,
        offsets=offsets,
        aligned=counts_per_entry > 0,
        chunk_logprob=chunk_logprob,
        log_likelihood=tuple(history),
    )


def _flatten(seqs: Sequence[np.ndarray], num_symbols: int, what: str):
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    if (lengths == 0).any():
        raise LangError(f"entry {int(np.argmax(lengths == 0))} has no {what}s")
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
    if flat.min() < 1 or flat.max() > num_symbols:
        raise LangError(f"{what} codes must lie in 1..{num_symbols}")
    return flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _key(letters, phones, i, nl, j, np_, letter_base, phone_base):  # pragma: no cover - numba
    """Key of the chunk ``letters[i - nl:i]`` : ``phones[j - np_:j]``."""
    letter_code = 0
    for k in range(i - nl, i):
        letter_code = letter_code * letter_base + letters[k]
    phone_code = 0
    for k in range(j - np_, j):
        phone_code = phone_code * phone_base + phones[k]
    return letter_code * phone_base * phone_base + phone_code


@numba.njit(cache=True, nogil=True)
def _expectation(
    letter_flat, letter_off, phone_flat, phone_off, shapes, prob, counts, letter_base, phone_base
):  # pragma: no cover - numba
    """One E-step: add every entry's expected chunk counts to ``counts``; return the total
    natural-log likelihood of the entries that can be segmented."""
    log_lik = 0.0
    num_shapes = shapes.shape[0]
    for e in range(letter_off.shape[0] - 1):
        letters = letter_flat[letter_off[e] : letter_off[e + 1]]
        phones = phone_flat[phone_off[e] : phone_off[e + 1]]
        n, m = letters.shape[0], phones.shape[0]
        alpha = np.zeros((n + 1, m + 1))
        beta = np.zeros((n + 1, m + 1))
        alpha[0, 0] = 1.0
        for i in range(1, n + 1):
            for j in range(m + 1):
                total = 0.0
                for s in range(num_shapes):
                    nl, np_ = shapes[s, 0], shapes[s, 1]
                    if nl <= i and np_ <= j and alpha[i - nl, j - np_] > 0.0:
                        key = _key(letters, phones, i, nl, j, np_, letter_base, phone_base)
                        total += alpha[i - nl, j - np_] * prob[key]
                alpha[i, j] = total
        z = alpha[n, m]
        if z <= 0.0:
            continue
        log_lik += np.log(z)
        beta[n, m] = 1.0
        for i in range(n, 0, -1):
            for j in range(m, -1, -1):
                if beta[i, j] == 0.0:
                    continue
                for s in range(num_shapes):
                    nl, np_ = shapes[s, 0], shapes[s, 1]
                    if nl <= i and np_ <= j and alpha[i - nl, j - np_] > 0.0:
                        key = _key(letters, phones, i, nl, j, np_, letter_base, phone_base)
                        edge = prob[key] * beta[i, j]
                        beta[i - nl, j - np_] += edge
                        counts[key] += alpha[i - nl, j - np_] * edge / z
    return log_lik


@numba.njit(cache=True, nogil=True)
def _viterbi(
    letter_flat,
    letter_off,
    phone_flat,
    phone_off,
    shapes,
    prob,
    letter_base,
    phone_base,
    penalize,
):  # pragma: no cover - numba
    """Best segmentation of every entry: (chunk keys laid end to end, chunks per entry)."""
    num_entries = letter_off.shape[0] - 1
    per_entry = np.zeros(num_entries, dtype=np.int64)
    out = np.empty(letter_flat.shape[0], dtype=np.int64)  # at most one chunk per letter
    used = 0
    num_shapes = shapes.shape[0]
    for e in range(num_entries):
        letters = letter_flat[letter_off[e] : letter_off[e + 1]]
        phones = phone_flat[phone_off[e] : phone_off[e + 1]]
        n, m = letters.shape[0], phones.shape[0]
        best = np.full((n + 1, m + 1), -np.inf)
        back = np.full((n + 1, m + 1), -1, dtype=np.int64)
        best[0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(m + 1):
                for s in range(num_shapes):
                    nl, np_ = shapes[s, 0], shapes[s, 1]
                    if nl <= i and np_ <= j and best[i - nl, j - np_] > -np.inf:
                        key = _key(letters, phones, i, nl, j, np_, letter_base, phone_base)
                        if prob[key] > 0.0:
                            weight = max(nl, np_) if penalize else 1
                            score = best[i - nl, j - np_] + weight * np.log(prob[key])
                            if score > best[i, j]:
                                best[i, j] = score
                                back[i, j] = s
        if back[n, m] < 0:
            continue
        i, j, count = n, m, 0
        while i > 0:
            s = back[i, j]
            nl, np_ = shapes[s, 0], shapes[s, 1]
            out[used + count] = _key(letters, phones, i, nl, j, np_, letter_base, phone_base)
            count += 1
            i, j = i - nl, j - np_
        out[used : used + count] = out[used : used + count][::-1].copy()
        per_entry[e] = count
        used += count
    return out[:used].copy(), per_entry
