"""What recognition returns: :class:`Result` (a hypothesis) and its :class:`Word` entries,
shared by :class:`~asr.recognizer.core.Recognizer` and :class:`~asr.recognizer.stream.Stream`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Result", "Word"]


@dataclass(frozen=True)
class Word:
    """One recognized word; ``start``/``end`` in seconds from the start of the audio
    (of the stream, for :class:`Stream`); ``confidence`` in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Result:
    """A hypothesis: ``text`` (words joined by spaces), ``words``, ``confidence`` in [0, 1],
    ``duration_s`` of the audio, ``rtf`` (processing time / duration; None for streams)."""

    text: str
    words: tuple[Word, ...]
    confidence: float
    duration_s: float
    rtf: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready: ``text``, ``words`` [{word, start, end, confidence}], ``confidence``,
        ``duration`` (seconds), ``rtf``."""
        return {
            "text": self.text,
            "words": [dataclasses.asdict(w) for w in self.words],
            "confidence": self.confidence,
            "duration": self.duration_s,
            "rtf": self.rtf,
        }
