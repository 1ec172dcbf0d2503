"""Plots (matplotlib, Agg backend, PNG): an utterance's alignment and a WER-per-system chart.

* :func:`plot_alignment`: waveform, spectrogram, and the decoded best path's phone and
  word segments (with their times) for one utterance, from a bundle (:class:`Recognizer`).
* :func:`plot_results`: a bar chart of %WER per system from a markdown table (a recipe's
  ``RESULTS.md``): the first column names the system, the first column whose header
  contains "WER" gives the number (the first number in the cell, e.g. ``%WER 3.33 [...]``).

>>> from asr.plot import parse_results_table
>>> parse_results_table("| system | %WER |\\n|---|---|\\n| mono | 3.33 |\\n| tri1 | %WER 2.5 [ 6 / 240 ] |\\n")
[('mono', 3.33), ('tri1', 2.5)]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from asr.errors import PlotError
from asr.fileio import atomic_write

__all__ = ["parse_results_table", "plot_alignment", "plot_results"]

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: str | os.PathLike) -> Path:
    out_png = Path(out_png)
    with atomic_write(out_png, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return out_png


def _segments(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Run-length segments ``(label, start_frame, end_frame)`` of a per-frame label array."""
    if labels.size == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [labels.size]])
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def plot_alignment(recognizer, audio, out_png: str | os.PathLike, *, title: str | None = None):
    """Decode ``audio`` (a path or samples at the model's rate) and draw waveform,
    spectrogram, phone and word segments; returns the PNG path."""
    from asr.decode import decode
    from asr.features.extractors import compute_features
    from asr.lang.symbols import read_symbol_table

    samples = recognizer.load_audio(audio)
    rate = recognizer.sampling_rate
    raw = compute_features(samples, sampling_rate=rate, config=recognizer.front_end)
    log_likes = recognizer.acoustic_model.log_likelihoods(recognizer.acoustic_model.features(raw))
    best = decode(
        recognizer.graph, log_likes, recognizer.decoder_config,
        word_symbols=recognizer.word_symbols, ilabel_to_phone=recognizer.ilabel_to_phone,
        silence_phones=recognizer.silence_phones,
    )  # fmt: skip
    phones_path = recognizer.bundle.graph_dir / "phones.txt"
    phone_names = read_symbol_table(phones_path) if phones_path.is_file() else None
    shift = recognizer.frame_shift_s
    plt = _pyplot()
    fig, axes = plt.subplots(
        4, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [2, 3, 1, 1]}
    )
    t = np.arange(samples.shape[0]) / rate
    axes[0].plot(t, samples, linewidth=0.4, color="tab:blue")
    axes[0].set_ylabel("amplitude")
    axes[0].set_title(title or f"{best.text}  ({samples.shape[0] / rate:.2f} s)")
    axes[1].specgram(samples, NFFT=int(0.025 * rate), Fs=rate, noverlap=int(0.015 * rate),
                     cmap="magma")  # fmt: skip
    axes[1].set_ylabel("Hz")
    colors = plt.get_cmap("tab20")
    phones = recognizer.ilabel_to_phone[best.alignment]
    for k, (phone, start, end) in enumerate(_segments(phones)):
        name = str(phone)
        if phone_names is not None:
            name = phone_names.symbol(phone) if hasattr(phone_names, "symbol") else name
        silence = phone in recognizer.silence_phones
        axes[2].axvspan(start * shift, end * shift, color="0.85" if silence else colors(k % 20))
        axes[2].text((start + end) / 2 * shift, 0.5, name, ha="center", va="center", fontsize=7)
    axes[2].set_ylabel("phones")
    for k, word in enumerate(recognizer.make_result(
        best, recognizer.group_posteriors(log_likes), duration_s=t[-1], offset_s=0.0
    ).words):  # fmt: skip
        axes[3].axvspan(word.start, word.end, color=colors((2 * k + 1) % 20), alpha=0.7)
        axes[3].text((word.start + word.end) / 2, 0.5, f"{word.word}\n{word.start:.2f}-{word.end:.2f}",
                     ha="center", va="center", fontsize=7)  # fmt: skip
    axes[3].set_ylabel("words")
    axes[3].set_xlabel("time (s)")
    for ax in axes[2:]:
        ax.set_yticks([])
        ax.set_ylim(0, 1)
    axes[3].set_xlim(0, t[-1])
    return _save(fig, out_png)


def parse_results_table(text: str) -> list[tuple[str, float]]:
    """``[(system, wer)]`` from the markdown tables of ``text`` (see the module docstring)."""
    rows: list[tuple[str, float]] = []
    wer_col = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            wer_col = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells):
            continue
        if wer_col is None:
            wer_col = next((i for i, c in enumerate(cells) if "WER" in c.upper()), -1)
            continue
        if wer_col < 0 or wer_col >= len(cells):
            continue
        match = _NUMBER.search(cells[wer_col])
        if match:
            rows.append((cells[0], float(match.group())))
    return rows


def plot_results(results_md: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Bar chart of %WER per system from ``results_md``; :class:`PlotError` if no row."""
    results_md = Path(results_md)
    try:
        rows = parse_results_table(results_md.read_text(encoding="utf-8"))
    except OSError as err:
        raise PlotError(f"{results_md}: cannot read: {err}") from None
    if not rows:
        raise PlotError(f"{results_md}: no markdown table with a WER column")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 4))
    names, wers = zip(*rows, strict=True)
    bars = ax.bar(range(len(rows)), wers, color=plt.get_cmap("tab10")(np.arange(len(rows)) % 10))
    for bar, wer in zip(bars, wers, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{wer:.2f}",
                ha="center", va="bottom", fontsize=9)  # fmt: skip
    ax.set_xticks(range(len(rows)), names, rotation=20, ha="right")
    ax.set_ylabel("%WER")
    ax.set_ylim(0, max(wers) * 1.2 + 0.5)
    ax.set_title(f"WER per system ({results_md.parent.name or results_md.name})")
    return _save(fig, out_png)
