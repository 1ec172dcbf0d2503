"""asr: a speech recognition pipeline.

Kaldi-compatible front-ends, GMM-HMM / DNN-HMM / RNN+CTC acoustic models,
WFST decoding graphs and our own Viterbi beam-search decoder.
The library never reads argv or the environment and never exits; only
:mod:`asr.cli` does.
"""

__version__ = "0.1.0"
