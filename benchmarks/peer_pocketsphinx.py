"""PocketSphinx as a peer: its WER and speed on our dev set, next to our best model's WER.

PocketSphinx (the ``pocketsphinx`` PyPI package, pinned in the ``dev`` extra) ships a generic
US-English acoustic model (``en-us``, semi-continuous, trained on far more speech than any of
our corpora), a generic LM (``en-us.lm.bin``) and CMUdict (``cmudict-en-us.dict``). It decodes
the utterances of a Kaldi data dir (read with :func:`asr.data.read_data_dir`; audio with
:func:`asr.audio.read_audio`, resampled to 16 kHz and written as 16-bit mono PCM) twice:

(a) ``generic_lm``: its own generic LM and dictionary, as shipped;
(b) ``same_text_lm``: a 3-gram interpolated Kneser-Ney LM trained by our own
    :func:`asr.lang.lm.train_ngram` on the same training text as our recipes' LM (the
    vocabulary is the lang dir's ``words.txt`` less ``<UNK>``, as recipe stage 3 does), written
    as ARPA, with a dictionary of that LM's words: CMUdict's pronunciations where CMUdict has
    the word, else our lang dir's lexicon with its phones mapped to PocketSphinx's set (see
    :func:`map_phone`). Words left without a usable pronunciation are counted and listed
    (PocketSphinx then never outputs them).

Both are scored against the data dir's ``text`` with :func:`asr.scoring.score`, as our recipes
score (whitespace-separated words, the references as they are). PocketSphinx's hypotheses
leave out its fillers (``<s>``, ``<sil>``, ``[NOISE]``) and are upper-cased (CMUdict's words are
lower-case, our transcripts upper-case). ``jiwer`` scores the same pairs as a check.
``ours_best_wer`` is the lowest WER among ``EXP/*/decode_<set>*/wer`` (``<set>``: the data
dir's name, e.g. ``dev``), read as ``asr results`` reads them. The RTF is PocketSphinx's decoding
time (feature extraction and search, not audio reading or model loading) over the audio's
duration, single-threaded.

    .venv/bin/python benchmarks/peer_pocketsphinx.py --data-dir data/an4/dev --json
    .venv/bin/python benchmarks/peer_pocketsphinx.py --data-dir data/an4/dev \\
        --exp-dir exp/an4 --lang-dir data/an4/lang --train-text data/an4/train/text
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.audio import read_audio
from asr.cli.results import collect
from asr.data import DataDir, read_data_dir
from asr.errors import AsrError
from asr.lang.lexicon import Lexicon, read_lexicon
from asr.lang.lm import (
    NgramConfig,
    NgramModel,
    read_text_sentences,
    read_vocab,
    train_ngram,
    write_arpa,
)
from asr.scoring import score

SAMPLING_RATE = 16000  # what the en-us model was trained on
LM_CONFIG = NgramConfig(order=3, method="kneser_ney")  # recipe stage 3's LM
POCKETSPHINX_PIN = "pocketsphinx==5.1.1"
#: LM symbols that are not words to pronounce: sentence markers, the unknown word (no
#: pronunciation; PocketSphinx skips LM words its dictionary lacks) and, by :func:`is_filler`,
#: fillers such as AN4's ``<sil>`` (PocketSphinx's noise dictionary has its own).
NON_WORDS = frozenset({"<s>", "</s>", "<UNK>", "<unk>"})
#: ARPAbet phones outside CMUdict's 39 that have an obvious CMUdict counterpart.
PHONE_ALIASES: Mapping[str, str] = {"AX": "AH", "AXR": "ER", "IX": "IH", "UX": "UW"}
_POSITION = re.compile(r"^(.+)_[BEIS]$")  # Kaldi's word-position-dependent phones (AH_B)
_STRESS = re.compile(r"^([A-Z]+)[0-2]$")  # CMUdict stress digits (AH0)


def is_filler(word: str) -> bool:
    """``<sil>``, ``[NOISE]``, ``++NOISE++``: a non-speech token, not a word."""
    return (word[0] in "<[" and word[-1] in ">]") or (word.startswith("++") and word.endswith("++"))


class BenchmarkError(AsrError):
    """A precondition of the benchmark does not hold (missing input, missing package)."""


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Inputs:
    """Where everything comes from; ``set_name`` selects ``EXP/*/decode_<set_name>*/wer``."""

    data_dir: Path
    exp_dir: Path
    lang_dir: Path
    train_text: Path
    set_name: str

    @classmethod
    def from_data_dir(
        cls,
        data_dir: Path,
        *,
        exp_dir: Path | None = None,
        lang_dir: Path | None = None,
        train_text: Path | None = None,
    ) -> Inputs:
        """Defaults from the recipes' layout: ``data/<corpus>/<set>`` gives ``exp/<corpus>``,
        ``data/<corpus>/lang`` and ``data/<corpus>/train/text``."""
        corpus_dir = data_dir.resolve().parent
        if exp_dir is None:
            exp_dir = corpus_dir.parent.parent / "exp" / corpus_dir.name
        return cls(
            data_dir=data_dir,
            exp_dir=exp_dir,
            lang_dir=lang_dir if lang_dir is not None else corpus_dir / "lang",
            train_text=train_text if train_text is not None else corpus_dir / "train" / "text",
            set_name=data_dir.resolve().name,
        )

    def check(self) -> None:
        """Fail before any decoding when an input is missing (names the recipe stage)."""
        if not self.data_dir.is_dir():
            raise BenchmarkError(
                f"{self.data_dir}: data dir not found (run the recipe's stage 0, "
                "e.g. recipes/an4/run.sh --stop-stage 0)"
            )
        if not self.train_text.is_file():
            raise BenchmarkError(
                f"{self.train_text}: training text not found (run the recipe's stage 0, "
                "or pass --train-text)"
            )
        if not (self.lang_dir / "lexicon.txt").is_file():
            raise BenchmarkError(
                f"{self.lang_dir}/lexicon.txt not found (run the recipe's stage 2, "
                "or pass --lang-dir)"
            )


def load_utterances(data_dir: Path, *, limit: int | None = None) -> DataDir:
    """The data dir (validated by our reader), its first ``limit`` utterances when given."""
    data = read_data_dir(data_dir)
    if limit is not None:
        data = data.subset(data.utt_ids[:limit])
    return data


def read_pcm16(path: str) -> tuple[bytes, float]:
    """``(16 kHz 16-bit little-endian mono PCM, duration in seconds)`` of an audio file;
    16-bit sources at 16 kHz come back as the very integers stored."""
    samples, _ = read_audio(path, sampling_rate=SAMPLING_RATE)
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    return pcm.tobytes(), pcm.shape[0] / SAMPLING_RATE


# ---------------------------------------------------------------------------------------------
# ours


def ours_best(exp_dir: Path, set_name: str) -> dict:
    """Our lowest WER on ``set_name`` among ``exp_dir/*/decode_<set_name>*/wer``:
    ``{"model", "wer", "errors", "words", "decode", "all"}`` (``all``: model -> WER)."""
    if not exp_dir.is_dir():
        raise BenchmarkError(
            f"{exp_dir}: experiment dir not found (run the recipe through stage 6, the first "
            "decoding, e.g. recipes/an4/run.sh --stop-stage 6; or pass --exp-dir)"
        )
    cells = []
    for model, by_set in collect(exp_dir).items():
        for decode_set, cell in by_set.items():
            if decode_set.startswith(set_name):
                cells.append((cell["wer"], model, decode_set, cell))
    if not cells:
        raise BenchmarkError(
            f"{exp_dir}: no */decode_{set_name}*/wer files (run the recipe through stage 6, the "
            "first decoding, e.g. recipes/an4/run.sh --stop-stage 6)"
        )
    wer, model, decode_set, cell = min(cells, key=lambda c: c[0])
    return {
        "model": model,
        "wer": wer,
        "errors": cell["errors"],
        "words": cell["words"],
        "decode": f"decode_{decode_set}",
        "all": {f"{m}/decode_{s}": w for w, m, s, _ in sorted(cells, key=lambda c: c[1:3])},
    }


# ---------------------------------------------------------------------------------------------
# The same-text LM and its dictionary


def train_same_text_lm(train_text: Path, lang_dir: Path, out_arpa: Path) -> NgramModel:
    """Recipe stage 3's LM (``asr lm train TEXT --order 3 --vocab lang/words.txt``) as ARPA."""
    words_txt = lang_dir / "words.txt"
    vocab = None
    if words_txt.is_file():
        vocab = [word for word in read_vocab(words_txt) if word != LM_CONFIG.unk]
    model = train_ngram(read_text_sentences(train_text), vocab=vocab, config=LM_CONFIG)
    write_arpa(model, out_arpa)
    return model


def map_phone(phone: str, phone_set: frozenset[str]) -> str | None:
    """Our lexicon's phone in PocketSphinx's set, or ``None`` when it has no counterpart.

    Upper-cased, a Kaldi word-position suffix (``AH_B``) and a stress digit (``AH0``) removed,
    then :data:`PHONE_ALIASES` (``AX`` -> ``AH``, ``AXR`` -> ``ER``, ``IX`` -> ``IH``,
    ``UX`` -> ``UW``). Anything else outside ``phone_set`` (silence and noise phones ``SIL``,
    ``SPN``, ``+NOISE+``, foreign phones) is dropped.

    >>> map_phone("ah0_B", frozenset({"AH"}))
    'AH'
    >>> map_phone("SPN", frozenset({"AH"})) is None
    True
    """
    name = phone.upper()
    match = _POSITION.match(name)
    if match:
        name = match[1]
    match = _STRESS.match(name)
    if match:
        name = match[1]
    name = PHONE_ALIASES.get(name, name)
    return name if name in phone_set else None


@dataclass(frozen=True)
class SphinxDictionary:
    """A PocketSphinx dictionary for a word list and how each word got its pronunciations.

    ``prons``: word -> pronunciations (PocketSphinx phones); ``from_cmudict``,
    ``from_lexicon``: the words each source gave; ``missing``: words with no usable
    pronunciation (in neither, or only with phones that do not map); ``skipped``: the
    non-words left out (:data:`NON_WORDS`, fillers); ``mapped_phones``: our
    phone -> PocketSphinx phone, for every phone the lexicon entries used changed in mapping;
    ``dropped_phones``: our phones with no counterpart -> how many pronunciations they cost.
    """

    prons: Mapping[str, tuple[tuple[str, ...], ...]]
    from_cmudict: tuple[str, ...]
    from_lexicon: tuple[str, ...]
    missing: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    mapped_phones: Mapping[str, str] = field(default_factory=dict)
    dropped_phones: Mapping[str, int] = field(default_factory=dict)

    def to_text(self) -> str:
        """The dictionary file: ``WORD PH PH ...``, variants ``WORD(2)`` (PocketSphinx's)."""
        lines = []
        for word in sorted(self.prons):
            for index, pron in enumerate(self.prons[word], start=1):
                head = word if index == 1 else f"{word}({index})"
                lines.append(f"{head} {' '.join(pron)}\n")
        return "".join(lines)

    def summary(self) -> dict:
        return {
            "words": len(self.prons),
            "from_cmudict": len(self.from_cmudict),
            "from_lexicon": len(self.from_lexicon),
            "from_lexicon_words": list(self.from_lexicon[:20]),
            "without_pronunciation": len(self.missing),
            "without_pronunciation_words": list(self.missing[:20]),
            "skipped_non_words": list(self.skipped),
            "mapped_phones": dict(self.mapped_phones),
            "dropped_phones": dict(self.dropped_phones),
        }


def build_dictionary(
    words: Iterable[str], *, cmudict: Lexicon, lexicon: Lexicon
) -> SphinxDictionary:
    """Pronunciations of ``words`` (an LM's vocabulary; :data:`NON_WORDS` and fillers are
    skipped).

    ``cmudict``: PocketSphinx's dictionary read upper-cased (its phones are PocketSphinx's set);
    a word it has keeps all its CMUdict variants. Other words take our ``lexicon``'s
    pronunciations through :func:`map_phone`; a pronunciation with a phone that does not map
    is dropped whole (a partial one would be a different word).
    """
    phone_set = frozenset(cmudict.phones)
    prons: dict[str, tuple[tuple[str, ...], ...]] = {}
    from_cmudict, from_lexicon, missing, skipped = [], [], [], []
    mapped: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    for word in sorted(set(words)):
        if word in NON_WORDS or is_filler(word):
            skipped.append(word)
            continue
        known = cmudict.prons(word)
        if known:
            prons[word] = tuple(pron for pron, _ in known)
            from_cmudict.append(word)
            continue
        usable = []
        for pron, _ in lexicon.prons(word):
            converted = [map_phone(phone, phone_set) for phone in pron]
            if any(phone is None for phone in converted):
                dropped.update(p for p, c in zip(pron, converted, strict=True) if c is None)
                continue
            mapped.update((p, c) for p, c in zip(pron, converted, strict=True) if p != c)
            if tuple(converted) not in usable:
                usable.append(tuple(converted))
        if usable:
            prons[word] = tuple(usable)
            from_lexicon.append(word)
        else:
            missing.append(word)
    return SphinxDictionary(
        prons=prons,
        from_cmudict=tuple(from_cmudict),
        from_lexicon=tuple(from_lexicon),
        missing=tuple(missing),
        skipped=tuple(skipped),
        mapped_phones=dict(sorted(mapped.items())),
        dropped_phones=dict(sorted(dropped.items())),
    )


# ---------------------------------------------------------------------------------------------
# PocketSphinx


def import_pocketsphinx():
    """The ``pocketsphinx`` module, or a one-line error saying how to install it."""
    try:
        import pocketsphinx
    except ImportError:
        raise BenchmarkError(
            f"pocketsphinx is not installed: .venv/bin/pip install {POCKETSPHINX_PIN} "
            "(or .venv/bin/pip install -e '.[dev]')"
        ) from None
    return pocketsphinx


def model_paths() -> dict[str, Path]:
    """The shipped model: ``hmm`` (en-us), ``lm`` (en-us.lm.bin), ``dict`` (CMUdict)."""
    ps = import_pocketsphinx()
    return {
        "hmm": Path(ps.get_model_path("en-us/en-us")),
        "lm": Path(ps.get_model_path("en-us/en-us.lm.bin")),
        "dict": Path(ps.get_model_path("en-us/cmudict-en-us.dict")),
    }


def read_cmudict(path: Path) -> Lexicon:
    """PocketSphinx's CMUdict, words upper-cased (to match our transcripts)."""
    return read_lexicon(path, uppercase=True, strip_stress=False)


def normalise_hyp(text: str) -> str:
    """PocketSphinx's hypothesis as our transcripts spell words: upper-case, fillers
    (``<sil>``, ``[NOISE]``; normally already absent from its hypothesis string) dropped."""
    return " ".join(w.upper() for w in text.split() if not is_filler(w))


@dataclass(frozen=True)
class DecodeRun:
    """One PocketSphinx pass: hypotheses (normalised), decoding and loading seconds."""

    hyps: Mapping[str, str]
    decode_seconds: float
    load_seconds: float


def decode_pocketsphinx(
    audio: Mapping[str, bytes],
    *,
    hmm: Path,
    lm: Path,
    dictionary: Path,
    progress: Callable[[int], object] | None = None,
) -> DecodeRun:
    """Decode each utterance's 16 kHz PCM (whole utterance at once, batch CMN)."""
    ps = import_pocketsphinx()
    start = time.perf_counter()
    decoder = ps.Decoder(hmm=str(hmm), lm=str(lm), dict=str(dictionary), loglevel="FATAL")
    load_seconds = time.perf_counter() - start
    hyps = {}
    decode_seconds = 0.0
    for utt_id, pcm in audio.items():
        start = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        decode_seconds += time.perf_counter() - start
        hyps[utt_id] = normalise_hyp(hyp.hypstr if hyp is not None else "")
        if progress is not None:
            progress(1)
    return DecodeRun(hyps=hyps, decode_seconds=decode_seconds, load_seconds=load_seconds)


def score_run(refs: Mapping[str, str], hyps: Mapping[str, str]) -> dict:
    """Our WER (and its counts) and jiwer's on the same pairs (jiwer refuses empty references:
    utterances with one are left out of its figure and of the count compared with ours)."""
    import jiwer

    result = score(refs, hyps)
    out = {
        "wer": result.wer,
        "errors": result.errors,
        "words": result.num_ref_tokens,
        "ins": result.insertions,
        "del": result.deletions,
        "sub": result.substitutions,
        "ser": result.ser,
    }
    kept = [u for u in refs if refs[u].split()]
    try:
        words = jiwer.process_words([refs[u] for u in kept], [hyps.get(u, "") for u in kept])
        jiwer_errors = words.substitutions + words.deletions + words.insertions
        ours_kept = (
            result
            if len(kept) == len(refs)
            else score({u: refs[u] for u in kept}, {u: hyps[u] for u in kept if u in hyps})
        )
        out["jiwer_wer"] = 100.0 * words.wer
        out["jiwer_agrees"] = jiwer_errors == ours_kept.errors
    except ValueError as err:  # e.g. every reference empty
        out["jiwer_wer"] = None
        out["jiwer_agrees"] = None
        out["jiwer_error"] = str(err)
    return out


# ---------------------------------------------------------------------------------------------
# The benchmark


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="utt", file=sys.stderr, leave=False)


def run_benchmark(
    inputs: Inputs,
    *,
    limit: int | None = None,
    out_dir: Path | None = None,
    show_progress: bool = True,
) -> dict:
    """Decode the data dir with both LMs and score; returns the JSON object."""
    inputs.check()
    ours = ours_best(inputs.exp_dir, inputs.set_name)
    paths = model_paths()
    data = load_utterances(inputs.data_dir, limit=limit)
    refs = {u: data.text[u] for u in data.utt_ids}

    audio: dict[str, bytes] = {}
    audio_seconds = 0.0
    bar = _progress_bar(len(data), "reading audio") if show_progress else None
    for utt_id in data.utt_ids:
        audio[utt_id], seconds = read_pcm16(data.wav_scp[utt_id])
        audio_seconds += seconds
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    with tempfile.TemporaryDirectory(prefix="peer_pocketsphinx_") as tmp:
        work = out_dir if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        arpa = work / "same_text_lm.arpa"
        lm = train_same_text_lm(inputs.train_text, inputs.lang_dir, arpa)
        recipe_lm = inputs.lang_dir / "lm.arpa"  # recipe stage 3's: ours should be the same
        same_as_recipe = (
            recipe_lm.read_bytes() == arpa.read_bytes() if recipe_lm.is_file() else None
        )
        lexicon = read_lexicon(inputs.lang_dir / "lexicon.txt", strip_stress=False)
        sphinx_dict = build_dictionary(
            lm.vocab, cmudict=read_cmudict(paths["dict"]), lexicon=lexicon
        )
        dict_path = work / "same_text_lm.dict"
        dict_path.write_text(sphinx_dict.to_text(), encoding="utf-8")
        if sphinx_dict.missing:
            shown = " ".join(sphinx_dict.missing[:10])
            more = " ..." if len(sphinx_dict.missing) > 10 else ""
            print(
                f"peer_pocketsphinx: {len(sphinx_dict.missing)} LM word(s) have no usable "
                f"pronunciation and cannot be recognised: {shown}{more}",
                file=sys.stderr,
            )
        runs = {}
        for name, lm_path, dictionary in (
            ("generic_lm", paths["lm"], paths["dict"]),
            ("same_text_lm", arpa, dict_path),
        ):
            bar = _progress_bar(len(audio), f"pocketsphinx {name}") if show_progress else None
            run = decode_pocketsphinx(
                audio,
                hmm=paths["hmm"],
                lm=lm_path,
                dictionary=dictionary,
                progress=bar.update if bar is not None else None,
            )
            if bar is not None:
                bar.close()
            runs[name] = (run, score_run(refs, run.hyps))
            if out_dir is not None:
                (work / f"hyp_{name}.txt").write_text(
                    "".join(f"{u} {run.hyps[u]}".rstrip() + "\n" for u in data.utt_ids),
                    encoding="utf-8",
                )

    num_ref_words = sum(len(refs[u].split()) for u in refs)
    result = {
        "data_dir": str(inputs.data_dir),
        "num_utterances": len(data),
        "num_ref_words": num_ref_words,
        "audio_seconds": round(audio_seconds, 3),
        "ours_best_wer": ours["wer"],
        "ours_best_model": ours["model"],
        "ours_best_decode": str(inputs.exp_dir / ours["model"] / ours["decode"]),
        "ours_best_num_words": ours["words"],
        "ours_same_words_as_data_dir": ours["words"] == num_ref_words,
        "ours_wers": ours["all"],
        "pocketsphinx_version": importlib.metadata.version("pocketsphinx"),
        "pocketsphinx_model": "en-us (generic US English, shipped with the package)",
    }
    for name, (run, scored) in runs.items():
        result[f"pocketsphinx_wer_{name}"] = scored["wer"]
        result[f"pocketsphinx_rtf_{name}"] = (
            run.decode_seconds / audio_seconds if audio_seconds > 0 else None
        )
        result[f"pocketsphinx_load_seconds_{name}"] = round(run.load_seconds, 3)
        result[f"pocketsphinx_score_{name}"] = scored
    result["same_text_lm"] = {
        "train_text": str(inputs.train_text),
        "order": LM_CONFIG.order,
        "method": LM_CONFIG.method,
        "num_ngrams": list(lm.num_ngrams),
        "vocabulary": len(lm.vocab),
        "recipe_lm": str(recipe_lm) if recipe_lm.is_file() else None,
        "equals_recipe_lm": same_as_recipe,
    }
    result["same_text_lm_dictionary"] = sphinx_dict.summary()
    result["jiwer_agrees"] = all(s["jiwer_agrees"] is not False for _, s in runs.values())
    if not result["jiwer_agrees"]:
        print("peer_pocketsphinx: WARNING: our scorer and jiwer disagree", file=sys.stderr)
    return result


def format_table(result: dict) -> str:
    """The readable summary printed without ``--json``."""
    rows = [("system", "%WER", "RTF")]
    rows.append((f"ours: {result['ours_best_model']}", f"{result['ours_best_wer']:.2f}", ""))
    for name, label in (
        ("generic_lm", "generic LM + CMUdict"),
        ("same_text_lm", "same-text 3-gram"),
    ):
        rtf = result[f"pocketsphinx_rtf_{name}"]
        rows.append(
            (
                f"pocketsphinx {result['pocketsphinx_version']}: {label}",
                f"{result[f'pocketsphinx_wer_{name}']:.2f}",
                f"{rtf:.3f}" if rtf is not None else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{result['data_dir']}: {result['num_utterances']} utterances, "
        f"{result['num_ref_words']} words, {result['audio_seconds']:.1f} s of audio"
    ]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    d = result["same_text_lm_dictionary"]
    lines.append(
        f"same-text LM dictionary: {d['words']} words ({d['from_cmudict']} from CMUdict, "
        f"{d['from_lexicon']} from our lexicon), {d['without_pronunciation']} without a usable "
        "pronunciation"
    )
    if not result["ours_same_words_as_data_dir"]:
        lines.append(
            f"note: our decode scored {result['ours_best_num_words']} words, the data dir has "
            f"{result['num_ref_words']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="Kaldi data dir to decode")
    parser.add_argument("--exp-dir", type=Path, help="default: exp/<corpus> of the data dir")
    parser.add_argument("--lang-dir", type=Path, help="default: data/<corpus>/lang")
    parser.add_argument("--train-text", type=Path, help="default: data/<corpus>/train/text")
    parser.add_argument("--limit", type=int, help="only the first N utterances (a quick look)")
    parser.add_argument("--out-dir", type=Path, help="keep the LM, dictionary and hypotheses here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    inputs = Inputs.from_data_dir(
        args.data_dir, exp_dir=args.exp_dir, lang_dir=args.lang_dir, train_text=args.train_text
    )
    try:
        result = run_benchmark(
            inputs, limit=args.limit, out_dir=args.out_dir, show_progress=not args.no_progress
        )
    except AsrError as err:
        print(f"peer_pocketsphinx: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
