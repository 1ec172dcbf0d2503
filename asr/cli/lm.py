"""``asr lm``: train n-gram language models (ARPA), score perplexity, compile G.fst.

Examples::

    asr lm train data/an4/train/text --order 3 --vocab data/an4/lang/words.txt \\
        --out data/an4/lm/lm.arpa --heldout data/an4/dev/text
    asr lm perplexity data/an4/lm/lm.arpa data/an4/dev/text
    asr lm to-g data/an4/lm/lm.arpa --words data/an4/lang/words.txt --out data/an4/lang/G.fst
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr.cli import lm_interpolate

_EPILOG = """examples:
  asr lm train data/an4/train/text --order 3 --vocab lang/words.txt --out lm.arpa
  asr lm train sentences.txt --no-utt-ids --order 2 --method wb --out lm.arpa
  asr lm perplexity lm.arpa data/an4/dev/text
  asr lm to-g lm.arpa --words lang/words.txt --out lang/G.fst
"""

_METHODS = {"kn": "kneser_ney", "wb": "witten_bell"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lm",
        help="n-gram language models: train (ARPA), perplexity, G.fst",
        description="Train back-off n-gram language models, score them, compile G.fst.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="lm_command", metavar="SUBCOMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="text -> ARPA n-gram model (interpolated Kneser-Ney or Witten-Bell)",
        description="Count n-grams of a Kaldi text file and write an ARPA back-off model.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("text", type=Path, help="Kaldi text file (utt_id w1 w2 ...)")
    train.add_argument("--out", type=Path, required=True, help="output ARPA file")
    train.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    train.add_argument(
        "--method",
        choices=sorted(_METHODS),
        default="kn",
        help="kn: interpolated modified Kneser-Ney (default); wb: interpolated Witten-Bell",
    )
    train.add_argument(
        "--discount",
        type=float,
        default=None,
        help="one fixed Kneser-Ney discount for all orders (default: modified-KN D1,D2,D3+ "
        "estimated from count-of-counts)",
    )
    train.add_argument(
        "--vocab",
        type=Path,
        default=None,
        help="words.txt (Kaldi symbol table): the model's vocabulary; other words map to "
        "--unk, which is in the model only when such words occur (default: the training words)",
    )
    train.add_argument("--unk", default="<UNK>", help="unknown-word symbol (default <UNK>)")
    train.add_argument(
        "--min-count",
        type=int,
        default=1,
        help="drop n-grams (order >= 2) seen fewer times; their mass goes to back-off",
    )
    train.add_argument("--heldout", type=Path, default=None, help="text to report perplexity on")
    _add_utt_ids_flag(train)
    train.set_defaults(func=_train)

    ppl = sub.add_parser(
        "perplexity",
        help="perplexity of an ARPA model on a text (as SRILM ngram -ppl)",
        description="Report sentences, words, OOVs, logprob, ppl and ppl1 (SRILM's ngram -ppl).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ppl.add_argument("arpa", type=Path, help="ARPA model")
    ppl.add_argument("text", type=Path, help="Kaldi text file")
    _add_utt_ids_flag(ppl)
    ppl.set_defaults(func=_perplexity)

    to_g = sub.add_parser(
        "to-g",
        help="ARPA -> G.fst (Kaldi's arpa2fst via kaldilm)",
        description="Compile an ARPA model into G.fst with #0 on back-off arcs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    to_g.add_argument("arpa", type=Path, help="ARPA model")
    to_g.add_argument("--words", type=Path, required=True, help="words.txt symbol table")
    to_g.add_argument("--out", type=Path, required=True, help="output G.fst")
    to_g.add_argument("--disambig-symbol", default="#0", help="back-off arc label (default #0)")
    to_g.add_argument("--max-order", type=int, default=None, help="use n-grams up to this order")
    to_g.set_defaults(func=_to_g)
    lm_interpolate.register(sub)  # interpolate


def _add_utt_ids_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-utt-ids",
        dest="utt_ids",
        action="store_false",
        help="text files hold plain sentences, without a leading utt_id",
    )


def _print_perplexity(path: Path, result) -> None:
    print(f"file {path}: {result}")


def _train(args: argparse.Namespace) -> int:
    from asr.lang.lm import (
        NgramConfig,
        perplexity,
        read_text_sentences,
        read_vocab,
        train_ngram,
        write_arpa,
    )

    config = NgramConfig(
        order=args.order,
        method=_METHODS[args.method],
        discount=args.discount,
        unk=args.unk or None,
        min_count=args.min_count,
    )
    sentences = read_text_sentences(args.text, utt_ids=args.utt_ids)
    vocab = None
    if args.vocab is not None:
        # The lang's OOV word (<UNK>) gets LM mass only when the training text has words outside
        # the vocabulary; otherwise G would let the decoder insert a word no audio trained.
        vocab = [word for word in read_vocab(args.vocab) if word != config.unk]
    model = train_ngram(sentences, vocab=vocab, config=config)
    write_arpa(model, args.out)
    num_words = sum(len(s) for s in sentences)
    print(
        f"{args.text}: {len(sentences)} sentences, {num_words} words; vocabulary {len(model.vocab)}"
    )
    for n, count in enumerate(model.num_ngrams, start=1):
        print(f"ngram {n}={count}")
    print(f"wrote {args.out}")
    if args.heldout is not None:
        heldout = read_text_sentences(args.heldout, utt_ids=args.utt_ids)
        _print_perplexity(args.heldout, perplexity(model, heldout))
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    from asr.lang.lm import perplexity, read_arpa, read_text_sentences

    model = read_arpa(args.arpa)
    sentences = read_text_sentences(args.text, utt_ids=args.utt_ids)
    _print_perplexity(args.text, perplexity(model, sentences))
    return 0


def _to_g(args: argparse.Namespace) -> int:
    from asr.graph.grammar import arpa_to_g

    out = arpa_to_g(
        args.arpa,
        words_txt=args.words,
        out_path=args.out,
        disambig_symbol=args.disambig_symbol,
        max_order=args.max_order,
    )
    print(f"wrote {out}")
    return 0
