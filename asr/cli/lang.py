"""``asr lang``: build a Kaldi-style lang directory from pronunciation dictionaries.

Example (AN4)::

    asr lang prepare --dict an4/etc/an4.dic --filler an4/etc/an4.filler --out data/an4/lang

Example (FSDD digits from CMUdict, restricted to the training vocabulary)::

    asr lang prepare --dict cmudict/cmudict.dict --uppercase \\
        --words data/fsdd/train/text --out data/fsdd/lang
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli import lang_g2p

_EPILOG = """examples:
  asr lang prepare --dict an4.dic --filler an4.filler --out data/an4/lang
  asr lang prepare --dict cmudict.dict --uppercase --words data/fsdd/train/text --out lang
  asr lang prepare --dict lexicon.txt --sil-prob 0.5 --position-dependent --out lang
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lang",
        help="build lang directories (phones, words, topology, L.fst)",
        description="Build Kaldi-style lang directories; pronounce new words (G2P); choose a "
        "vocabulary.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="lang_command", metavar="SUBCOMMAND", required=True)
    prep = sub.add_parser(
        "prepare",
        help="lexicon(s) -> lang dir with phones.txt, words.txt, topo, L.fst, L_disambig.fst",
        description="Read pronunciation dictionaries (AN4 .dic/.filler, CMUdict, Kaldi "
        "lexicon.txt/lexiconp.txt) and write a lang directory as Kaldi's prepare_lang.sh does.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prep.add_argument(
        "--dict",
        dest="dicts",
        type=Path,
        action="append",
        required=True,
        metavar="DICT",
        help="a pronunciation dictionary; repeat to merge several (earlier ones first)",
    )
    prep.add_argument(
        "--filler",
        dest="fillers",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a Sphinx filler dictionary: <s>/</s> are dropped, its phones become silence phones",
    )
    prep.add_argument(
        "--words",
        type=Path,
        default=None,
        metavar="VOCAB_OR_TEXT",
        help="restrict the dictionaries to these words (a word list, or a Kaldi text file)",
    )
    prep.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --words: ignore vocabulary words the dictionaries lack (they become OOV)",
    )
    prep.add_argument(
        "--uppercase", action="store_true", help="upper-case dictionary words (CMUdict)"
    )
    prep.add_argument(
        "--keep-stress", action="store_true", help="keep stress digits on phones (AH0, AH1)"
    )
    prep.add_argument(
        "--sil-prob",
        type=float,
        default=0.5,
        metavar="P",
        help="optional-silence probability (default 0.5; 0 disables it)",
    )
    prep.add_argument(
        "--sil-phone",
        default="SIL",
        metavar="PHONE",
        help="the optional silence phone (default SIL)",
    )
    prep.add_argument("--oov", default="<UNK>", metavar="WORD", help="the OOV word (default <UNK>)")
    prep.add_argument(
        "--oov-phone",
        default="SPN",
        metavar="PHONE",
        help="the OOV word's (spoken-noise) phone (default SPN)",
    )
    prep.add_argument(
        "--position-dependent",
        action="store_true",
        help="use word-position-dependent phones (_B/_E/_I/_S)",
    )
    prep.add_argument(
        "--num-nonsil-states",
        type=int,
        default=3,
        metavar="N",
        help="HMM states per non-silence phone (default 3)",
    )
    prep.add_argument(
        "--num-sil-states",
        type=int,
        default=5,
        metavar="N",
        help="HMM states per silence phone (default 5)",
    )
    prep.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the lang directory to write"
    )
    prep.set_defaults(func=run_prepare)
    lang_g2p.register(sub)  # g2p-train, g2p, complete-lexicon, vocab


def run_prepare(args: argparse.Namespace) -> int:
    from asr.errors import LangError
    from asr.lang import LangConfig, Lexicon, prepare_lang, read_lexicon, read_vocabulary

    config = LangConfig(
        sil_phone=args.sil_phone,
        sil_prob=args.sil_prob,
        oov_word=args.oov,
        oov_phone=args.oov_phone,
        position_dependent_phones=args.position_dependent,
        num_nonsil_states=args.num_nonsil_states,
        num_sil_states=args.num_sil_states,
    )
    lexicon = Lexicon(entries=())
    for filler in args.fillers:
        lexicon = lexicon.merge(read_lexicon(filler, fmt="filler", strip_stress=False))
    vocab = None
    if args.words is not None:
        vocab = read_vocabulary(args.words) - {config.oov_word} - set(lexicon.words)
    strip_stress = not args.keep_stress
    for path in args.dicts:
        lexicon = lexicon.merge(
            read_lexicon(
                path,
                words=vocab,
                uppercase=args.uppercase,
                strip_stress=strip_stress,
                allow_missing=True,
            )
        )
    if vocab is not None and not args.allow_missing:
        missing = sorted(vocab - set(lexicon.words))
        if missing:
            shown = " ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise LangError(
                f"{len(missing)} word(s) of {args.words} are in no dictionary: {shown} "
                "(use --allow-missing to map them to the OOV word)"
            )
    lang = prepare_lang(lexicon, args.out, config)
    print(
        f"{lang.path}: {lang.num_phones} phones ({len(lang.silence_phones)} silence, "
        f"{len(lang.nonsilence_phones)} non-silence), {len(lang.words) - 4} words, "
        f"{len(lang.disambig_phone_ids)} disambiguation symbols (#0..#"
        f"{len(lang.disambig_phone_ids) - 1}), OOV {lang.oov_word}"
    )
    return 0
