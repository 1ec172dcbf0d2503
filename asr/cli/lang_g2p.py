"""``asr lang g2p-train | g2p | complete-lexicon | vocab``: pronunciations for words no
dictionary has, and a vocabulary chosen from training text and a frequency list.

Registered by :mod:`asr.cli.lang` under ``asr lang``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from asr.cli.common import default_corpora_dir

_G2P_TRAIN_EPILOG = """The held-out words (a fixed SHA-256 rule: the same words for the same fraction) are left
out of training; the saved model is the one the printed figures measure.

examples:
  asr lang g2p-train --out exp/g2p/cmudict.g2p.npz
  asr lang g2p-train --cmudict ../shared/data/cmudict/cmudict.dict --out g2p.npz --heldout-fraction 0.05
  asr lang g2p-train --cmudict cmudict.dict --keep-stress --order 7 --out g2p_stress.npz
"""

_G2P_EPILOG = """examples:
  asr lang g2p --model g2p.npz speechocean hello
  asr lang g2p --model g2p.npz --words oov_words.txt --nbest 2
"""

_COMPLETE_EPILOG = """Every word of --words gets a pronunciation: the dictionaries' (all variants) when they have
it, else the G2P model's, with its phones renamed to the dictionaries' phone set (stress digits
dropped when the dictionaries have none). The JSON report lists the words that came from G2P.

examples:
  asr lang complete-lexicon --words words.list --dict lexicon.txt --dict cmudict.dict --uppercase --g2p g2p.npz --out dict/lexicon.txt
"""

_VOCAB_EPILOG = """The vocabulary is every word of the training transcripts plus the most frequent words of the
frequency list (count<TAB>WORD lines) until --size words. Never build it from a lexicon that
covers the test sentences.

examples:
  asr lang vocab --train-text data/speechocean762/train/text --size 20000 --out data/speechocean762/words.list
  asr lang vocab --train-text train/text --freq-list word_counts.tsv --size 5000 --dev dev/text --out words.list
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the G2P and vocabulary subcommands to ``asr lang``."""
    corpora = default_corpora_dir()
    train = sub.add_parser(
        "g2p-train",
        help="train a joint-sequence G2P model on CMUdict; print held-out WER/PER (JSON)",
        description="Align letters to phones (EM), train a graphone n-gram, measure word and "
        "phone error rates on held-out dictionary words.",
        epilog=_G2P_TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--cmudict",
        type=Path,
        default=corpora / "cmudict" / "cmudict.dict",
        metavar="PATH",
        help="pronunciation dictionary (CMUdict format, or any 'WORD PH PH ...' lexicon; "
        "default $ASR_CORPORA or ../shared/data: cmudict/cmudict.dict)",
    )
    train.add_argument(
        "--out", type=Path, required=True, metavar="MODEL", help="model file to write (.npz)"
    )
    train.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.05,
        metavar="F",
        help="fraction of words held out for the WER/PER figures (default 0.05; 0: none)",
    )
    train.add_argument(
        "--order", type=int, default=8, metavar="N", help="graphone n-gram order (default 8)"
    )
    train.add_argument(
        "--method",
        choices=("kn", "wb"),
        default="kn",
        help="n-gram smoothing: kn interpolated modified Kneser-Ney (default), wb Witten-Bell",
    )
    train.add_argument(
        "--keep-stress", action="store_true", help="keep stress digits on phones (AH0, AH1)"
    )
    train.set_defaults(func=run_g2p_train)

    g2p = sub.add_parser(
        "g2p",
        help="pronounce words with a G2P model: WORD<TAB>PHONES lines",
        description="Print WORD<TAB>PH PH ... for each word (--nbest lines per word).",
        epilog=_G2P_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g2p.add_argument("words", nargs="*", metavar="WORD", help="words to pronounce")
    g2p.add_argument("--model", type=Path, required=True, help="G2P model (asr lang g2p-train)")
    g2p.add_argument("--words", dest="words_file", type=Path, default=None, metavar="FILE",
                     help="a file of words, one per line (first field)")  # fmt: skip
    g2p.add_argument(
        "--nbest", type=int, default=1, metavar="N", help="pronunciations per word (default 1)"
    )
    g2p.set_defaults(func=run_g2p)

    complete = sub.add_parser(
        "complete-lexicon",
        help="lexicon for a word list: dictionary pronunciations, else G2P (JSON report)",
        description="Write a Kaldi lexicon.txt with a pronunciation for every word of a list.",
        epilog=_COMPLETE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    complete.add_argument("--words", type=Path, required=True, metavar="VOCAB_OR_TEXT",
                          help="the words (a word list, or a Kaldi text file)")  # fmt: skip
    complete.add_argument("--dict", dest="dicts", type=Path, action="append", required=True,
                          metavar="DICT", help="a pronunciation dictionary; repeat to merge "
                          "several (earlier ones first)")  # fmt: skip
    complete.add_argument(
        "--uppercase", action="store_true", help="upper-case dictionary words (CMUdict)"
    )
    complete.add_argument("--keep-stress", action="store_true",
                          help="keep stress digits on dictionary phones (AH0, AH1)")  # fmt: skip
    complete.add_argument("--g2p", type=Path, required=True, metavar="MODEL", help="G2P model")
    complete.add_argument("--nbest", type=int, default=1, metavar="N",
                          help="G2P pronunciations per unknown word (default 1)")  # fmt: skip
    complete.add_argument("--out", type=Path, required=True, help="lexicon.txt to write")
    complete.set_defaults(func=run_complete_lexicon)

    vocab = sub.add_parser(
        "vocab",
        help="vocabulary: training words + most frequent words of a frequency list (JSON)",
        description="Choose a recognition vocabulary and report its dev OOV rate.",
        epilog=_VOCAB_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    vocab.add_argument("--train-text", type=Path, required=True, metavar="TEXT",
                       help="Kaldi text of the training transcripts (utt_id w1 w2 ...)")  # fmt: skip
    vocab.add_argument(
        "--freq-list",
        type=Path,
        default=corpora / "gutenberg_lm" / "word_counts.tsv",
        metavar="PATH",
        help="count<TAB>WORD frequency list (default $ASR_CORPORA or ../shared/data: "
        "gutenberg_lm/word_counts.tsv)",
    )
    vocab.add_argument("--size", type=int, required=True, metavar="N", help="vocabulary size")
    vocab.add_argument("--dev", type=Path, default=None, metavar="TEXT",
                       help="Kaldi text to report the OOV rate on")  # fmt: skip
    vocab.add_argument("--out", type=Path, required=True, help="word list to write (one per line)")
    vocab.set_defaults(func=run_vocab)


def run_g2p_train(args: argparse.Namespace) -> int:
    from asr.errors import LangError
    from asr.lang.g2p import G2PConfig, G2PModel, evaluate_g2p, heldout_split
    from asr.lang.lexicon import read_lexicon

    lexicon = read_lexicon(args.cmudict, strip_stress=not args.keep_stress)
    heldout = heldout_split(lexicon.words, args.heldout_fraction)
    train = [(e.word, e.pron) for e in lexicon.entries if e.word not in heldout]
    if not train:
        raise LangError(f"{args.cmudict}: no training words left after the held-out split")
    config = G2PConfig(
        order=args.order, method={"kn": "kneser_ney", "wb": "witten_bell"}[args.method]
    )
    start = time.perf_counter()
    model = G2PModel.train(train, config)
    train_seconds = time.perf_counter() - start
    model.save(args.out)
    report = {
        "model": str(args.out),
        "dictionary": str(args.cmudict),
        "stress": bool(args.keep_stress),
        "order": args.order,
        "train_words": len(lexicon.words) - len(heldout),
        **dict(model.info),
        "ngrams": list(model.lm.num_ngrams),
        "train_seconds": round(train_seconds, 2),
    }
    if heldout:
        references: dict[str, list] = {}
        for entry in lexicon.entries:
            if entry.word in heldout:
                references.setdefault(entry.word, []).append(entry.pron)
        start = time.perf_counter()
        score = evaluate_g2p(model, references)
        report.update(
            heldout_words=score.num_words,
            heldout_fraction=args.heldout_fraction,
            wer=round(score.wer, 4),
            per=round(score.per, 4),
            heldout_seconds=round(time.perf_counter() - start, 2),
        )
    print(json.dumps(report, indent=2))
    return 0


def run_g2p(args: argparse.Namespace) -> int:
    from asr.errors import LangError
    from asr.lang.g2p import G2PModel

    words = list(args.words)
    if args.words_file is not None:
        try:
            lines = args.words_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise LangError(f"{args.words_file}: word file not found") from None
        except UnicodeDecodeError as err:
            raise LangError(f"{args.words_file}: not UTF-8 text ({err.reason})") from None
        words += [line.split()[0] for line in lines if line.split()]
    if not words:
        raise LangError("no words given (arguments or --words FILE)")
    model = G2PModel.load(args.model)
    for word, hyps in zip(words, model.predict_many(words, nbest=args.nbest), strict=True):
        for hyp in hyps:
            print(f"{word}\t{' '.join(hyp.phones)}")
    return 0


def run_complete_lexicon(args: argparse.Namespace) -> int:
    from asr.lang.g2p import G2PModel
    from asr.lang.g2p_lexicon import complete_lexicon
    from asr.lang.lexicon import Lexicon, read_lexicon, read_vocabulary

    words = sorted(read_vocabulary(args.words))
    lexicon, phones = Lexicon(entries=()), set()
    for path in args.dicts:
        full = read_lexicon(path, uppercase=args.uppercase, strip_stress=not args.keep_stress)
        phones.update(full.phones)  # the dictionaries' whole phone set, not just these words'
        lexicon = lexicon.merge(full.restrict(words, allow_missing=True))
    model = G2PModel.load(args.g2p)
    full, report = complete_lexicon(
        words, lexicon, model, nbest=args.nbest, phone_set=sorted(phones)
    )
    full.write(args.out)
    print(json.dumps({"out": str(args.out), "entries": len(full), **report.to_json()}, indent=2))
    return 0


def run_vocab(args: argparse.Namespace) -> int:
    from asr.fileio import atomic_write_text
    from asr.lang.lexicon import read_vocabulary
    from asr.lang.lm import read_text_sentences
    from asr.lang.vocab import oov_rate, select_vocabulary

    train_words = read_vocabulary(args.train_text, kind="text")
    selection = select_vocabulary(train_words, args.freq_list, args.size)
    atomic_write_text(args.out, "".join(f"{w}\n" for w in selection.words))
    report: dict = {
        "out": str(args.out),
        "size": len(selection.words),
        "from_train": selection.num_from_train,
        "from_frequency_list": selection.num_from_frequency_list,
    }
    if args.dev is not None:
        stats = oov_rate(read_text_sentences(args.dev), selection.words)
        report["dev"] = {
            "text": str(args.dev),
            "tokens": stats.num_tokens,
            "oov_tokens": stats.num_oov_tokens,
            "oov_rate": round(stats.rate, 6),
            "types": stats.num_types,
            "oov_types": stats.num_oov_types,
        }
    print(json.dumps(report, indent=2))
    return 0
