"""Benchmark our lattices against Kaldi's LatticeSimpleDecoder on AN4 dev (real HCLG, real scores).

For each model (default tri3 and dnn of ``exp/an4``) and each dev utterance: the model's
scores (speaker-adapted with fMLLR where the model is, as its recipe decodes), then on one
thread and at the same beams (the recipe's beam, no max_active so both searches prune by
beam alone):

- our 1-best search (:func:`asr.decode.decode`) and our lattice search plus word-lattice
  determinization (:func:`asr.decode.lattice_search.decode_lattice`,
  :func:`asr.lattice.determinize`), timed;
- Kaldi's ``LatticeSimpleDecoder`` raw lattice, timed, and determinized by OpenFst
  (word acceptor, graph + scaled acoustic cost) for its n-best;
- best paths, top-10 n-best lists (word sequences in order; a list matches when every
  sequence agrees or the two differ only among entries tied within 1e-3), the lattice
  oracle WER of both lattices, and word confidences: lattice posteriors (ours) vs the
  frame-posterior proxy (:mod:`asr.confidence`), scored by normalized cross entropy
  (NCE) against the 1-best's correct/incorrect words. Both are posteriors at a scale k
  of the costs (Kaldi's ``lattice-to-ctm-conf --acoustic-scale``) mapped by a logistic
  function of their log-odds (Platt scaling); k and the map are fitted on one half of the
  utterances and scored on the other (2-fold cross-validation), the same way for both.
  The uncalibrated NCEs (k = 1, no map) are printed too.

Prints one JSON object with ``same_best_path_fraction_vs_kaldi``,
``nbest_match_fraction_vs_kaldi``, ``oracle_wer_abs_diff_vs_kaldi``,
``lattice_time_ratio_vs_one_best``, ``nce_lattice``, ``nce_proxy`` (the headline keys
are over all models: fractions over all utterances, the worst oracle difference, the
largest time ratio, the smallest NCEs) and per-model details.

    python benchmarks/lattices.py --json                       # after recipes/an4/run.sh --stop-stage 14
    python benchmarks/lattices.py --models tri3 --limit 40 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def nce(confidences: np.ndarray, correct: np.ndarray) -> float:
    """Normalized cross entropy of word confidences (NIST's definition)."""
    c = np.clip(np.asarray(confidences, dtype=np.float64), 1e-6, 1 - 1e-6)
    correct = np.asarray(correct, dtype=bool)
    n, n_c = correct.size, int(correct.sum())
    if n == 0 or n_c in (0, n):
        return float("nan")
    p_c = n_c / n
    h_max = -n_c * math.log2(p_c) - (n - n_c) * math.log2(1 - p_c)
    h = -(np.log2(c[correct]).sum() + np.log2(1 - c[~correct]).sum())
    return float((h_max - h) / h_max)


#: posterior scales tried (costs times k before the forward-backward), as Kaldi users pick
#: the acoustic scale of lattice-to-ctm-conf; chosen on one half of the utterances and
#: evaluated on the other (2-fold cross-validation)
POSTERIOR_SCALES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def cross_validated_nce(conf_by_scale, correct, fold) -> tuple[float, list[float]]:
    """NCE of calibrated confidences: per fold, the posterior scale and a logistic map of
    the confidence's log-odds (Platt scaling) are fitted on the other fold."""
    from sklearn.linear_model import LogisticRegression

    def logit(c):
        c = np.clip(np.asarray(c, dtype=np.float64), 1e-6, 1 - 1e-6)
        return np.log(c / (1 - c))[:, None]

    def fitted(k, train):
        x, y = logit(conf_by_scale[k])[train], correct[train]
        if y.all() or not y.any():
            return None
        return LogisticRegression(C=1.0).fit(x, y)

    def calibrated(k, model, rows):
        if model is None:
            return np.asarray(conf_by_scale[k])[rows]
        return model.predict_proba(logit(conf_by_scale[k])[rows])[:, 1]

    out = np.zeros(correct.shape[0])
    chosen = []
    for f in (0, 1):
        train, test = fold != f, fold == f
        models = {k: fitted(k, train) for k in conf_by_scale}
        best_k = max(
            conf_by_scale, key=lambda k: nce(calibrated(k, models[k], train), correct[train])
        )
        chosen.append(best_k)
        out[test] = calibrated(best_k, models[best_k], test)
    return nce(out, correct), chosen


def kaldi_lattice(graph_fst, ilabel_to_pdf, scores, beam, lattice_beam, acoustic_scale):
    """Kaldi's LatticeSimpleDecoder: (raw lattice text, seconds)."""
    import kaldi_decoder

    expanded = np.ascontiguousarray(
        np.float32(acoustic_scale) * scores[:, ilabel_to_pdf[1:]], dtype=np.float32
    )
    config = kaldi_decoder.LatticeSimpleDecoderConfig()
    config.beam = beam
    config.lattice_beam = lattice_beam
    t0 = time.perf_counter()
    dec = kaldi_decoder.LatticeSimpleDecoder(graph_fst, config)
    dec.decode(kaldi_decoder.DecodableCtc(expanded))
    ok, raw = dec.get_raw_lattice()
    seconds = time.perf_counter() - t0
    if not ok:
        return None, seconds
    return raw.to_str(), seconds


def kaldi_word_lattice(text: str, acoustic_scale: float, num_frames: int, lattice_beam: float):
    """Kaldi's raw lattice (text) -> our RawLattice (same content), for n-best and oracle."""
    from asr.lattice.raw import RawLattice

    rows = [line.split() for line in text.strip().splitlines()]
    arcs = [r for r in rows if len(r) >= 4]
    finals = [r for r in rows if len(r) < 4]
    states = sorted({int(r[0]) for r in rows} | {int(r[1]) for r in arcs})
    # renumber in a topological order (Kahn), the start first (fstprint prints it first)
    succ: dict[int, list[int]] = {s: [] for s in states}
    indeg = dict.fromkeys(states, 0)
    for r in arcs:
        succ[int(r[0])].append(int(r[1]))
        indeg[int(r[1])] += 1
    start_state = int(rows[0][0])
    topo = [start_state] + [s for s in states if indeg[s] == 0 and s != start_state]
    k = 0
    while k < len(topo):
        for d in succ[topo[k]]:
            indeg[d] -= 1
            if indeg[d] == 0:
                topo.append(d)
        k += 1
    index = {s: i for i, s in enumerate(topo)}
    order = sorted(range(len(arcs)), key=lambda i: index[int(arcs[i][0])])
    arcs = [arcs[i] for i in order]

    def pair(field: str) -> tuple[float, float]:
        g, a = (float(x) for x in field.split(","))
        return g, a

    g_a = [pair(r[4]) if len(r) > 4 else (0.0, 0.0) for r in arcs]
    final = np.full(len(topo), np.inf, np.float32)
    for r in finals:
        final[index[int(r[0])]] = sum(pair(r[1])) if len(r) > 1 else 0.0
    return RawLattice(
        src=np.array([index[int(r[0])] for r in arcs], np.int32),
        dst=np.array([index[int(r[1])] for r in arcs], np.int32),
        ilabel=np.array([int(r[2]) for r in arcs], np.int32),
        olabel=np.array([int(r[3]) for r in arcs], np.int32),
        graph_cost=np.array([g for g, _ in g_a], np.float32),
        acoustic_cost=np.array([a / acoustic_scale for _, a in g_a], np.float32),
        graph_arc=np.zeros(len(arcs), np.int32),
        final_cost=final,
        state_frame=np.zeros(len(topo), np.int32),
        num_frames=num_frames,
        acoustic_scale=acoustic_scale,
        reached_final=True,
        lattice_beam=lattice_beam,
    )


def same_nbest(ours, theirs, tol=1e-3) -> bool:
    if len(ours) != len(theirs):
        return False
    for (_w1, c1), (_w2, c2) in zip(ours, theirs, strict=True):
        if abs(c1 - c2) > tol * max(1.0, abs(c2)) * 10:
            return False
    cut = ours[-1][1]
    return {w for w, c in ours if c < cut - tol} == {w for w, c in theirs if c < cut - tol}


def model_scores(model, graph, feats_by_spk, decoder_config):
    """(utt_id, scores) in speaker order, fMLLR-adapted for speaker-adaptive models."""
    from asr.acoustic_model import SpeakerAdaptive

    for group in feats_by_spk:
        feats = [f for _, f in group]
        if isinstance(model, SpeakerAdaptive):
            transform = model.adapt_to_speaker(graph, feats, decoder_config)
            for utt, f in group:
                yield utt, model.adapted_scores(f, transform)
        else:
            for utt, f in group:
                yield utt, model.log_likelihoods(f)


def run_model(name: str, exp: Path, data: Path, args) -> dict:
    import kaldifst

    from asr.acoustic_model import load_acoustic_model
    from asr.confidence import frame_confidences, group_posteriors, pdf_groups, word_confidences
    from asr.data.datadir import read_kaldi_map
    from asr.decode import DecodingGraph, decode, read_ilabel_map
    from asr.decode.lattice_search import LatticeConfig, decode_lattice
    from asr.decode.viterbi import DecoderConfig
    from asr.features.pipeline import iter_features
    from asr.lang.symbols import read_symbol_table
    from asr.lattice import Scales, determinize
    from asr.parallel import group_by_speaker
    from asr.scoring import align, read_text_file

    model_dir = exp / name
    info = json.loads((model_dir / "decode_dev" / "decode.json").read_text())
    scale = float(info["best_acoustic_scale"])
    beam = float(args.beam if args.beam is not None else info["decoder"]["beam"])
    graph_dir = model_dir / "graph"
    fst = kaldifst.StdVectorFst.read(str(graph_dir / "HCLG.fst"))
    i2p = read_ilabel_map(graph_dir / "ilabel_to_pdf.int")
    graph = DecodingGraph.from_fst(graph_dir / "HCLG.fst", i2p)
    words = read_symbol_table(graph_dir / "words.txt")
    model = load_acoustic_model(model_dir)
    config = DecoderConfig(beam=beam, max_active=2**31 - 1, min_active=0, acoustic_scale=scale)
    lat_config = LatticeConfig(config, lattice_beam=args.lattice_beam)
    refs = read_text_file(data / "text")
    utt_ids = sorted(refs)[: args.limit] if args.limit else sorted(refs)
    feats = dict(
        iter_features(
            data, model.feature_pipeline, model_dir=model.model_dir, utt_ids=utt_ids,
            transform=model.transform,
        )
    )  # fmt: skip
    utt2spk = read_kaldi_map(data / "utt2spk")
    groups = [[(u, feats[u]) for u in g] for g in group_by_speaker(list(feats), utt2spk)]
    pdf_to_group = pdf_groups(
        arc_pdf=graph.pdf, arc_ilabel=graph.ilabel,
        ilabel_to_phone=read_ilabel_map(graph_dir / "ilabel_to_phone.int"),
        num_pdfs=model.num_pdfs,
    )  # fmt: skip
    t_one = t_lat = t_det = t_kaldi = 0.0
    same_best = nbest_match = n_utts = 0
    ours_oracle = kaldi_oracle = ref_words = 0
    # confidences at several posterior scales (k: lm_scale k, acoustic k * scale)
    conf_lat = {k: [] for k in POSTERIOR_SCALES}
    conf_proxy = {k: [] for k in POSTERIOR_SCALES}
    correct, fold = [], []
    for utt, scores in model_scores(model, graph, groups, config):
        ref = refs[utt].split()
        ref_ids = [words.get(w, -1) for w in ref]
        t0 = time.perf_counter()
        one = decode(graph, scores, config)
        t1 = time.perf_counter()
        raw = decode_lattice(graph, scores, lat_config)
        t2 = time.perf_counter()
        lat = determinize(raw)
        t3 = time.perf_counter()
        t_one += t1 - t0
        t_lat += t2 - t1
        t_det += t3 - t2
        k_text, k_s = kaldi_lattice(fst, i2p, scores, beam, args.lattice_beam, scale)
        t_kaldi += k_s
        n_utts += 1
        ref_words += len(ref)
        best = lat.best_path()
        ours_n = [(p.word_ids, p.cost) for p in lat.nbest(10)]
        ours_oracle += lat.oracle_errors(ref_ids)[0]
        if k_text is not None:
            k_lat = determinize(
                kaldi_word_lattice(k_text, scale, scores.shape[0], args.lattice_beam)
            )
            k_best = k_lat.best_path()
            same_best += int(k_best.word_ids == best.word_ids)
            k_n = [(p.word_ids, p.cost) for p in k_lat.nbest(10)]
            nbest_match += int(same_nbest(ours_n, k_n))
            kaldi_oracle += k_lat.oracle_errors(ref_ids)[0]
        assert best.word_ids == one.word_ids or abs(best.cost - one.total_cost) < 1e-3
        # confidences of the 1-best words
        hyp = [words.symbol(w) for w in best.word_ids]
        pairs = align(ref, hyp).pairs
        ok = [r == h for r, h in pairs if h is not None]
        for k in POSTERIOR_SCALES:
            conf_lat[k].extend(
                lat.word_confidences(best, Scales(lm_scale=k, acoustic_scale=k * scale)).tolist()
            )
            post = group_posteriors(scores, pdf_to_group, acoustic_scale=k * scale)
            frame_conf = frame_confidences(post, one.pdf_alignment, pdf_to_group)
            conf_proxy[k].extend(word_confidences(frame_conf, one.word_boundaries).tolist())
        correct.extend(ok)
        fold.extend([n_utts % 2] * len(ok))
        if args.progress:
            print(f"{name} {n_utts}/{len(utt_ids)}", file=sys.stderr, end="\r")
    correct_a, fold_a = np.asarray(correct, bool), np.asarray(fold)
    nce_lat, k_lat = cross_validated_nce(conf_lat, correct_a, fold_a)
    nce_proxy, k_proxy = cross_validated_nce(conf_proxy, correct_a, fold_a)
    conf_lat_a = np.asarray(conf_lat[1.0])
    return {
        "utterances": n_utts,
        "beam": beam,
        "lattice_beam": args.lattice_beam,
        "acoustic_scale": scale,
        "same_best_path_fraction_vs_kaldi": same_best / n_utts,
        "nbest_match_fraction_vs_kaldi": nbest_match / n_utts,
        "oracle_wer_ours": 100.0 * ours_oracle / ref_words,
        "oracle_wer_kaldi": 100.0 * kaldi_oracle / ref_words,
        "oracle_wer_abs_diff_vs_kaldi": abs(ours_oracle - kaldi_oracle) * 100.0 / ref_words,
        "one_best_search_s": t_one,
        "lattice_search_s": t_lat,
        "determinize_s": t_det,
        "kaldi_lattice_simple_decoder_s": t_kaldi,
        "lattice_time_ratio_vs_one_best": (t_lat + t_det) / t_one,
        "lattice_search_only_ratio_vs_one_best": t_lat / t_one,
        "kaldi_lattice_time_ratio_vs_our_one_best": t_kaldi / t_one,
        "nce_lattice": nce_lat,
        "nce_proxy": nce_proxy,
        "nce_lattice_uncalibrated": nce(conf_lat_a, correct_a),
        "nce_proxy_uncalibrated": nce(np.asarray(conf_proxy[1.0]), correct_a),
        "posterior_scale_chosen_lattice": k_lat,
        "posterior_scale_chosen_proxy": k_proxy,
        "mean_confidence_correct_lattice": float(conf_lat_a[correct_a].mean()),
        "mean_confidence_wrong_lattice": float(conf_lat_a[~correct_a].mean())
        if (~correct_a).any()
        else None,
        "hyp_words": int(correct_a.size),
        "hyp_words_correct": int(correct_a.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-dir", default="exp/an4")
    parser.add_argument("--data-dir", default="data/an4/dev")
    parser.add_argument("--models", default="tri3,dnn")
    parser.add_argument("--beam", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--lattice-beam", type=float, default=6.0)
    parser.add_argument("--limit", type=int, default=0, help="first N utterances only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    exp, data = Path(args.exp_dir), Path(args.data_dir)
    models = [m for m in args.models.split(",") if m]
    missing = [m for m in models if not (exp / m / "decode_dev" / "decode.json").is_file()]
    if missing or not (data / "text").is_file():
        print(
            f"lattices.py: need {data}/text and {', '.join(str(exp / m / 'decode_dev') for m in missing)}:"
            " run recipes/an4/run.sh --stop-stage 14 first (tri3: stage 12, dnn: stage 14)",
            file=sys.stderr,
        )
        return 2
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    per_model = {m: run_model(m, exp, data, args) for m in models}
    total = sum(r["utterances"] for r in per_model.values())

    def weighted(key):
        return sum(r[key] * r["utterances"] for r in per_model.values()) / total

    out = {
        "same_best_path_fraction_vs_kaldi": weighted("same_best_path_fraction_vs_kaldi"),
        "nbest_match_fraction_vs_kaldi": weighted("nbest_match_fraction_vs_kaldi"),
        "oracle_wer_abs_diff_vs_kaldi": max(
            r["oracle_wer_abs_diff_vs_kaldi"] for r in per_model.values()
        ),
        "lattice_time_ratio_vs_one_best": max(
            r["lattice_time_ratio_vs_one_best"] for r in per_model.values()
        ),
        "nce_lattice": min(r["nce_lattice"] for r in per_model.values()),
        "nce_proxy": min(r["nce_proxy"] for r in per_model.values()),
        "models": per_model,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, r in per_model.items():
            print(
                f"{name}: "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
