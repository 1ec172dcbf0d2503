"""Benchmark: log-likelihoods of all pdfs' diagonal GMMs, ours vs scikit-learn, one thread.

Ours: ``DiagGmmSet.log_likelihoods`` (one matrix product for all frames x Gaussians, then a
per-pdf logsumexp). Peer: ``sklearn.mixture.GaussianMixture(covariance_type="diag")
.score_samples``, looped over pdfs (one mixture per pdf), the obvious way to get the same
``(num_frames, num_pdfs)`` matrix. Both run on one thread; the best of ``--repeats`` runs
is reported, with the largest absolute difference between the two matrices.

Usage::

    .venv/bin/python benchmarks/gmm.py --json
    .venv/bin/python benchmarks/gmm.py --frames 1000 --pdfs 2000 --gauss 8 --dim 39 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import sklearn
import torch
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from asr.gmm import DiagGmmSet


def build_models(num_pdfs: int, gauss_per_pdf: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    num_gauss = num_pdfs * gauss_per_pdf
    means = rng.normal(size=(num_gauss, dim)) * 2.0
    variances = rng.uniform(0.3, 2.0, size=(num_gauss, dim))
    weights = rng.uniform(0.1, 1.0, size=(num_pdfs, gauss_per_pdf))
    weights = (weights / weights.sum(1, keepdims=True)).reshape(-1)
    ours = DiagGmmSet(
        means=torch.from_numpy(means),
        inv_vars=torch.from_numpy(1.0 / variances),
        log_weights=torch.from_numpy(np.log(weights)),
        pdf_offsets=torch.arange(0, num_gauss + 1, gauss_per_pdf),
    )
    peers = []
    for p in range(num_pdfs):
        rows = slice(p * gauss_per_pdf, (p + 1) * gauss_per_pdf)
        mix = GaussianMixture(n_components=gauss_per_pdf, covariance_type="diag")
        mix.weights_ = weights[rows]
        mix.means_ = means[rows]
        mix.covariances_ = variances[rows]
        mix.precisions_ = 1.0 / variances[rows]
        mix.precisions_cholesky_ = 1.0 / np.sqrt(variances[rows])
        peers.append(mix)
    return ours, peers


def best_time(fn, repeats: int):
    result, best = None, float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--pdfs", type=int, default=2000)
    parser.add_argument("--gauss", type=int, default=8, help="Gaussians per pdf")
    parser.add_argument("--dim", type=int, default=39)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    torch.set_num_threads(1)
    ours, peers = build_models(args.pdfs, args.gauss, args.dim, args.seed)
    feats = np.random.default_rng(args.seed + 1).normal(size=(args.frames, args.dim)) * 2.0
    feats32 = torch.from_numpy(feats).float()  # features as the pipeline hands them over
    with threadpool_limits(limits=1):
        ours.log_likelihoods(feats32)  # warm-up
        ours_ll, ours_s = best_time(lambda: ours.log_likelihoods(feats32), args.repeats)
        peer_ll, peer_s = best_time(
            lambda: np.stack([m.score_samples(feats) for m in peers], axis=1), args.repeats
        )
    max_abs_diff = float(np.abs(ours_ll.numpy().astype(np.float64) - peer_ll).max())
    report = {
        "benchmark": "gmm_log_likelihoods",
        "num_frames": args.frames,
        "num_pdfs": args.pdfs,
        "gauss_per_pdf": args.gauss,
        "dim": args.dim,
        "threads": 1,
        "repeats": args.repeats,
        "ours_s": round(ours_s, 5),
        "sklearn_s": round(peer_s, 5),
        "speedup": round(peer_s / ours_s, 2),
        "max_abs_diff": max_abs_diff,
        "max_abs_value": float(np.abs(peer_ll).max()),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "machine": platform.machine(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        shape = f"{args.frames} frames x {args.pdfs} pdfs x {args.gauss} Gaussians, dim {args.dim}"
        print(f"log-likelihoods for {shape}, 1 thread, best of {args.repeats}")
        print(f"  ours (DiagGmmSet)          {ours_s * 1e3:9.1f} ms")
        print(f"  sklearn score_samples x{args.pdfs:<5d} {peer_s * 1e3:9.1f} ms")
        print(f"  speedup {peer_s / ours_s:.1f}x, max |difference| {max_abs_diff:.2e}")


if __name__ == "__main__":
    main()
