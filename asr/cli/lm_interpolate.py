"""``asr lm interpolate``: mix ARPA models linearly into one ARPA model (SRILM's
``ngram -mix-lm -lambda -write-lm``), weights tuned on a dev text (``compute-best-mix``).

Registered by :mod:`asr.cli.lm` under ``asr lm``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_EPILOG = """Without --lambdas the weights minimise the dev perplexity of the mixture (EM). The JSON
report gives each component's dev perplexity (dev.components), the exact mixture's (dev.mixture)
and that of the written back-off model (dev.mixed_model: n-grams that no component lists are
approximated by back-off, as in SRILM's static interpolation).

examples:
  asr lm interpolate in_domain.arpa gutenberg.arpa --dev data/speechocean762/dev/text --out mix.arpa
  asr lm interpolate a.arpa b.arpa --dev dev/text --lambdas 0.7,0.3 --out mix.arpa
  asr lm interpolate a.arpa b.arpa c.arpa --dev dev.txt --no-utt-ids --out mix.arpa
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``interpolate`` to ``asr lm``."""
    mix = sub.add_parser(
        "interpolate",
        help="linear interpolation of ARPA models into one ARPA model (weights tuned on dev)",
        description="Interpolate back-off n-gram models and write the mixture as ARPA.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mix.add_argument(
        "arpas", type=Path, nargs="+", metavar="ARPA", help="component models (2 or more)"
    )
    mix.add_argument("--dev", type=Path, default=None, metavar="TEXT",
                     help="dev text to tune the weights on and report perplexities "
                     "(required without --lambdas)")  # fmt: skip
    mix.add_argument("--lambdas", default=None, metavar="W1,W2,...",
                     help="fixed weights, one per model, summing to 1 (default: tuned on --dev)")  # fmt: skip
    mix.add_argument(
        "--out", type=Path, required=True, metavar="MIX.arpa", help="ARPA file to write"
    )
    mix.add_argument(
        "--no-utt-ids",
        dest="utt_ids",
        action="store_false",
        help="the dev text holds plain sentences, without a leading utt_id",
    )
    mix.set_defaults(func=run_interpolate)


def _parse_lambdas(text: str, num_models: int) -> list[float]:
    from asr.errors import LmError

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise LmError(f"--lambdas: {text!r} is not a comma-separated list of numbers") from None
    if len(values) != num_models:
        raise LmError(f"--lambdas gives {len(values)} weights for {num_models} models")
    return values


def _ppl_json(result) -> dict:
    return {
        "ppl": round(result.ppl, 4),
        "ppl1": round(result.ppl1, 4),
        "logprob": round(result.logprob, 4),
        "oovs": result.num_oovs,
        "zeroprobs": result.num_zeroprobs,
    }


def run_interpolate(args: argparse.Namespace) -> int:
    from asr.errors import LmError
    from asr.lang.interpolate import interpolate_models, mixture_perplexity, tune_weights
    from asr.lang.lm import perplexity, read_arpa, read_text_sentences, write_arpa

    if len(args.arpas) < 2:
        raise LmError("interpolation needs two or more ARPA models")
    if args.lambdas is None and args.dev is None:
        raise LmError("give --dev to tune the weights on, or fixed --lambdas")
    models = [read_arpa(path) for path in args.arpas]
    dev = read_text_sentences(args.dev, utt_ids=args.utt_ids) if args.dev is not None else None
    report: dict = {"models": [str(p) for p in args.arpas]}
    if args.lambdas is not None:
        lambdas = _parse_lambdas(args.lambdas, len(models))
        report.update(lambdas=lambdas, tuned=False)
    else:
        weights = tune_weights(models, dev)
        lambdas = list(weights.lambdas)
        report.update(lambdas=[round(w, 6) for w in lambdas], tuned=True,
                      em_iterations=weights.iterations)  # fmt: skip
    mixed = interpolate_models(models, lambdas)
    write_arpa(mixed, args.out)
    report.update(out=str(args.out), ngrams=list(mixed.num_ngrams))
    if dev is not None:
        report["dev"] = {
            "text": str(args.dev),
            "sentences": sum(1 for s in dev if s),
            "words": sum(len(s) for s in dev),
            "components": [
                {"model": str(path), **_ppl_json(perplexity(model, dev))}
                for path, model in zip(args.arpas, models, strict=True)
            ],
            "mixture": _ppl_json(mixture_perplexity(models, lambdas, dev)),
            "mixed_model": _ppl_json(perplexity(mixed, dev)),
        }
    print(json.dumps(report, indent=2))
    return 0
