"""``asr decode``: decode a data dir with a model, or log-likelihood matrices, over a graph.

Examples::

    asr decode exp/an4/mono data/an4/dev --graph exp/an4/mono/graph \\
        --acoustic-scales 0.05,0.067,0.083,0.1          # picks the best scale on dev
    asr decode exp/an4/mono data/an4/test --graph exp/an4/mono/graph \\
        --acoustic-scale-from exp/an4/mono/decode_dev     # the scale that won on dev
    asr decode --graph exp/an4/graph --log-likes exp/an4/mono/loglikes.ark \\
        --out exp/an4/mono/decode_test --ref data/an4/test/text

With ``MODEL_DIR DATA_DIR`` (any model family), features come from
``DATA_DIR/feats.scp`` through the model's feature pipeline and the outputs
(``--out``, default ``MODEL_DIR/decode_<basename DATA_DIR>``) are those of
:func:`asr.batch.decode_dir.decode_data_dir` (``hyp.txt``, ``ali.txt``,
``costs.txt``, ``wer``, ``per_utt``, ``wer_<scale>``, ``best_wer``, ``decode.json``).

With ``--log-likes`` (:func:`asr.batch.decode_dir.decode_log_likes_archive`):

``--graph`` is an ``.fst`` file or a graph directory holding ``HCLG.fst`` (or
``TLG.fst``), ``ilabel_to_pdf.int`` and ``words.txt``. Writes (atomically):

- ``OUT/hyp.txt``: Kaldi ``text`` (``utt_id word1 word2 ...``),
- ``OUT/ali.txt``: per utterance the input label (transition-id) of each frame,
- ``OUT/pdf_ali.txt``: the pdf of each frame,
- ``OUT/word_boundaries.txt``: ``utt_id word start_frame end_frame`` per word,
- ``OUT/costs.txt``: ``utt_id total graph acoustic num_frames reached_final``,
- ``OUT/wer`` with ``--ref`` (scored by :mod:`asr.scoring`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.cli.common import HelpFormatter, progress_enabled

_EPILOG = """examples:
  asr decode exp/yesno/mono data/yesno/test --graph exp/yesno/mono/graph
  asr decode exp/an4/mono data/an4/dev --graph exp/an4/mono/graph \\
      --acoustic-scales 0.05,0.067,0.083,0.1 --nj 2
  asr decode exp/an4/mono data/an4/test --graph exp/an4/mono/graph \\
      --acoustic-scale-from exp/an4/mono/decode_dev
  asr decode exp/an4/tri3 data/an4/dev --graph exp/an4/tri3/graph --lattice-beam 6 \\
      --acoustic-scales 0.033,0.05,0.067,0.1 --word-ins-penalties 0,0.5,1 --nj 2
  asr decode exp/an4/tri3 data/an4/dev --graph exp/an4/tri3/graph --lattice-beam 6 \\
      --acoustic-scales 0.033,0.05 --rescore-lm data/an4/lang/lm4.arpa --old-g data/an4/lang/G.fst
  asr decode --graph exp/an4/mono/graph --log-likes loglikes.ark --out decode_test \\
      --ref data/an4/test/text
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="decode a data dir with a model (and score it), or log-likelihoods, over a graph",
        description="Decode DATA_DIR with the acoustic model in MODEL_DIR over a decoding graph "
        "and score it against DATA_DIR/text; or (--log-likes) decode a Kaldi ark of "
        "(num_frames, num_pdfs) log-likelihood matrices. Viterbi beam search with Kaldi "
        "FasterDecoder semantics.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("model_dir", nargs="?", type=Path, help="model directory")
    parser.add_argument("data_dir", nargs="?", type=Path, help="data dir with feats.scp")
    parser.add_argument("--graph", type=Path, required=True, help="graph directory (or .fst)")
    parser.add_argument("--words", type=Path, help="words.txt (default: GRAPH_DIR/words.txt)")
    parser.add_argument("--log-likes", type=Path, help="ark of log-likelihood matrices")
    parser.add_argument(
        "--ilabel-map", type=Path, help="ilabel_to_pdf.int (default: GRAPH_DIR/ilabel_to_pdf.int)"
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default: MODEL_DIR/decode_<DATA_DIR name>)"
    )
    parser.add_argument(
        "--beam", type=float, help="beam (default: 13 with MODEL_DIR, 16 with --log-likes)"
    )
    parser.add_argument("--max-active", type=int, help="(default: DecoderConfig's, 7000)")
    parser.add_argument("--min-active", type=int, help="(default: DecoderConfig's, 200)")
    parser.add_argument("--beam-delta", type=float, help="(default: DecoderConfig's, 0.5)")
    parser.add_argument("--acoustic-scale", type=float, help="(default: DecoderConfig's, 0.1)")
    parser.add_argument(
        "--acoustic-scales",
        help="comma-separated scales to try (MODEL_DIR mode); the best on DATA_DIR/text wins",
    )
    parser.add_argument(
        "--acoustic-scale-from",
        type=Path,
        metavar="DECODE_DIR",
        help="use the acoustic scale chosen by an earlier decode (its decode.json), e.g. the one "
        "that won on dev when decoding test",
    )
    parser.add_argument(
        "--lattice-beam",
        type=float,
        help="MODEL_DIR mode: decode once into word lattices pruned with this beam (OUT/lat.txt.gz, "
        "Kaldi CompactLattice text; OUT/oracle_wer) and score every acoustic scale and "
        "word-insertion penalty from them",
    )
    parser.add_argument(
        "--word-ins-penalties",
        help="comma-separated word-insertion penalties tried with --lattice-beam (default: 0)",
    )
    parser.add_argument(
        "--rescore-lm",
        type=Path,
        metavar="ARPA",
        help="with --lattice-beam: rescore the lattices with this LM (e.g. a 4-gram) in place of "
        "the decoding LM given by --old-g; the first pass's WER goes to OUT/wer_first_pass",
    )
    parser.add_argument(
        "--old-g", type=Path, metavar="G_FST", help="the decoding graph's G.fst (LANG/G.fst)"
    )
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs (MODEL_DIR mode)")
    parser.add_argument("--ref", type=Path, help="reference Kaldi text file: also write OUT/wer")
    parser.add_argument(
        "--device",
        default="cpu",
        help="--log-likes: cpu (compiled search) or cuda (batched torch search); "
        "MODEL_DIR: device of the acoustic model",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="utterances per batch on cuda")
    parser.set_defaults(func=run)


def _resolve_graph(args: argparse.Namespace) -> tuple[Path, Path | None, Path | None]:
    from asr.errors import DecodeError

    graph = args.graph
    graph_dir = graph if graph.is_dir() else graph.parent
    if graph.is_dir():
        candidates = [graph / "HCLG.fst", graph / "TLG.fst"]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise DecodeError(f"{graph}: no HCLG.fst or TLG.fst in the graph directory")
        graph = found[0]
    elif not graph.exists():
        raise DecodeError(f"{graph}: graph file not found")
    ilabel_map = args.ilabel_map
    if ilabel_map is None and (graph_dir / "ilabel_to_pdf.int").exists():
        ilabel_map = graph_dir / "ilabel_to_pdf.int"
    words = args.words
    if words is None and (graph_dir / "words.txt").exists():
        words = graph_dir / "words.txt"
    return graph, ilabel_map, words


def read_words(path: Path) -> dict[int, str]:
    """``words.txt`` (``word id`` per line) as ``{id: word}``; errors name the line."""
    from asr.errors import DecodeError, LangError
    from asr.lang.symbols import read_symbol_table

    try:
        table = read_symbol_table(path)
    except LangError as err:
        raise DecodeError(str(err)) from None
    return {sym_id: word for word, sym_id in table.pairs}


def _parse_scales(text: str) -> list[float]:
    from asr.errors import DecodeError

    try:
        scales = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DecodeError(
            f"--acoustic-scales: expected numbers separated by commas, got {text!r}"
        ) from None
    if not scales:
        raise DecodeError("--acoustic-scales: no scales given")
    return scales


def run(args: argparse.Namespace) -> int:
    from asr.errors import DecodeError

    if args.log_likes is not None:
        if args.model_dir is not None:
            raise DecodeError("give either MODEL_DIR DATA_DIR or --log-likes ARK, not both")
        if args.out is None:
            raise DecodeError("--log-likes needs --out DIR")
        if args.acoustic_scales is not None or args.acoustic_scale_from is not None:
            raise DecodeError(
                "--acoustic-scales/--acoustic-scale-from need MODEL_DIR DATA_DIR (not --log-likes)"
            )
        if (
            args.lattice_beam is not None
            or args.word_ins_penalties is not None
            or args.rescore_lm is not None
        ):
            raise DecodeError(
                "--lattice-beam/--word-ins-penalties need MODEL_DIR DATA_DIR (not --log-likes)"
            )
        return run_log_likes(args)
    if args.model_dir is None or args.data_dir is None:
        raise DecodeError("give MODEL_DIR DATA_DIR (or --log-likes ARK --out DIR)")
    return run_model(args)


def _parse_penalties(text: str) -> tuple[float, ...]:
    from asr.errors import DecodeError

    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise DecodeError(
            f"--word-ins-penalties: not a comma-separated list of numbers: {text!r}"
        ) from None
    if not values:
        raise DecodeError("--word-ins-penalties: empty list")
    return values


def _penalty_from(decode_dir: Path) -> float:
    """The word-insertion penalty an earlier ``asr decode`` chose (0 when it had none)."""
    import json

    try:
        record = json.loads((decode_dir / "decode.json").read_text(encoding="utf-8"))
        return float(record.get("best_word_ins_penalty") or 0.0)
    except (OSError, ValueError, TypeError):
        return 0.0


def _scale_from(decode_dir: Path) -> float:
    """The acoustic scale an earlier ``asr decode`` chose (``DECODE_DIR/decode.json``)."""
    import json

    from asr.errors import DecodeError

    path = decode_dir / "decode.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["decoder"]["acoustic_scale"])
    except FileNotFoundError:
        raise DecodeError(f"{path} not found: decode that set first") from None
    except (ValueError, KeyError, TypeError) as err:
        raise DecodeError(f"{path}: no acoustic_scale ({err})") from None


#: MODEL_DIR mode's beam when --beam is not given (Kaldi's decode.sh default; --log-likes
#: mode keeps DecoderConfig's 16, FasterDecoder's default)
MODEL_DIR_BEAM = 13.0


def _decoder_config(args: argparse.Namespace, *, default_beam: float | None):
    """A DecoderConfig from the options given; the dataclass supplies the others."""
    from asr.decode import DecoderConfig

    names = ("beam", "max_active", "min_active", "beam_delta", "acoustic_scale")
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if default_beam is not None:
        given.setdefault("beam", default_beam)
    return DecoderConfig(**given)


def run_model(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.batch.decode_dir import decode_data_dir, format_scale
    from asr.errors import DecodeError

    for name in ("ref", "words", "ilabel_map"):
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            raise DecodeError(
                f"{flag} is for --log-likes mode; MODEL_DIR mode uses DATA_DIR/text "
                "and the graph directory's files"
            )
    chosen = [args.acoustic_scale, args.acoustic_scales, args.acoustic_scale_from]
    if sum(x is not None for x in chosen) > 1:
        raise DecodeError(
            "give one of --acoustic-scale, --acoustic-scales and --acoustic-scale-from"
        )
    wips = _parse_penalties(args.word_ins_penalties) if args.word_ins_penalties else (0.0,)
    if args.acoustic_scale_from is not None:
        args.acoustic_scale = _scale_from(args.acoustic_scale_from)
        if args.word_ins_penalties is None:
            wips = (_penalty_from(args.acoustic_scale_from),)
    graph_dir = args.graph if args.graph.is_dir() else args.graph.parent
    out = args.out or args.model_dir / f"decode_{args.data_dir.resolve().name}"
    config = _decoder_config(args, default_beam=MODEL_DIR_BEAM)
    scales = _parse_scales(args.acoustic_scales) if args.acoustic_scales is not None else None
    with tqdm(desc="decode", unit="utt", disable=not progress_enabled()) as bar:
        summary = decode_data_dir(
            args.model_dir,
            graph_dir,
            args.data_dir,
            out,
            config=config,
            acoustic_scales=scales,
            num_jobs=args.nj,
            progress=bar.update,
            device=args.device,
            lattice_beam=args.lattice_beam,
            word_ins_penalties=wips,
            rescore_lm=args.rescore_lm,
            old_g=args.old_g,
        )
    if summary.num_not_final:
        print(
            f"asr decode: warning: {summary.num_not_final} utterance(s) did not reach a final "
            "state (best partial path used)",
            file=sys.stderr,
        )
    if len(summary.acoustic_scales) > 1:
        tried = ", ".join(f"{format_scale(s)}: {w:.2f}" for s, w in summary.wer_by_scale.items())
        print(f"acoustic scale {format_scale(summary.acoustic_scale)} chosen (%WER {tried})")
    if summary.summary_line is not None:
        print(f"{summary.summary_line} {out}")
    print(
        f"decoded {summary.num_utterances} utterances ({summary.audio_seconds:.1f} s of audio) "
        f"in {summary.wall_seconds:.1f} s: RTF {summary.rtf:.3f}; wrote {out}"
    )
    return 0


def run_log_likes(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from asr.batch.decode_dir import decode_log_likes_archive
    from asr.decode import DecodingGraph

    graph_path, ilabel_map, words_path = _resolve_graph(args)
    word_symbols = read_words(words_path) if words_path is not None else None
    graph = DecodingGraph.from_fst(graph_path, ilabel_map)
    config = _decoder_config(args, default_beam=None)
    refs = None
    if args.ref is not None:
        from asr.scoring import read_text_file

        refs = read_text_file(args.ref)
    with tqdm(desc="decode", unit="utt", disable=not progress_enabled()) as bar:
        summary = decode_log_likes_archive(
            graph, args.log_likes, args.out, config=config, word_symbols=word_symbols,
            refs=refs, device=args.device, batch_size=args.batch_size, progress=bar.update,
        )  # fmt: skip
    if summary.num_not_final:
        print(
            f"asr decode: warning: {summary.num_not_final} utterance(s) did not reach a final "
            "state (best partial path used)",
            file=sys.stderr,
        )
    if summary.score is not None:
        print(summary.score.summary_line())
    return 0
