"""Typed errors raised by the library.

Every error the library raises on bad input is an :class:`AsrError`
subclass, so callers (the CLI, the server) can report it cleanly and go on.

>>> try:
...     raise AudioError("x.wav: file is empty")
... except AsrError as err:
...     print(err)
x.wav: file is empty
"""


class AsrError(Exception):
    """Base class of all errors raised deliberately by :mod:`asr`."""


class AudioError(AsrError):
    """Missing, empty, truncated, non-audio or invalid audio input."""


class DataDirError(AsrError):
    """A Kaldi data directory (wav.scp, text, utt2spk, ...) is malformed."""


class CorpusError(AsrError):
    """A corpus is missing or does not follow its official layout."""


class FeatureError(AsrError):
    """Feature extraction got invalid input or configuration."""


class ArchiveError(AsrError):
    """A Kaldi ark/scp file is missing or malformed."""


class ScoringError(AsrError):
    """Reference and hypothesis transcripts cannot be scored."""


class LangError(AsrError):
    """A lexicon, symbol table or lang directory is malformed."""


class LmError(AsrError):
    """Language-model training or ARPA input is invalid."""


class GraphError(AsrError):
    """A decoding graph cannot be built or does not match the model."""


class DecodeError(AsrError):
    """Decoding got invalid scores or a graph it cannot search."""


class ModelError(AsrError):
    """A model file or directory is missing, corrupt or inconsistent."""


class TrainingError(AsrError):
    """Neural-network training got invalid data, configuration or checkpoint."""


class EstimationError(AsrError):
    """Statistics cannot give a model or transform (no data, singular scatter matrices)."""


class AlignmentError(AsrError):
    """An utterance cannot be aligned (unknown word, no graph, too short, no path in the beam)."""


class ServerError(AsrError):
    """The recognition server got an invalid configuration (models, limits, address)."""


class PlotError(AsrError):
    """A plot's input cannot be read or has nothing to show."""


class TimingError(AsrError):
    """Stage/iteration timing: a command that cannot run, an unreadable timing file."""
