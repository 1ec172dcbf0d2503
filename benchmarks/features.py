"""Feature front-end speed, side by side with librosa and kaldi-native-fbank, one thread.

Audio: one real AN4 utterance (16 kHz) tiled to 60 s; white noise when the
corpus is not found (the JSON says which). Every implementation runs once to
warm up, then ``--repeats`` times interleaved with the others; the best time of
each is reported (best-of-N is robust to other load on the machine).

Peers and settings:

* ``mfcc``: ours (``compute_mfcc``, Kaldi defaults, 25/10 ms, 512-point FFT,
  23 mel bins, 13 ceps) vs ``kaldi_native_fbank.OnlineMfcc`` with the same
  options (input already a Python list, its fastest path; frames read back
  with ``get_frame``) and ``librosa.feature.mfcc`` both with matched framing
  (``n_fft=512, win_length=400, hop_length=160, n_mels=23, n_mfcc=13``) and
  with librosa's defaults (2048/512, 128 mels, 20 ceps: fewer frames, less work).
* ``fbank``: ours (``compute_fbank``) vs ``OnlineFbank`` and librosa's
  log-mel (``melspectrogram`` with matched framing, then ``log``).
* ``lpc``: our Burg LPC (order 12, all frames at once) vs ``librosa.lpc`` on
  the same frames (2-D input, one call); our autocorrelation LPC and LPCC
  (order 12, 13 cepstra) are timed too, without a peer.

Usage::

    .venv/bin/python benchmarks/features.py --json
"""

from __future__ import annotations

import os

# One thread everywhere; must be set before numpy/torch/numba are imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from asr.features import (  # noqa: E402
    FbankConfig,
    LpccConfig,
    LpcConfig,
    MfccConfig,
    compute_fbank,
    compute_lpc,
    compute_lpcc,
    compute_mfcc,
    frame_signal,
)
from asr.features import functional as F  # noqa: E402

SAMPLING_RATE = 16000
DURATION_S = 60.0


def load_audio(corpora: Path) -> tuple[np.ndarray, str]:
    """60 s of 16 kHz float32 audio in [-1, 1] and a description of where it came from."""
    import soundfile as sf

    num_samples = int(DURATION_S * SAMPLING_RATE)
    wavs = sorted((corpora / "an4" / "wav" / "an4_clstk").glob("*/*.wav"))
    if wavs:
        data, rate = sf.read(wavs[0], dtype="int16")
        if rate == SAMPLING_RATE:
            x = data.astype(np.float32) / 32768.0
            tiled = np.tile(x, -(-num_samples // x.size))[:num_samples]
            return tiled, f"AN4 {wavs[0].name} tiled to {DURATION_S:g} s"
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(num_samples)).astype(np.float32)
    return noise, f"white noise, {DURATION_S:g} s (AN4 not found under {corpora})"


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Warm each function up once, then time ``repeats`` interleaved rounds; best of each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def knf_runner(kind: str, samples: np.ndarray) -> Callable[[], np.ndarray]:
    import kaldi_native_fbank as knf

    opts = knf.MfccOptions() if kind == "mfcc" else knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = SAMPLING_RATE
    cls = knf.OnlineMfcc if kind == "mfcc" else knf.OnlineFbank
    as_list = (samples * 32768.0).tolist()

    def run() -> np.ndarray:
        computer = cls(opts)
        computer.accept_waveform(SAMPLING_RATE, as_list)
        computer.input_finished()
        return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)])

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (best is kept)")
    parser.add_argument(
        "--corpora",
        type=Path,
        default=Path(os.environ.get("ASR_CORPORA", REPO_ROOT.parent / "shared" / "data")),
        help="folder holding an4/ (default: $ASR_CORPORA or ../shared/data)",
    )
    args = parser.parse_args(argv)

    import librosa

    torch.set_num_threads(1)
    samples, audio = load_audio(args.corpora)
    mfcc_cfg = MfccConfig()
    fbank_cfg = FbankConfig()
    lpc_cfg = LpcConfig(method="burg")
    matched = dict(n_fft=512, win_length=400, hop_length=160, n_mels=23, center=False)

    frames = np.ascontiguousarray(
        frame_signal(samples.astype(np.float64), frame_length=400, frame_shift=160, snip_edges=True)
    )
    windowed, _ = F.preprocess_frames(
        frames,
        window=F.window_function("povey", 400),
        padded_length=400,
        dtype=np.float64,
    )
    windowed /= 32768.0

    fns: dict[str, Callable[[], object]] = {
        "mfcc": lambda: compute_mfcc(samples, SAMPLING_RATE, mfcc_cfg),
        "knf_mfcc": knf_runner("mfcc", samples),
        "librosa_mfcc": lambda: librosa.feature.mfcc(
            y=samples, sr=SAMPLING_RATE, n_mfcc=13, **matched
        ),
        "librosa_mfcc_default": lambda: librosa.feature.mfcc(y=samples, sr=SAMPLING_RATE),
        "fbank": lambda: compute_fbank(samples, SAMPLING_RATE, fbank_cfg),
        "knf_fbank": knf_runner("fbank", samples),
        "librosa_logmel": lambda: np.log(
            np.maximum(
                librosa.feature.melspectrogram(y=samples, sr=SAMPLING_RATE, **matched), 1e-10
            )
        ),
        "lpc_burg": lambda: compute_lpc(samples, SAMPLING_RATE, lpc_cfg),
        "librosa_lpc_burg": lambda: librosa.lpc(windowed, order=12, axis=-1),
        "lpc_autocorrelation": lambda: compute_lpc(samples, SAMPLING_RATE, LpcConfig()),
        "lpcc": lambda: compute_lpcc(samples, SAMPLING_RATE, LpccConfig()),
    }
    best = best_times(fns, args.repeats)

    result: dict[str, object] = {f"{name}_60s_s": round(t, 5) for name, t in best.items()}
    result.update(
        {
            "speedup_vs_librosa": round(best["librosa_mfcc"] / best["mfcc"], 2),
            "speedup_vs_librosa_default": round(best["librosa_mfcc_default"] / best["mfcc"], 2),
            "speedup_vs_knf": round(best["knf_mfcc"] / best["mfcc"], 2),
            "fbank_speedup_vs_knf": round(best["knf_fbank"] / best["fbank"], 2),
            "fbank_speedup_vs_librosa": round(best["librosa_logmel"] / best["fbank"], 2),
            "lpc_burg_speedup_vs_librosa": round(best["librosa_lpc_burg"] / best["lpc_burg"], 2),
            "num_frames": int(compute_mfcc(samples, SAMPLING_RATE, mfcc_cfg).shape[0]),
            "audio": audio,
            "threads": 1,
            "repeats": args.repeats,
            "timing": "best of repeats after one warm-up, interleaved",
        }
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
