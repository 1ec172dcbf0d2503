"""Neural acoustic models: DNN-HMM (TDNN over pdf-ids) and RNN+CTC, their data and trainer.

>>> from asr.nnet import TdnnConfig, TdnnModel
>>> TdnnModel(TdnnConfig(input_dim=40, num_pdfs=10, context=(3, 3))).right_context
3
"""

from asr.nnet.checkpoint import load_checkpoint, load_model, save_checkpoint, save_model
from asr.nnet.ctc import ctc_loss_sum, greedy_decode, greedy_decode_with_frames
from asr.nnet.data import (
    Batch,
    NnetDataset,
    SpecAugmentConfig,
    collate,
    make_batches,
    shard_batches,
    spec_augment,
)
from asr.nnet.models import (
    CtcConfig,
    CtcModel,
    CtcState,
    TdnnConfig,
    TdnnModel,
    build_model,
    dnn_log_likelihoods,
    estimate_log_priors,
    model_spec,
)
from asr.nnet.trainer import (
    DistInfo,
    EpochStats,
    TrainConfig,
    TrainResult,
    init_distributed,
    train,
)

__all__ = [
    "Batch",
    "CtcConfig",
    "CtcModel",
    "CtcState",
    "DistInfo",
    "EpochStats",
    "NnetDataset",
    "SpecAugmentConfig",
    "TdnnConfig",
    "TdnnModel",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "collate",
    "ctc_loss_sum",
    "dnn_log_likelihoods",
    "estimate_log_priors",
    "greedy_decode",
    "greedy_decode_with_frames",
    "init_distributed",
    "load_checkpoint",
    "load_model",
    "make_batches",
    "model_spec",
    "save_checkpoint",
    "save_model",
    "shard_batches",
    "spec_augment",
    "train",
]
