"""Decoding a data dir through lattices (:func:`asr.batch.decode_dir.decode_data_dir`
with ``lattice_beam``): one lattice search per utterance, the best path at every grid
point (acoustic scale x word-insertion penalty), optional LM rescoring, and the lattice
files (``lat.txt.gz``, ``oracle_wer``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.decode.search_graph import DecodingGraph
from asr.decode.traceback import DecodeResult
from asr.fileio import atomic_write, atomic_write_text

__all__ = ["LatticeMode", "path_result", "write_lattices"]


@dataclass(frozen=True)
class LatticeMode:
    """Decode once into lattices, then take the best path at each grid point.

    ``config``: the lattice search (its decoder's acoustic scale is the first pass's);
    ``grid``: ``(acoustic_scale, word_ins_penalty)`` points, scored as Kaldi's
    ``score.sh`` scores LMWT x word-insertion-penalty on its lattices.
    """

    config: Any  # asr.decode.lattice_search.LatticeConfig
    grid: tuple[tuple[float, float], ...]
    ilabel_to_pdf: Any  # np.ndarray, the graph's
    rescore: tuple[str, str, int] | None = None  # (new LM ARPA, old G.fst, its back-off label)

    def results(self, graph: DecodingGraph, scores, word_symbols) -> tuple[list, Any]:
        """(one DecodeResult per grid point, the first-pass word lattice) of one utterance;
        with ``rescore``, the first pass's grid then the rescored lattice's."""
        from asr.decode.lattice_search import decode_lattice
        from asr.lattice import determinize

        lat = determinize(decode_lattice(graph, scores, self.config))
        out = self._grid_results(lat, word_symbols)
        if self.rescore is not None:
            from asr.lattice.rescore import rescore

            old_g, new_lm = _rescoring_models(self.rescore)
            rescored = rescore(lat, old_g=old_g, new_lm=new_lm, word_symbols=word_symbols)
            out += self._grid_results(rescored, word_symbols)
        return out, lat

    def _grid_results(self, lat, word_symbols) -> list[DecodeResult]:
        from asr.lattice import Scales

        out = []
        for scale, wip in self.grid:
            path = lat.best_path(Scales(acoustic_scale=scale, word_ins_penalty=wip))
            out.append(path_result(path, lat, scale, word_symbols, self.ilabel_to_pdf))
        return out


_RESCORING_MODELS: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _rescoring_models(key: tuple[str, str, int]) -> tuple[Any, Any]:
    """(old G, new LM) of a rescoring, loaded once per process."""
    if key not in _RESCORING_MODELS:
        from asr.lang.arpa import read_arpa
        from asr.lattice.rescore import GrammarFst

        arpa, g_fst, backoff = key
        _RESCORING_MODELS[key] = (GrammarFst(g_fst, backoff_label=backoff), read_arpa(arpa))
    return _RESCORING_MODELS[key]


def path_result(path, lat, scale: float, word_symbols, ilabel_to_pdf) -> DecodeResult:
    """A word-lattice path as the 1-best search's :class:`DecodeResult` (costs scaled by
    ``scale``, as the search's)."""
    from asr.decode.traceback import lookup_words

    alignment = path.alignment.astype(np.int32)
    return DecodeResult(
        word_ids=path.word_ids,
        words=lookup_words(path.word_ids, word_symbols) if word_symbols is not None else None,
        alignment=alignment,
        pdf_alignment=np.asarray(ilabel_to_pdf, dtype=np.int32)[alignment],
        word_boundaries=path.word_spans.astype(np.int32).reshape(-1, 2),
        total_cost=path.graph_cost + scale * path.acoustic_cost,
        acoustic_cost=scale * path.acoustic_cost,
        graph_cost=path.graph_cost,
        reached_final=lat.reached_final,
        num_frames=lat.num_frames,
    )


def write_lattices(out_dir: Path, utt_ids, lat_by_utt, refs, words) -> float | None:
    """``lat.txt.gz`` (CompactLattice text) and, with references, ``oracle_wer``: the
    fewest errors of any lattice path per utterance (words outside the graph's
    vocabulary can never match). Returns the oracle %WER (None without references)."""
    import gzip
    import io

    from asr.lattice.kaldi_io import write_word_lattice

    text = io.StringIO()
    for u in utt_ids:
        write_word_lattice(text, u, lat_by_utt[u])
    with atomic_write(out_dir / "lat.txt.gz", mode="wb") as f:
        f.write(gzip.compress(text.getvalue().encode("utf-8"), mtime=0))
    if refs is None:
        return None
    errors = num_words = 0
    for u in utt_ids:
        ref = refs.get(u, "").split()
        ref_ids = [words.get(w, -1) if words is not None else -1 for w in ref]
        errors += lat_by_utt[u].oracle_errors(ref_ids)[0]
        num_words += len(ref)
    wer = 100.0 * errors / max(num_words, 1)
    atomic_write_text(
        out_dir / "oracle_wer", f"%WER {wer:.2f} [ {errors} / {num_words} ] lattice oracle\n"
    )
    return wer
