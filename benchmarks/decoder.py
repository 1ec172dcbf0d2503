"""Benchmark our Viterbi beam search against Kaldi's FasterDecoder (kaldi-decoder).

Side by side in one run, one thread: our single-stream time vs
``kaldi_decoder.FasterDecoder`` at the same beam/max_active/min_active, the
fraction of utterances with the same words, the batched search (``decode_batch``
on CPU, "auto" backend, and the torch backend forced on CPU), and with CUDA the
aggregate real-time factor of 256 streams. Prints one JSON object.

Inputs: ``--graph-dir`` with ``HCLG.fst`` (or ``TLG.fst``) and
``ilabel_to_pdf.int``; without it a synthetic HCLG-like word-loop graph
(~50k states, ~150k arcs, 3-state left-to-right HMMs with self-loops,
unigram word costs). Scores follow a forced random path through the graph's
pdfs plus Gaussian noise.

    python benchmarks/decoder.py --json
    python benchmarks/decoder.py --graph-dir exp/an4/graph --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def synthetic_graph(rng: np.random.Generator, *, num_words: int, num_pdfs: int):
    """A word-loop HCLG look-alike. Returns (kaldifst fst, ilabel_to_pdf, word pdf lists)."""
    import kaldifst

    fst = kaldifst.StdVectorFst()
    loop = fst.add_state()
    fst.start = loop
    fst.set_final(state=loop, weight=0.0)
    word_costs = -np.log(rng.dirichlet(np.ones(num_words)))
    words = []
    for w in range(num_words):
        num_hmm_states = 3 * int(rng.integers(4, 10))
        pdfs = rng.integers(0, num_pdfs, num_hmm_states)
        states = [fst.add_state() for _ in range(num_hmm_states)]
        fst.add_arc(
            state=loop,
            arc=kaldifst.StdArc(int(pdfs[0]) + 1, w + 1, float(word_costs[w]), states[0]),
        )
        for k, s in enumerate(states):
            fst.add_arc(state=s, arc=kaldifst.StdArc(int(pdfs[k]) + 1, 0, 0.69, s))
            if k + 1 < num_hmm_states:
                fst.add_arc(
                    state=s, arc=kaldifst.StdArc(int(pdfs[k + 1]) + 1, 0, 0.69, states[k + 1])
                )
            if k + 3 < num_hmm_states:  # skip a phone (pronunciation variant)
                fst.add_arc(
                    state=s, arc=kaldifst.StdArc(int(pdfs[k + 3]) + 1, 0, 2.3, states[k + 3])
                )
        fst.add_arc(state=states[-1], arc=kaldifst.StdArc(0, 0, 0.0, loop))
        words.append(pdfs)
    ilabel_to_pdf = np.arange(-1, num_pdfs, dtype=np.int32)
    return fst, ilabel_to_pdf, words


def forced_scores(rng, words, *, num_pdfs: int, num_frames: int, noise: float) -> np.ndarray:
    """Log-likelihoods: noise everywhere, the pdfs of a random word sequence boosted."""
    pdf_seq: list[int] = []
    while len(pdf_seq) < num_frames:
        for pdf in words[int(rng.integers(len(words)))]:
            pdf_seq.extend([int(pdf)] * int(rng.integers(1, 4)))
    pdf_seq = pdf_seq[:num_frames]
    scores = rng.normal(-12.0, noise, (num_frames, num_pdfs)).astype(np.float32)
    scores[np.arange(num_frames), pdf_seq] = rng.normal(-4.0, noise, num_frames)
    return scores


def forced_scores_from_graph(rng, graph, *, num_pdfs: int, num_frames: int, noise: float):
    """For a real graph: a random walk over emitting arcs gives the boosted pdfs."""
    pdf_seq = []
    state = graph.start_state
    while len(pdf_seq) < num_frames:
        lo, hi = graph.arc_start[state], graph.arc_start[state + 1]
        if hi == lo:
            state = graph.start_state
            continue
        a = int(rng.integers(lo, hi))
        if graph.pdf[a] >= 0:
            pdf_seq.append(int(graph.pdf[a]))
        state = int(graph.nextstate[a])
    scores = rng.normal(-12.0, noise, (num_frames, num_pdfs)).astype(np.float32)
    scores[np.arange(num_frames), pdf_seq] = rng.normal(-4.0, noise, num_frames)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--graph-dir", type=Path)
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="with --graph-dir and --data-dir: real scores of this acoustic model (e.g. exp/an4/mono)",
    )
    parser.add_argument("--data-dir", type=Path, help="data dir (with feats.scp) to score")
    parser.add_argument("--num-utts", type=int, default=32)
    parser.add_argument("--num-frames", type=int, default=200)
    parser.add_argument("--num-words", type=int, default=2500)
    parser.add_argument("--num-pdfs", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--beam", type=float, default=16.0)
    parser.add_argument("--max-active", type=int, default=7000)
    parser.add_argument("--min-active", type=int, default=200)
    parser.add_argument("--acoustic-scale", type=float, default=0.1)
    parser.add_argument(
        "--skip-torch-cpu", action="store_true", help="skip the torch backend on CPU"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)

    import kaldi_decoder
    import kaldifst
    import torch

    from asr.decode import DecoderConfig, DecodingGraph, decode
    from asr.decode.batched import decode_batch

    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    if args.graph_dir is not None:
        fst_path = next(
            (args.graph_dir / n for n in ("HCLG.fst", "TLG.fst") if (args.graph_dir / n).exists()),
            None,
        )
        if fst_path is None:
            parser.error(f"no HCLG.fst or TLG.fst in {args.graph_dir}")
        fst = kaldifst.StdVectorFst.read(str(fst_path))
        ilabel_to_pdf = np.loadtxt(args.graph_dir / "ilabel_to_pdf.int", dtype=np.int32, ndmin=1)
        graph = DecodingGraph.from_fst(fst_path, ilabel_to_pdf)
        num_pdfs = graph.num_pdfs_required
        if args.model_dir is not None:
            from asr.acoustic_model import load_acoustic_model
            from asr.features.pipeline import iter_features

            model = load_acoustic_model(args.model_dir)
            utts = []
            for _, feats in iter_features(
                args.data_dir, model.feature_pipeline, model_dir=args.model_dir
            ):
                utts.append(np.ascontiguousarray(model.log_likelihoods(feats), dtype=np.float32))
                if len(utts) == args.num_utts:
                    break
            scores_name = f"{args.model_dir} on {args.data_dir}"
        else:
            utts = [
                forced_scores_from_graph(
                    rng, graph, num_pdfs=num_pdfs, num_frames=args.num_frames, noise=args.noise
                )
                for _ in range(args.num_utts)
            ]
            scores_name = f"forced random paths + noise {args.noise}"
        graph_name = str(fst_path)
    else:
        fst, ilabel_to_pdf, words = synthetic_graph(
            rng, num_words=args.num_words, num_pdfs=args.num_pdfs
        )
        graph = DecodingGraph.from_fst(fst, ilabel_to_pdf)
        num_pdfs = args.num_pdfs
        utts = [
            forced_scores(
                rng, words, num_pdfs=num_pdfs, num_frames=args.num_frames, noise=args.noise
            )
            for _ in range(args.num_utts)
        ]
        graph_name = "synthetic"
        scores_name = f"forced random paths + noise {args.noise}"
    graph_load_s = time.perf_counter() - t0

    config = DecoderConfig(
        beam=args.beam,
        max_active=args.max_active,
        min_active=args.min_active,
        acoustic_scale=args.acoustic_scale,
    )
    decode(graph, utts[0][:5], config)  # compile / load the numba cache outside the timing

    # ours, single stream
    t0 = time.perf_counter()
    ours = [decode(graph, u, config) for u in utts]
    ours_s = time.perf_counter() - t0

    # Kaldi's FasterDecoder: column i-1 of the decodable = scaled log-like of ilabel i
    scale = np.float32(args.acoustic_scale)
    table = ilabel_to_pdf[1:].clip(min=0)
    expanded = [np.ascontiguousarray(scale * u[:, table], dtype=np.float32) for u in utts]
    opts = kaldi_decoder.FasterDecoderOptions(
        beam=args.beam, max_active=args.max_active, min_active=args.min_active, beam_delta=0.5
    )
    kaldi = kaldi_decoder.FasterDecoder(fst, opts)
    theirs_words = []
    t0 = time.perf_counter()
    for e in expanded:
        kaldi.decode(kaldi_decoder.DecodableCtc(e))
        _, lattice = kaldi.get_best_path()
        theirs_words.append(tuple(kaldifst.get_linear_symbol_sequence(lattice)[2]))
    theirs_s = time.perf_counter() - t0
    same = sum(o.word_ids == w for o, w in zip(ours, theirs_words, strict=True)) / len(utts)

    batch = utts[:32]
    single_per_utt = ours_s / len(utts)
    t0 = time.perf_counter()
    decode_batch(graph, batch, config, device="cpu")
    auto_s = time.perf_counter() - t0
    report = {
        "graph": graph_name,
        "num_states": graph.num_states,
        "num_arcs": graph.num_arcs,
        "graph_load_s": round(graph_load_s, 3),
        "scores": scores_name,
        "num_utts": len(utts),
        "num_frames": sum(len(u) for u in utts),
        "beam": args.beam,
        "max_active": args.max_active,
        "min_active": args.min_active,
        "ours_s": round(ours_s, 4),
        "kaldi_decoder_s": round(theirs_s, 4),
        "time_ratio_vs_kaldi_decoder": round(ours_s / theirs_s, 3),
        "same_words_fraction_vs_kaldi_decoder": same,
        "ours_rtf_1thread": round(ours_s / (sum(len(u) for u in utts) * 0.01), 5),
        "batched_speedup_32": round(len(batch) * single_per_utt / auto_s, 3),
        "batched_backend_cpu": "numba (auto)",
    }
    if not args.skip_torch_cpu:
        t0 = time.perf_counter()
        torch_res = decode_batch(graph, batch, config, device="cpu", backend="torch")
        torch_s = time.perf_counter() - t0
        report["batched_torch_cpu_speedup_32"] = round(len(batch) * single_per_utt / torch_s, 3)
        report["batched_torch_same_words_fraction"] = sum(
            r.word_ids == o.word_ids for r, o in zip(torch_res, ours, strict=False)
        ) / len(batch)
    if torch.cuda.is_available():
        streams = [utts[i % len(utts)] for i in range(256)]
        decode_batch(graph, streams[:2], config, device="cuda")  # warm up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        decode_batch(graph, streams, config, device="cuda")
        torch.cuda.synchronize()
        cuda_s = time.perf_counter() - t0
        report["cuda_rtf_256_streams"] = round(cuda_s / (256 * args.num_frames * 0.01), 5)
    report["threads"] = {
        "torch": torch.get_num_threads(),
        "omp_env": os.environ.get("OMP_NUM_THREADS"),
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
