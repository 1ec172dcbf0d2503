"""Batch work over many utterances, above the recognizer: decoding a Kaldi data dir
(:mod:`asr.batch.decode_dir`) and transcribing audio files (:mod:`asr.batch.transcribe`),
as data-parallel jobs on a :class:`concurrent.futures.Executor` (:mod:`asr.parallel`).

>>> from asr.batch import decode_data_dir, transcribe_files  # doctest: +SKIP
"""

from asr.batch.decode_dir import DecodeSummary, decode_data_dir, format_scale
from asr.batch.transcribe import TranscribeItem, transcribe_files

__all__ = ["DecodeSummary", "TranscribeItem", "decode_data_dir", "format_scale", "transcribe_files"]
