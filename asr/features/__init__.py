"""Feature front-ends: Kaldi-exact MFCC and fbank, LPC/LPCC, deltas and CMVN.

>>> import numpy as np
>>> from asr.features import MfccConfig, compute_mfcc, compute_deltas
>>> samples = np.random.default_rng(0).uniform(-0.1, 0.1, 8000).astype(np.float32)
>>> compute_deltas(compute_mfcc(samples, 8000, MfccConfig(sampling_rate=8000))).shape
(98, 39)
"""

from asr.features.extractors import (
    FbankConfig,
    FbankExtractor,
    FeatureConfig,
    FeatureExtractor,
    LpccConfig,
    LpccExtractor,
    LpcConfig,
    LpcExtractor,
    MfccConfig,
    MfccExtractor,
    compute_fbank,
    compute_features,
    compute_lpc,
    compute_lpcc,
    compute_mfcc,
    config_from_dict,
    config_to_dict,
    feature_dim,
    get_extractor,
    num_frames,
)
from asr.features.functional import (
    accumulate_cmvn_stats,
    apply_cmvn,
    compute_cmvn_stats,
    compute_deltas,
    count_frames,
    frame_signal,
)

__all__ = [
    "FbankConfig",
    "FbankExtractor",
    "FeatureConfig",
    "FeatureExtractor",
    "LpcConfig",
    "LpcExtractor",
    "LpccConfig",
    "LpccExtractor",
    "MfccConfig",
    "MfccExtractor",
    "accumulate_cmvn_stats",
    "apply_cmvn",
    "compute_cmvn_stats",
    "compute_deltas",
    "compute_fbank",
    "compute_features",
    "compute_lpc",
    "compute_lpcc",
    "compute_mfcc",
    "config_from_dict",
    "config_to_dict",
    "count_frames",
    "feature_dim",
    "frame_signal",
    "get_extractor",
    "num_frames",
]
