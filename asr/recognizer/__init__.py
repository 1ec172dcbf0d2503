"""Recognizer (a loaded bundle: shared, read-only) and Stream (one utterance at a time).

:mod:`asr.recognizer.core` holds :class:`Recognizer` (offline decoding, and
:meth:`Recognizer.decode_streams`: many streams advanced together, one acoustic-model call
for all of them, then each search advanced, in one batched torch search when the model's
device is CUDA); :mod:`asr.recognizer.stream` holds :class:`Stream`.

:meth:`Recognizer.transcribe` is the offline path: read and resample the audio
to the model's rate, compute the front-end features of the whole utterance,
apply the model's feature pipeline, score and decode with the bundle's graph.
CMVN follows the model: ``"speaker"`` CMVN uses the utterance's own stats (a
single file is its own speaker), unless the utterances of one speaker go
through :meth:`Recognizer.transcribe_speaker`, which pools their stats exactly
as ``asr features compute`` + ``asr decode`` do for a data dir (the same
hypotheses as the recipe's decode stage); ``"utterance"`` uses its own stats,
``"sliding"`` Kaldi's sliding window.

:meth:`Recognizer.stream` returns a :class:`Stream` for incremental input
(online features, :mod:`asr.features.online`; the online decoder of
:mod:`asr.decode.online`, or its batched torch twin :mod:`asr.decode.batched_online`). What ``finalize()`` returns, compared with ``transcribe()``
on the same audio at the model's rate:

* CMVN ``"none"``/``"sliding"``, frame-independent model (GMM, spliced DNN):
  truly incremental decoding; the same result (features and search are the same
  arithmetic; only the batching of the acoustic model's matrix products differs);
* CMVN ``"utterance"``/``"speaker"``: partial results and endpointing use sliding
  CMVN (600-frame window, as Kaldi's online CMVN stands in for utterance stats);
  ``finalize()`` re-decodes the utterance with its own stats: the same result;
  a speaker-adaptive model (tri3, an fMLLR DNN) also estimates its fMLLR transform
  from the utterance there (partials use the speaker-independent scores);
* models that are not frame-independent (``AcousticModel.frame_independent`` False, e.g. a
  recurrent CTC model): partials re-score everything so far; ``finalize()``
  decodes the whole utterance: the same result;
* input at another rate is resampled chunk by chunk (soxr's streaming
  resampler), which differs slightly from resampling the whole file at once.

Confidences are an acoustic frame-posterior proxy (:mod:`asr.confidence`), not
lattice word posteriors. Endpointing: Kaldi's rules (:mod:`asr.endpoint`).

>>> from asr.recognizer import Recognizer  # doctest: +SKIP
>>> rec = Recognizer.from_dir("exp/yesno/mono/bundle")  # doctest: +SKIP
>>> rec.transcribe("waves_yesno/0_0_1_0_1_0_1_1.wav").text  # doctest: +SKIP
'NO NO YES NO YES NO YES YES'
>>> stream = rec.stream()  # doctest: +SKIP
>>> for chunk in chunks:  # doctest: +SKIP
...     stream.accept_waveform(chunk)
...     if stream.is_endpoint():
...         print(stream.finalize().text); stream.reset()
"""

from asr.recognizer.core import (
    AcousticModelFailure,
    Recognizer,
    Result,
    StreamBatch,
    Word,
    resolve_device,
)
from asr.recognizer.stream import Stream

__all__ = [
    "AcousticModelFailure",
    "Recognizer",
    "Result",
    "Stream",
    "StreamBatch",
    "Word",
    "resolve_device",
]
