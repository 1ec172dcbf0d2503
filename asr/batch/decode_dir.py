"""Decode a data directory with an acoustic model and a graph, and score it (Kaldi's
``steps/decode.sh`` + ``local/score.sh``).

:func:`decode_data_dir` loads any model dir (:func:`asr.acoustic_model.load_acoustic_model`),
checks that the graph was built for the model's pdfs, makes the model's
features from ``DATA/feats.scp`` (:mod:`asr.features.pipeline`), scores them,
runs the Viterbi beam search (:func:`asr.decode.decode`) on every utterance (the
utterances of a speaker together, in multiple passes, for a
:class:`asr.acoustic_model.SpeakerAdaptive` model: :func:`asr.gmm.sat.decode_speaker`), in
``num_jobs`` jobs split by speaker (:mod:`asr.parallel`) on any
:class:`concurrent.futures.Executor`, and writes into ``out_dir`` (atomically):

* ``hyp.txt`` — Kaldi ``text`` of the hypotheses; ``ali.txt`` — transition-ids per frame;
* ``word_boundaries.txt`` — ``utt_id word start_frame end_frame`` per word;
* ``costs.txt`` — ``utt_id total graph acoustic num_frames reached_final``;
* with ``DATA/text``: ``wer`` (``%WER``/``%SER``/``Scored`` lines of :mod:`asr.scoring`)
  and ``per_utt`` (aligned ref/hyp per utterance);
* ``decode.json`` — the summary (scales, WERs, frames, times, RTF).

Kaldi scores a lattice at several LM weights and keeps the best on the set; we
decode at several acoustic scales instead (LM weight = 1 / acoustic scale):
with ``acoustic_scales=(0.05, 0.067, 0.083, 0.1)``, every scale writes
``hyp_<scale>.txt`` and ``wer_<scale>``, and ``hyp.txt``/``ali.txt``/``wer``/``per_utt``
are those of the scale with the fewest errors (the first on ties), named in
``best_wer`` (as Kaldi's ``utils/best_wer.sh`` prints it). Choose the scale on
dev and pass it as the fixed ``config.acoustic_scale`` for test.

>>> from asr.batch.decode_dir import decode_data_dir  # doctest: +SKIP
>>> summary = decode_data_dir("exp/yesno/mono", "exp/yesno/mono/graph", "data/yesno/test",
...                           "exp/yesno/mono/decode_test")  # doctest: +SKIP
>>> summary.summary_line  # doctest: +SKIP
'%WER 0.00 [ 0 / 232, 0 ins, 0 del, 0 sub ]'
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asr.acoustic_model import AcousticModel, SpeakerAdaptive, load_acoustic_model
from asr.batch.lattice_decode import LatticeMode, write_lattices
from asr.data import read_kaldi_map
from asr.decode.search_graph import DecodingGraph, resolve_graph_dir
from asr.decode.traceback import DecodeResult
from asr.decode.viterbi import DecoderConfig, decode
from asr.errors import DecodeError, GraphError
from asr.fileio import atomic_write, atomic_write_text
from asr.parallel import group_by_speaker, job_executor, single_torch_thread, split_by_speaker

__all__ = [
    "ArchiveDecodeSummary",
    "DecodeSummary",
    "decode_data_dir",
    "decode_log_likes_archive",
    "format_scale",
    "write_decode_outputs",
]


@dataclass(frozen=True)
class DecodeSummary:
    """What :func:`decode_data_dir` did.

    ``acoustic_scale``: the scale of ``hyp.txt`` (the best one when several were
    tried); ``wer_by_scale``: ``{scale: %WER}`` (empty without ``DATA/text``);
    ``audio_seconds``: frames x frame shift; ``wall_seconds``: the whole run;
    ``likelihood_seconds``/``search_seconds``: summed over jobs.
    """

    out_dir: Path
    num_utterances: int
    num_frames: int
    num_not_final: int
    acoustic_scale: float
    acoustic_scales: tuple[float, ...]
    wer: float | None
    summary_line: str | None
    wer_by_scale: dict[float, float] = field(default_factory=dict)
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    likelihood_seconds: float = 0.0
    search_seconds: float = 0.0

    @property
    def rtf(self) -> float:
        """Real-time factor of the whole run (wall time / audio time)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds > 0 else float("nan")


@dataclass(frozen=True)
class _JobResult:
    utt_ids: list[str]
    results: list[list[DecodeResult]]  # [utterance][scale]
    likelihood_seconds: float
    search_seconds: float
    lattices: list[Any] | None = None  # [utterance] WordLattice, in lattice mode


def format_scale(scale: float) -> str:
    """A scale as used in file names: ``0.0833 -> '0.0833'``, ``0.1 -> '0.1'``."""
    return f"{scale:g}"


def _load_words(path: Path | None):
    if path is None:
        return None
    from asr.lang.symbols import read_symbol_table

    return read_symbol_table(path)


def _decode_utterances(
    model: AcousticModel,
    graph: DecodingGraph,
    word_symbols,
    *,
    data_dir: Path,
    utt_ids: Sequence[str],
    configs: Sequence[DecoderConfig],
    progress: Callable[[int], None] | None,
    lattice: LatticeMode | None = None,
) -> _JobResult:
    from asr.features.pipeline import iter_features

    results: list[list[DecodeResult]] = []
    like_s = search_s = 0.0
    features = iter_features(
        data_dir,
        model.feature_pipeline,
        model_dir=model.model_dir,
        utt_ids=utt_ids,
        transform=model.transform,
    )
    if isinstance(model, SpeakerAdaptive):  # a speaker at a time
        return _decode_speakers(
            model, graph, word_symbols, features, data_dir=data_dir, utt_ids=utt_ids,
            configs=configs, progress=progress, lattice=lattice,
        )  # fmt: skip
    lattices = [] if lattice is not None else None
    for utt_id, feats in features:
        t0 = time.perf_counter()
        log_likes = model.log_likelihoods(feats)
        t1 = time.perf_counter()
        try:
            if lattice is not None:
                per_scale, lat = lattice.results(graph, log_likes, word_symbols)
                lattices.append(lat)
            else:
                per_scale = [
                    decode(graph, log_likes, c, word_symbols=word_symbols) for c in configs
                ]
        except DecodeError as err:
            raise DecodeError(f"utterance {utt_id}: {err}") from None
        search_s += time.perf_counter() - t1
        like_s += t1 - t0
        results.append(per_scale)
        if progress is not None:
            progress(1)
    return _JobResult(list(utt_ids), results, like_s, search_s, lattices)


def _decode_speakers(
    model, graph, word_symbols, features, *, data_dir, utt_ids, configs, progress, lattice=None
) -> _JobResult:
    """Speaker-adaptive models (:func:`asr.gmm.sat.decode_speaker`): the utterances of each
    speaker (``DATA/utt2spk``) decoded together, in multiple passes."""
    from asr.gmm.sat import decode_speaker

    utt2spk = read_kaldi_map(data_dir / "utt2spk") if (data_dir / "utt2spk").is_file() else {}
    feats_by_utt = dict(features)
    by_speaker = [
        [(utt_id, feats_by_utt[utt_id]) for utt_id in group]
        for group in group_by_speaker(list(feats_by_utt), utt2spk)
    ]
    found: dict[str, list[DecodeResult]] = {}
    found_lat: dict[str, Any] = {}
    t0 = time.perf_counter()
    for spk_utts in by_speaker:
        feats = [f for _, f in spk_utts]
        try:
            if lattice is not None:  # adapt with the first pass's search, then lattices
                transform = model.adapt_to_speaker(graph, feats, lattice.config.decoder)
                for utt_id, f in spk_utts:
                    scores = model.adapted_scores(f, transform)
                    found[utt_id], found_lat[utt_id] = lattice.results(graph, scores, word_symbols)
            else:
                per_utt, _ = decode_speaker(model, graph, feats, configs, word_symbols=word_symbols)
                found.update(zip((u for u, _ in spk_utts), per_utt, strict=True))
        except DecodeError as err:
            raise DecodeError(f"speaker of {spk_utts[0][0]}: {err}") from None
        if progress is not None:
            progress(len(spk_utts))
    # scoring and search interleave across the passes: their sum is reported as search time
    lattices = [found_lat[u] for u in utt_ids] if lattice is not None else None
    return _JobResult(
        list(utt_ids), [found[u] for u in utt_ids], 0.0, time.perf_counter() - t0, lattices
    )


def _decode_job(spec: dict[str, Any]) -> _JobResult:
    """One job in a worker: load model and graph, decode ``spec['utt_ids']``."""
    model = load_acoustic_model(spec["model_dir"], device=spec["device"])
    fst, ilabel_map, words = resolve_graph_dir(spec["graph_dir"])
    graph = DecodingGraph.from_fst(fst, ilabel_map)
    return _decode_utterances(
        model,
        graph,
        _load_words(words),
        data_dir=Path(spec["data_dir"]),
        utt_ids=spec["utt_ids"],
        configs=spec["configs"],
        progress=None,
        lattice=spec.get("lattice"),
    )


def write_decode_outputs(
    out_dir: Path,
    utt_ids: list[str],
    results: list[DecodeResult],
    *,
    suffix: str,
    write_alignment: bool,
    write_pdf_alignment: bool = False,
) -> dict[str, str]:
    """Write ``hyp{suffix}.txt`` and, with ``write_alignment``, ``ali``, ``word_boundaries``
    and ``costs`` (see the module docstring; ``pdf_ali``, the pdf of each frame, with
    ``write_pdf_alignment``) of ``results`` (one per utterance); returns the hypotheses
    ``{utt_id: text}``."""
    hyps = {u: r.text for u, r in zip(utt_ids, results, strict=True)}
    atomic_write_text(
        out_dir / f"hyp{suffix}.txt", "".join(f"{u} {t}".rstrip() + "\n" for u, t in hyps.items())
    )
    if write_alignment:
        with atomic_write(out_dir / f"ali{suffix}.txt") as f:
            for u, r in zip(utt_ids, results, strict=True):
                f.write(f"{u} {' '.join(map(str, r.alignment.tolist()))}\n")
        if write_pdf_alignment:
            with atomic_write(out_dir / f"pdf_ali{suffix}.txt") as f:
                for u, r in zip(utt_ids, results, strict=True):
                    f.write(f"{u} {' '.join(map(str, r.pdf_alignment.tolist()))}\n")
        with atomic_write(out_dir / f"word_boundaries{suffix}.txt") as f:
            for u, r in zip(utt_ids, results, strict=True):
                labels = r.words if r.words is not None else tuple(map(str, r.word_ids))
                for word, (first, end) in zip(labels, r.word_boundaries.tolist(), strict=True):
                    f.write(f"{u} {word} {first} {end}\n")
        with atomic_write(out_dir / f"costs{suffix}.txt") as f:
            for u, r in zip(utt_ids, results, strict=True):
                f.write(
                    f"{u} {r.total_cost:.4f} {r.graph_cost:.4f} {r.acoustic_cost:.4f} "
                    f"{r.num_frames} {int(r.reached_final)}\n"
                )
    return hyps


def decode_data_dir(
    model_dir: str | os.PathLike,
    graph_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: DecoderConfig | None = None,
    acoustic_scales: Sequence[float] | None = None,
    num_jobs: int = 1,
    executor: cf.Executor | None = None,
    progress: Callable[[int], None] | None = None,
    device: str = "cpu",
    write_alignment: bool = True,
    lattice_beam: float | None = None,
    word_ins_penalties: Sequence[float] = (0.0,),
    rescore_lm: str | os.PathLike | None = None,
    old_g: str | os.PathLike | None = None,
) -> DecodeSummary:
    """Decode every utterance of ``data_dir``'s ``feats.scp``; see the module docstring.

    ``lattice_beam``: decode once into lattices (pruned with this beam; written to
    ``lat.txt.gz`` as Kaldi ``CompactLattice`` text, acoustic costs unscaled) at the
    geometric mean of the scales, and take each ``(acoustic scale, word-insertion
    penalty)`` grid point's best path from them (Kaldi's ``score.sh``) instead of
    searching once per scale; with ``DATA/text`` also the lattice oracle WER (``oracle_wer``).
    ``rescore_lm`` (an ARPA file; needs ``old_g``, the decoding ``G.fst``): each lattice is
    rescored with it (:func:`asr.lattice.rescore.rescore`) and the grid is scored on the
    rescored lattices; the first pass's best WER goes to ``wer_first_pass``.

    ``config``: beam search options (default ``DecoderConfig(beam=13.0)``); its
    ``acoustic_scale`` is used unless ``acoustic_scales`` lists several to try
    (needs ``DATA/text`` to choose). ``num_jobs``: Kaldi's ``--nj`` (speakers kept
    whole); ``executor``: where jobs run (default: a local process pool when
    ``num_jobs > 1``, this process otherwise). ``progress``: called with the number
    of utterances just finished. Raises :class:`GraphError` when graph and model
    disagree on ``num_pdfs``.
    """
    from asr.graph.mkgraph import GraphInfo
    from asr.recognizer import resolve_device

    start = time.perf_counter()
    model_dir, graph_dir = Path(model_dir), Path(graph_dir)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    config = config if config is not None else DecoderConfig(beam=13.0)
    scales = (
        tuple(float(s) for s in acoustic_scales) if acoustic_scales else (config.acoustic_scale,)
    )
    if len(set(scales)) != len(scales):
        raise DecodeError(f"acoustic scales repeat: {scales}")
    configs = [dataclasses.replace(config, acoustic_scale=s) for s in scales]
    wips = tuple(float(p) for p in word_ins_penalties) or (0.0,)
    if lattice_beam is None and wips != (0.0,):
        raise DecodeError("word-insertion penalties need lattices (lattice_beam)")
    grid = [(s, p) for s in scales for p in wips]
    if num_jobs < 1:
        raise DecodeError(f"num_jobs must be >= 1, got {num_jobs}")

    device = resolve_device(device)  # a one-line error for cuda without CUDA
    model = load_acoustic_model(model_dir, device=device)
    info = GraphInfo.read(graph_dir)
    if info.num_pdfs != model.num_pdfs:
        raise GraphError(
            f"{graph_dir}: the graph was built for {info.num_pdfs} pdfs but the model "
            f"{model_dir} has {model.num_pdfs}; rebuild it (asr graph mkgraph LANG {model_dir} ...)"
        )
    fst, ilabel_map, words_path = resolve_graph_dir(graph_dir)
    text_path = data_dir / "text"
    refs = None
    if text_path.is_file():
        from asr.scoring import read_text_file

        refs = read_text_file(text_path)
    elif len(grid) > 1:
        raise DecodeError(f"{text_path}: not found; choosing among acoustic scales needs it")
    feats_scp = data_dir / "feats.scp"
    if not feats_scp.is_file():
        raise DecodeError(f"{feats_scp}: not found; run `asr features compute {data_dir}` first")
    utt_ids = list(read_kaldi_map(feats_scp))
    if not utt_ids:
        raise DecodeError(f"{feats_scp}: no utterances")

    if rescore_lm is not None and (lattice_beam is None or old_g is None):
        raise DecodeError("rescoring (rescore_lm) needs lattices (lattice_beam) and the old G.fst")
    rescore_key = None
    if rescore_lm is not None:
        from asr.lang.symbols import read_symbol_table

        for path in (Path(rescore_lm), Path(old_g)):
            if not path.is_file():
                raise DecodeError(f"{path}: not found")
        table = read_symbol_table(words_path)
        if "#0" not in table:
            raise DecodeError(f"{words_path}: no #0 symbol: cannot tell G's back-off arcs")
        rescore_key = (str(rescore_lm), str(old_g), int(table["#0"]))
    lattice = None
    if lattice_beam is not None:
        from asr.decode.lattice_search import LatticeConfig
        from asr.decode.search_graph import read_ilabel_map

        search_scale = float(np.exp(np.mean(np.log(scales))))
        lattice = LatticeMode(
            LatticeConfig(
                dataclasses.replace(config, acoustic_scale=search_scale), float(lattice_beam)
            ),
            tuple(grid),
            read_ilabel_map(ilabel_map),
            rescore_key,
        )
    utt2spk_path = data_dir / "utt2spk"
    utt2spk = read_kaldi_map(utt2spk_path) if utt2spk_path.is_file() else {}
    splits = split_by_speaker(sorted(utt_ids), utt2spk, num_jobs)
    with job_executor(len(splits), executor) as pool:
        if pool is None:
            graph = DecodingGraph.from_fst(fst, ilabel_map)
            words = _load_words(words_path)
            # One torch thread, like the pool's workers: per-utterance calls are too small for
            # intra-op threads, which mostly spin (AN4 GMM log-likelihoods: ~20x the CPU time).
            with single_torch_thread():
                job_results = [
                    _decode_utterances(
                        model,
                        graph,
                        words,
                        data_dir=data_dir,
                        utt_ids=utt_ids,
                        configs=configs,
                        progress=progress,
                        lattice=lattice,
                    )  # fmt: skip
                ]
        else:
            specs = [
                {
                    "model_dir": str(model_dir),
                    "graph_dir": str(graph_dir),
                    "data_dir": str(data_dir),
                    "utt_ids": list(utts),
                    "configs": configs,
                    "device": device,
                    "lattice": lattice,
                }
                for utts in splits
            ]
            futures = [pool.submit(_decode_job, spec) for spec in specs]
            for future in cf.as_completed(futures):
                if progress is not None:
                    progress(len(future.result().utt_ids))
            job_results = [f.result() for f in futures]

    by_utt = {}
    lat_by_utt = {}
    for job in job_results:
        by_utt.update(zip(job.utt_ids, job.results, strict=True))
        if job.lattices is not None:
            lat_by_utt.update(zip(job.utt_ids, job.lattices, strict=True))
    per_scale = [[by_utt[u][i] for u in utt_ids] for i in range(len(by_utt[utt_ids[0]]))]
    if lattice is None:
        grid = [(s, 0.0) for s in scales]
    first_pass = None
    if rescore_key is not None:  # the first pass's grid, then the rescored one's
        first_pass, per_scale = per_scale[: len(grid)], per_scale[len(grid) :]

    out_dir.mkdir(parents=True, exist_ok=True)
    oracle = (
        write_lattices(out_dir, utt_ids, lat_by_utt, refs, _load_words(words_path))
        if lattice
        else None
    )
    first_pass_wer = None
    if first_pass is not None and refs is not None:
        from asr.scoring import score

        first = [
            score(refs, {u: r.text for u, r in zip(utt_ids, res, strict=True)})
            for res in first_pass
        ]
        best_first = min(first, key=lambda r: r.errors)
        first_pass_wer = best_first.wer
        atomic_write_text(out_dir / "wer_first_pass", best_first.summary() + "\n")
    scored: list[Any] = []
    for (scale, wip), results in zip(grid, per_scale, strict=True):
        if len(grid) == 1:
            break
        tag = format_scale(scale) if wips == (0.0,) else f"{format_scale(scale)}_{wip:g}"
        hyps = write_decode_outputs(
            out_dir, utt_ids, results, suffix=f"_{tag}", write_alignment=False
        )
        from asr.scoring import score

        result = score(refs, hyps)
        atomic_write_text(out_dir / f"wer_{tag}", result.summary() + "\n")
        scored.append(result)
    best = min(range(len(grid)), key=lambda i: scored[i].errors) if scored else 0
    hyps = write_decode_outputs(
        out_dir, utt_ids, per_scale[best], suffix="", write_alignment=write_alignment
    )
    summary_line = wer = None
    wer_by_scale: dict[float, float] = {}
    if refs is not None:
        from asr.scoring import score

        result = scored[best] if scored else score(refs, hyps)
        atomic_write_text(out_dir / "wer", result.summary() + "\n")
        result.write_per_utt(out_dir / "per_utt")
        summary_line, wer = result.summary_line(), result.wer
        if scored:  # per scale: its best penalty's WER
            for (s, _), r in zip(grid, scored, strict=True):
                wer_by_scale[s] = min(wer_by_scale.get(s, np.inf), r.wer)
        else:
            wer_by_scale = {scales[0]: wer}
        if scored:
            scale_b, wip_b = grid[best]
            tag = format_scale(scale_b) if wips == (0.0,) else f"{format_scale(scale_b)}_{wip_b:g}"
            atomic_write_text(out_dir / "best_wer", f"{summary_line} {out_dir / ('wer_' + tag)}\n")

    frame_shift_ms = float((model.feature_pipeline.base or {}).get("frame_shift_ms", 10.0))
    num_frames = sum(r.num_frames for r in per_scale[best])
    summary = DecodeSummary(
        out_dir=out_dir,
        num_utterances=len(utt_ids),
        num_frames=num_frames,
        num_not_final=sum(not r.reached_final for r in per_scale[best]),
        acoustic_scale=grid[best][0],
        acoustic_scales=scales,
        wer=wer,
        summary_line=summary_line,
        wer_by_scale=wer_by_scale,
        audio_seconds=num_frames * frame_shift_ms * model.subsampling / 1000.0,
        wall_seconds=time.perf_counter() - start,
        likelihood_seconds=sum(j.likelihood_seconds for j in job_results),
        search_seconds=sum(j.search_seconds for j in job_results),
    )
    record = {
        "model_dir": str(model_dir),
        "graph_dir": str(graph_dir),
        "data_dir": str(data_dir),
        "decoder": dataclasses.asdict(config) | {"acoustic_scale": grid[best][0]},
        "acoustic_scales": list(scales),
        "best_acoustic_scale": grid[best][0],
        "word_ins_penalties": list(wips),
        "best_word_ins_penalty": grid[best][1],
        "lattice_beam": lattice_beam,
        "search_acoustic_scale": lattice.config.decoder.acoustic_scale if lattice else None,
        "oracle_wer": oracle,
        "rescore_lm": str(rescore_lm) if rescore_lm is not None else None,
        "first_pass_wer": first_pass_wer,
        "wer_by_scale": {format_scale(s): w for s, w in wer_by_scale.items()},
        "wer": wer,
        "num_utterances": summary.num_utterances,
        "num_frames": num_frames,
        "num_not_final": summary.num_not_final,
        "num_jobs": len(job_results),
        "audio_seconds": round(summary.audio_seconds, 3),
        "wall_seconds": round(summary.wall_seconds, 3),
        "likelihood_seconds": round(summary.likelihood_seconds, 3),
        "search_seconds": round(summary.search_seconds, 3),
        "rtf": round(summary.rtf, 5),
    }
    atomic_write_text(out_dir / "decode.json", json.dumps(record, indent=2) + "\n")
    return summary


@dataclass(frozen=True)
class ArchiveDecodeSummary:
    """What :func:`decode_log_likes_archive` did: ``results`` ``[(utt_id, DecodeResult)]`` in
    archive order; ``score``: the :class:`asr.scoring` result when references were given."""

    results: list[tuple[str, DecodeResult]]
    score: Any = None

    @property
    def num_not_final(self) -> int:
        return sum(not r.reached_final for _, r in self.results)


def decode_log_likes_archive(
    graph: DecodingGraph,
    ark_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: DecoderConfig,
    word_symbols=None,
    refs: dict[str, str] | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> ArchiveDecodeSummary:
    """Decode a Kaldi ark of ``(num_frames, num_pdfs)`` log-likelihood matrices over ``graph``
    and write ``hyp.txt``, ``ali.txt``, ``pdf_ali.txt``, ``word_boundaries.txt``,
    ``costs.txt`` (and ``wer`` with ``refs``) into ``out_dir``. On ``device`` ``"cpu"`` the
    compiled search decodes an utterance at a time, elsewhere the batched torch search
    (:class:`asr.decode.batched.BatchedDecoder`) ``batch_size`` utterances at a time."""

    from asr.features.io import read_matrices_ark
    from asr.recognizer import resolve_device

    batcher = None
    device = resolve_device(device)
    if device != "cpu":
        from asr.decode.batched import BatchedDecoder

        batcher = BatchedDecoder(graph, config, device=device)
    results: list[tuple[str, DecodeResult]] = []
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if pending:
            batch = batcher.decode([m for _, m in pending], word_symbols=word_symbols)
            results.extend(zip([u for u, _ in pending], batch, strict=True))
            pending.clear()

    for utt_id, mat in read_matrices_ark(ark_path):
        try:
            if batcher is not None:
                pending.append((utt_id, mat))
                if len(pending) >= batch_size:
                    flush()
            else:
                results.append((utt_id, decode(graph, mat, config, word_symbols=word_symbols)))
        except DecodeError as err:
            raise DecodeError(f"utterance {utt_id}: {err}") from None
        if progress is not None:
            progress(1)
    flush()
    if not results:
        raise DecodeError(f"{ark_path}: no utterances in the archive")
    out_dir = Path(out_dir)
    hyps = write_decode_outputs(
        out_dir, [u for u, _ in results], [r for _, r in results], suffix="",
        write_alignment=True, write_pdf_alignment=True,
    )  # fmt: skip
    scored = None
    if refs is not None:
        from asr.scoring import score

        scored = score(refs, hyps)
        atomic_write_text(out_dir / "wer", scored.summary() + "\n")
    return ArchiveDecodeSummary(results=results, score=scored)
