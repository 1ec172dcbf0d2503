"""Grapheme-to-phoneme conversion with a joint-sequence (graphone) n-gram model.

The method of Bisani & Ney's Sequitur and Novak's Phonetisaurus, in their simplest
well-tested form:

1. **Alignment** (:mod:`asr.lang.g2p_align`): EM over every segmentation of each dictionary
   entry into *graphones*, chunks of 1-2 letters paired with 0-2 phones (``ph:F``, ``x:K S``,
   ``e:-``), then the best segmentation of each entry.
2. **Joint n-gram**: the aligned entries are sentences of graphone tokens; an interpolated
   modified Kneser-Ney n-gram of order ``config.order`` over them
   (:func:`asr.lang.lm.train_ngram`) is ``P(graphone sequence)``.
3. **Decoding**: a beam search over the letters of a word, left to right: each hypothesis
   consumes the next 1 or 2 letters with a graphone whose letters match and is scored by the
   back-off n-gram; hypotheses with the same n-gram state merge (Viterbi), ``beam`` survive per
   word and letter position; ``</s>`` closes them. All words of a call advance in lockstep,
   so each step is a handful of NumPy operations over every hypothesis of every word.

Words are case-folded (``config.lowercase``); a word with a character that no training word
had raises :class:`LangError` naming it. Every letter seen in training has at least one
single-letter graphone (the aligner's most probable one is added when the alignments never
used it), so any word over the alphabet gets a pronunciation.

The model file is one ``.npz`` of plain arrays and a JSON header (no pickled objects).

On CMUdict with 5 % of its words held out (6,297 words; ``asr lang g2p-train``), order 8:
WER 24.9 %, PER 5.97 % without stress digits, 33.7 % / 8.7 % with them (Phonetisaurus
reports about 24.4 % / 5.9 % on its own CMUdict split); training takes about 20 s on 2 cores.

>>> entries = [("cat", "K AE T"), ("bat", "B AE T"), ("tab", "T AE B"), ("act", "AE K T")]
>>> model = G2PModel.train(entries, G2PConfig(order=3))
>>> model.predict("cat")[0].phones
('K', 'AE', 'T')
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from asr.errors import LangError
from asr.fileio import atomic_write
from asr.lang.arpa import BOS, EOS, NgramModel, NgramTable
from asr.lang.g2p_align import AlignConfig, align_entries, chunk_symbols
from asr.lang.lm import NgramConfig, train_ngram
from asr.scoring import align as edit_align

__all__ = [
    "G2PConfig",
    "G2PHypothesis",
    "G2PModel",
    "G2PScore",
    "DEFAULT_BEAM",
    "evaluate_g2p",
    "heldout_split",
]

_FORMAT = "asr-g2p-joint-ngram"
_VERSION = 1
_BATCH_WORDS = 1000
#: Hypotheses kept per word and letter position (20 and 100 give the same CMUdict WER).
DEFAULT_BEAM = 30


@dataclass(frozen=True)
class G2PConfig:
    """How a :class:`G2PModel` is trained.

    ``order``: n-gram order over graphones (Phonetisaurus uses 7-8 on CMUdict).
    ``method``: ``"kneser_ney"`` (interpolated modified KN) or ``"witten_bell"``.
    ``lowercase``: fold words to lower case when training and predicting.
    ``align``: the aligner's chunk sizes and EM iterations.
    """

    order: int = 8
    method: str = "kneser_ney"
    lowercase: bool = True
    align: AlignConfig = field(default_factory=AlignConfig)

    def __post_init__(self) -> None:
        if self.order < 1:
            raise LangError(f"G2P n-gram order must be >= 1, got {self.order}")
        NgramConfig(order=self.order, method=self.method)  # validates the method

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> G2PConfig:
        data = dict(data)
        return cls(**{**data, "align": AlignConfig(**data.get("align", {}))})


@dataclass(frozen=True)
class G2PHypothesis:
    """One predicted pronunciation and its joint log10 probability ``log10 P(word, phones)``."""

    phones: tuple[str, ...]
    log10_prob: float


@dataclass(frozen=True)
class G2PScore:
    """Word and phone error counts on held-out words (a word is right when its best
    prediction equals one of its reference pronunciations; phone errors are the edit distance
    to the closest reference, over that reference's length)."""

    num_words: int
    num_word_errors: int
    num_phone_errors: int
    num_ref_phones: int

    @property
    def wer(self) -> float:
        return self.num_word_errors / max(self.num_words, 1)

    @property
    def per(self) -> float:
        return self.num_phone_errors / max(self.num_ref_phones, 1)


@dataclass(frozen=True, eq=False)
class G2PModel:
    """A trained joint-sequence G2P model.

    ``alphabet``: letters (letter code ``i + 1`` is ``alphabet[i]``); ``phones``: phone
    symbols (code ``i + 1``); ``graphone_keys``: (num_graphones,) int64 chunk keys
    (:func:`asr.lang.g2p_align.chunk_key`); ``lm``: the n-gram over graphones, whose word
    ``str(i)`` is graphone ``i``; ``info``: training statistics (entries, aligned entries).
    """

    alphabet: tuple[str, ...]
    phones: tuple[str, ...]
    graphone_keys: np.ndarray
    lm: NgramModel
    config: G2PConfig
    info: Mapping[str, int] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------
    # Training

    @classmethod
    def train(
        cls, entries: Iterable[tuple[str, str | Sequence[str]]], config: G2PConfig | None = None
    ) -> G2PModel:
        """Train on ``(word, phones)`` pairs (phones a sequence or a space-separated string;
        several pairs per word are several pronunciations)."""
        config = config if config is not None else G2PConfig()
        words, prons = [], []
        for word, pron in entries:
            word = word.lower() if config.lowercase else word
            phones = tuple(pron.split()) if isinstance(pron, str) else tuple(pron)
            if not word or not phones:
                raise LangError(
                    f"G2P training entry {word!r} has an empty spelling or pronunciation"
                )
            if any(ch.isspace() for ch in word):
                raise LangError(f"G2P training word {word!r} contains white space")
            words.append(word)
            prons.append(phones)
        if not words:
            raise LangError("no G2P training entries")
        alphabet = tuple(sorted({ch for word in words for ch in word}))
        phone_set = tuple(sorted({p for pron in prons for p in pron}))
        letter_code = {ch: i + 1 for i, ch in enumerate(alphabet)}
        phone_code = {p: i + 1 for i, p in enumerate(phone_set)}
        letters = [np.array([letter_code[ch] for ch in w], dtype=np.int64) for w in words]
        phones = [np.array([phone_code[p] for p in pron], dtype=np.int64) for pron in prons]
        alignment = align_entries(
            letters, phones, num_letters=len(alphabet), num_phones=len(phone_set),
            config=config.align,
        )  # fmt: skip
        if not alignment.aligned.any():
            raise LangError("no G2P training entry could be aligned")
        fallback = _fallback_chunks(alignment.chunk_logprob, len(alphabet), len(phone_set))
        keys = np.union1d(alignment.keys, fallback)
        token_of_key = np.searchsorted(keys, alignment.keys)
        sentences = [
            [str(t) for t in token_of_key[a:b].tolist()]
            for a, b in zip(
                alignment.offsets[:-1].tolist(), alignment.offsets[1:].tolist(), strict=True
            )
            if b > a
        ]
        lm = train_ngram(
            sentences,
            vocab=[str(i) for i in range(len(keys))],
            config=NgramConfig(order=config.order, method=config.method, unk=None),
        )
        info = {
            "num_entries": len(words),
            "num_aligned": int(alignment.aligned.sum()),
            "num_graphones": len(keys),
            "em_iterations": len(alignment.log_likelihood),
        }
        return cls(
            alphabet=alphabet, phones=phone_set, graphone_keys=keys, lm=lm, config=config,
            info=info,
        )  # fmt: skip

    # ---------------------------------------------------------------------------------------
    # Prediction

    def predict(
        self, word: str, nbest: int = 1, *, beam: int = DEFAULT_BEAM
    ) -> list[G2PHypothesis]:
        """The ``nbest`` most probable pronunciations of ``word``, best first (distinct phone
        sequences; fewer when the search finds fewer)."""
        return self.predict_many([word], nbest=nbest, beam=beam)[0]

    def predict_many(
        self, words: Sequence[str], nbest: int = 1, *, beam: int = DEFAULT_BEAM
    ) -> list[list[G2PHypothesis]]:
        """:meth:`predict` for many words at once (searched together, much faster)."""
        if nbest < 1 or beam < 1:
            raise LangError(f"nbest and beam must be >= 1, got nbest={nbest}, beam={beam}")
        codes = [self._encode(word) for word in words]
        results: list[list[G2PHypothesis]] = []  # stays empty for no words
        for start in range(0, len(codes), _BATCH_WORDS):
            results.extend(self._search(codes[start : start + _BATCH_WORDS], nbest, beam))
        return results

    def in_alphabet(self, word: str) -> bool:
        """Whether :meth:`predict` accepts ``word``: non-empty, and every character (after
        case folding) one the training words had."""
        text = word.lower() if self.config.lowercase else word
        return bool(text) and all(ch in self._letter_code for ch in text)

    def _encode(self, word: str) -> np.ndarray:
        if self.config.lowercase:
            word = word.lower()
        if not word:
            raise LangError("cannot predict the pronunciation of an empty word")
        code = self._letter_code
        unknown = sorted({ch for ch in word if ch not in code})
        if unknown:
            raise LangError(
                f"word {word!r}: character(s) {' '.join(map(repr, unknown))} not in the G2P "
                f"model's alphabet {''.join(self.alphabet)!r}"
            )
        return np.array([code[ch] for ch in word], dtype=np.int64)

    @cached_property
    def _letter_code(self) -> dict[str, int]:
        return {ch: i + 1 for i, ch in enumerate(self.alphabet)}

    @cached_property
    def _tables(self) -> _SearchTables:
        return _SearchTables.build(self)

    def _search(self, codes: list[np.ndarray], nbest: int, beam: int) -> list[list[G2PHypothesis]]:
        t = self._tables
        num_words = len(codes)
        lengths = np.array([len(c) for c in codes], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.concatenate(codes)
        letter_base = len(self.alphabet) + 1
        # chunk_code[pos, L - 1]: letter code of the chunk of L letters starting at flat[pos].
        chunk_code = np.full((len(flat), 2), -1, dtype=np.int64)
        chunk_code[:, 0] = flat
        has_next = np.ones(len(flat), dtype=bool)
        has_next[starts[1:] - 1] = False
        chunk_code[:-1, 1] = np.where(has_next[:-1], flat[:-1] * letter_base + flat[1:], -1)
        parents: list[np.ndarray] = []
        tokens: list[np.ndarray] = []
        num_history = 0
        pools: dict[int, list[tuple[np.ndarray, ...]]] = {}
        start_k, start_row = t.start_state
        pools[0] = [(
            np.arange(num_words), np.zeros(num_words), np.full(num_words, start_k),
            np.full(num_words, start_row), np.full(num_words, -1),
        )]  # fmt: skip
        finals = []
        for pos in range(int(lengths.max()) + 1):
            if pos not in pools:
                continue
            word, score, k, row, hist = (
                np.concatenate(parts) for parts in zip(*pools.pop(pos), strict=True)
            )
            done = lengths[word] == pos
            if done.any():
                logp, _, _ = t.advance(k[done], row[done], np.full(int(done.sum()), t.eos))
                finals.append((word[done], score[done] + logp, hist[done]))
            word, score, k, row, hist = (a[~done] for a in (word, score, k, row, hist))
            keep = _prune(word, score, k, row, beam)
            word, score, k, row, hist = (a[keep] for a in (word, score, k, row, hist))
            for size in (1, 2):
                code = chunk_code[starts[word] + pos, size - 1]
                valid = code >= 0
                counts = np.where(valid, t.chunk_count[np.maximum(code, 0)], 0)
                if not counts.any():
                    continue
                src = np.repeat(np.arange(len(word)), counts)
                offset = np.arange(len(src)) - np.repeat(np.cumsum(counts) - counts, counts)
                token = t.chunk_tokens[t.chunk_start[code[src]] + offset]
                logp, new_k, new_row = t.advance(k[src], row[src], token)
                new_hist = num_history + np.arange(len(src))
                parents.append(hist[src])
                tokens.append(token)
                num_history += len(src)
                pools.setdefault(pos + size, []).append(
                    (word[src], score[src] + logp, new_k, new_row, new_hist)
                )
        return self._nbest(finals, num_words, nbest, parents, tokens)

    def _nbest(self, finals, num_words, nbest, parents, tokens) -> list[list[G2PHypothesis]]:
        if not finals or not parents:  # pragma: no cover - every letter has a graphone
            return [[] for _ in range(num_words)]
        word, score, hist = (np.concatenate(parts) for parts in zip(*finals, strict=True))
        order = np.lexsort((-score, word))
        word, score, hist = word[order], score[order], hist[order]
        rank = np.arange(len(word)) - np.searchsorted(word, word)
        keep = rank < 4 * nbest  # several segmentations may spell the same phones
        word, score, hist = word[keep], score[keep], hist[keep]
        parent_all = np.concatenate(parents)
        token_all = np.concatenate(tokens)
        paths: list[list[int]] = [[] for _ in range(len(hist))]
        cur = hist.copy()
        while (cur >= 0).any():
            alive = np.flatnonzero(cur >= 0)
            for i, tok in zip(alive.tolist(), token_all[cur[alive]].tolist(), strict=True):
                paths[i].append(tok)
            cur[alive] = parent_all[cur[alive]]
        phone_strings = self._tables.token_phones
        results: list[list[G2PHypothesis]] = [[] for _ in range(num_words)]
        seen: list[set] = [set() for _ in range(num_words)]
        for w, s, path in zip(word.tolist(), score.tolist(), paths, strict=True):
            phones = tuple(p for tok in reversed(path) for p in phone_strings[tok])
            if len(results[w]) < nbest and phones not in seen[w]:
                seen[w].add(phones)
                results[w].append(G2PHypothesis(phones=phones, log10_prob=s))
        return results

    # ---------------------------------------------------------------------------------------
    # Files

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one ``.npz`` file (arrays and a JSON header; atomic)."""
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "config": self.config.to_json(),
            "info": dict(self.info),
            "alphabet": list(self.alphabet),
            "phones": list(self.phones),
            "lm_vocab": list(self.lm.vocab),
        }
        arrays = {"header": np.array(json.dumps(header)), "graphone_keys": self.graphone_keys}
        for n, table in enumerate(self.lm.tables, start=1):
            arrays[f"keys{n}"] = table.keys
            arrays[f"logprob{n}"] = table.logprob
            arrays[f"backoff{n}"] = table.backoff
        with atomic_write(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> G2PModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                    raise LangError(
                        f"{path}: not an asr G2P model (format {header.get('format')!r})"
                    )
                config = G2PConfig.from_json(header["config"])
                tables = tuple(
                    NgramTable(
                        keys=data[f"keys{n}"],
                        logprob=data[f"logprob{n}"],
                        backoff=data[f"backoff{n}"],
                    )  # fmt: skip
                    for n in range(1, config.order + 1)
                )
                keys = data["graphone_keys"]
        except FileNotFoundError:
            raise LangError(f"{path}: G2P model not found") from None
        except (OSError, ValueError, KeyError) as err:
            raise LangError(f"{path}: cannot read G2P model ({err})") from None
        lm = NgramModel(vocab=tuple(header["lm_vocab"]), tables=tables)
        return cls(
            alphabet=tuple(header["alphabet"]), phones=tuple(header["phones"]),
            graphone_keys=keys, lm=lm, config=config, info=header.get("info", {}),
        )  # fmt: skip


def _fallback_chunks(chunk_logprob: np.ndarray, num_letters: int, num_phones: int) -> np.ndarray:
    """For every letter, its most probable single-letter chunk (so that any spelling over
    the alphabet can be segmented)."""
    phone_base = num_phones + 1
    keys = []
    for code in range(1, num_letters + 1):
        block = chunk_logprob[code * phone_base * phone_base : (code + 1) * phone_base * phone_base]
        best = int(np.argmax(block))
        if np.isfinite(block[best]):
            keys.append(code * phone_base * phone_base + best)
        else:  # the letter occurs only in entries the aligner could not segment: silent
            keys.append(code * phone_base * phone_base)
    return np.array(keys, dtype=np.int64)


def _prune(word, score, k, row, beam) -> np.ndarray:
    """Indices of the hypotheses to keep: one per (word, n-gram state) (the best), then the
    ``beam`` best of each word."""
    order = np.lexsort((-score, row, k, word))
    w, kk, rr = word[order], k[order], row[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (w[1:] != w[:-1]) | (kk[1:] != kk[:-1]) | (rr[1:] != rr[:-1])
    order = order[first]
    order = order[np.lexsort((-score[order], word[order]))]
    w = word[order]
    rank = np.arange(len(order)) - np.searchsorted(w, w)
    return order[rank < beam]


@dataclass(frozen=True, eq=False)
class _SearchTables:
    """What the search reads: graphones grouped by their letters, n-gram suffix links."""

    lm: NgramModel
    chunk_start: np.ndarray  # (num_letter_codes,) first index into chunk_tokens
    chunk_count: np.ndarray  # (num_letter_codes,) graphones with these letters
    chunk_tokens: np.ndarray  # n-gram word ids, grouped by letter code
    token_phones: tuple[tuple[str, ...], ...]  # phones of each n-gram word id
    # suffix[n - 1][r]: the row in order n - 1 of n-gram r of order n without its first word
    suffix: tuple[np.ndarray, ...]
    unigram_logprob: np.ndarray
    start_state: tuple[int, int]
    eos: int

    @classmethod
    def build(cls, model: G2PModel) -> _SearchTables:
        lm, vocab_size = model.lm, len(model.lm.vocab)
        num_letters, num_phones = len(model.alphabet), len(model.phones)
        token_phones: list[tuple[str, ...]] = [()] * vocab_size
        letter_codes = np.full(vocab_size, -1, dtype=np.int64)
        phone_base = num_phones + 1
        for word_id, word in enumerate(lm.vocab):
            if word in (BOS, EOS):
                continue
            key = int(model.graphone_keys[int(word)])
            _, phone_codes = chunk_symbols(key, num_letters, num_phones)
            token_phones[word_id] = tuple(model.phones[c - 1] for c in phone_codes)
            letter_codes[word_id] = key // (phone_base * phone_base)
        graphones = np.flatnonzero(letter_codes >= 0)
        order = graphones[np.argsort(letter_codes[graphones], kind="stable")]
        num_codes = (num_letters + 1) ** 2
        count = np.bincount(letter_codes[order], minlength=num_codes)
        suffix = [np.zeros(0, dtype=np.int64)]
        for n in range(2, lm.order + 1):
            keys = lm.tables[n - 1].keys
            words = keys % vocab_size
            if n == 2:
                rows = words
            else:
                rows = lm.tables[n - 2].lookup(suffix[n - 2][keys // vocab_size], words, vocab_size)
                if (rows < 0).any():
                    raise LangError(f"G2P n-gram: an {n}-gram's suffix is not listed")
            suffix.append(rows)
        bos = lm.word_to_id[BOS]
        return cls(
            lm=lm, chunk_start=np.cumsum(count) - count, chunk_count=count, chunk_tokens=order,
            token_phones=tuple(token_phones), suffix=tuple(suffix),
            unigram_logprob=lm.tables[0].logprob,
            start_state=(1, bos) if lm.order > 1 else (0, 0), eos=lm.word_to_id[EOS],
        )  # fmt: skip

    def advance(self, k: np.ndarray, row: np.ndarray, token: np.ndarray):
        """Score ``token`` after the n-gram state ``(k, row)`` (the history's longest listed
        suffix: ``k`` words, row ``row`` of the order-``k`` table; ``k = 0`` is the empty
        history). Returns ``(log10 prob, new k, new row)``."""
        lm, order, vocab_size = self.lm, self.lm.order, len(self.lm.vocab)
        k, row = k.copy(), row.copy()
        logp = np.zeros(len(token))
        new_k = np.zeros_like(k)
        new_row = np.zeros_like(row)
        for level in range(order - 1, -1, -1):
            sel = np.flatnonzero(k == level)
            if not sel.size:
                continue
            if level == 0:
                hit_rows, hit = token[sel], sel
            else:
                rows = lm.tables[level].lookup(row[sel], token[sel], vocab_size)
                found = rows >= 0
                hit, hit_rows = sel[found], rows[found]
                miss = sel[~found]
                logp[miss] += lm.tables[level - 1].backoff[row[miss]]
                row[miss] = self.suffix[level - 1][row[miss]] if level > 1 else 0
                k[miss] = level - 1
            logp[hit] += lm.tables[level].logprob[hit_rows]
            k[hit] = -1  # done
            if level + 1 < order:
                new_k[hit], new_row[hit] = level + 1, hit_rows
            elif level == 0:  # a unigram model has one state
                new_k[hit], new_row[hit] = 0, 0
            else:
                new_k[hit], new_row[hit] = level, self.suffix[level][hit_rows]
        return logp, new_k, new_row


# ---------------------------------------------------------------------------------------------
# Evaluation


def heldout_split(words: Iterable[str], fraction: float) -> set[str]:
    """A deterministic ``fraction`` of ``words`` (by SHA-256 of the word, so the split does
    not depend on the dictionary's order or size)."""
    if not 0.0 <= fraction < 1.0:
        raise LangError(f"held-out fraction must be in [0, 1), got {fraction}")
    threshold = int(fraction * 2**64)
    return {
        w for w in words
        if int.from_bytes(hashlib.sha256(w.encode("utf-8")).digest()[:8], "big") < threshold
    }  # fmt: skip


def evaluate_g2p(
    model: G2PModel, references: Mapping[str, Sequence[Sequence[str]]], *, beam: int = DEFAULT_BEAM
) -> G2PScore:
    """Word and phone error rates of the best prediction against each word's references
    (a word with a character outside the model's alphabet counts as predicted empty)."""
    words = sorted(references)
    known = [w for w in words if model.in_alphabet(w)]
    best = dict(zip(known, model.predict_many(known, nbest=1, beam=beam), strict=True))
    predictions = [best.get(w, []) for w in words]
    word_errors = phone_errors = ref_phones = 0
    for word, hyps in zip(words, predictions, strict=True):
        hyp = hyps[0].phones if hyps else ()
        best = min(
            ((edit_align(ref, hyp).errors, len(ref)) for ref in references[word]),
            key=lambda pair: (pair[0], -pair[1]),
        )
        word_errors += best[0] > 0
        phone_errors += best[0]
        ref_phones += best[1]
    return G2PScore(
        num_words=len(words),
        num_word_errors=word_errors,
        num_phone_errors=phone_errors,
        num_ref_phones=ref_phones,
    )
