"""Subtitles from recognized words: cues split at pauses and at a maximum duration or length,
written as SubRip (``.srt``) or WebVTT (``.vtt``); what ``asr transcribe --format srt|vtt``
prints.

A cue is a run of consecutive words; a new cue starts before a word when the pause since the
previous word is longer than ``max_gap_s``, or when the word would make the cue last longer
than ``max_duration_s`` or its text longer than ``max_chars`` (a single word over the limits
is a cue of its own). A cue starts at its first word's start and ends at its last word's
end, so cues never overlap and the cue texts, joined by spaces, are the transcript.

>>> words = [("NO", 0.1, 0.4), ("YES", 0.5, 0.9), ("NO", 2.0, 2.3)]
>>> print(to_srt(make_cues(words)), end="")
1
00:00:00,100 --> 00:00:00,900
NO YES
<BLANKLINE>
2
00:00:02,000 --> 00:00:02,300
NO
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asr.errors import AsrError

__all__ = ["Cue", "SubtitleConfig", "make_cues", "to_srt", "to_vtt"]


@dataclass(frozen=True)
class SubtitleConfig:
    """Where cues split: a pause over ``max_gap_s`` seconds between two words, a cue longer
    than ``max_duration_s`` seconds or ``max_chars`` characters (the usual subtitle limits)."""

    max_gap_s: float = 0.5
    max_duration_s: float = 5.0
    max_chars: int = 42

    def __post_init__(self) -> None:
        if not self.max_gap_s >= 0:
            raise AsrError(f"max_gap_s must be >= 0, got {self.max_gap_s}")
        if not self.max_duration_s > 0:
            raise AsrError(f"max_duration_s must be > 0, got {self.max_duration_s}")
        if self.max_chars < 1:
            raise AsrError(f"max_chars must be >= 1, got {self.max_chars}")


@dataclass(frozen=True)
class Cue:
    """One subtitle: ``start``/``end`` in seconds, ``text`` its words joined by spaces."""

    start: float
    end: float
    text: str


def make_cues(
    words: Iterable[tuple[str, float, float]], config: SubtitleConfig | None = None
) -> list[Cue]:
    """The cues of ``words`` (``(word, start_s, end_s)`` in time order)."""
    config = config or SubtitleConfig()
    cues: list[Cue] = []
    current: list[tuple[str, float, float]] = []
    for word in words:
        if current and _starts_new_cue(current, word, config):
            cues.append(_cue(current))
            current = []
        current.append((str(word[0]), float(word[1]), float(word[2])))
    if current:
        cues.append(_cue(current))
    return cues


def _starts_new_cue(
    current: Sequence[tuple[str, float, float]], word: tuple[str, float, float], config
) -> bool:
    pause = float(word[1]) - current[-1][2]
    duration = float(word[2]) - current[0][1]
    chars = sum(len(w) for w, _, _ in current) + len(current) + len(str(word[0]))
    return pause > config.max_gap_s or duration > config.max_duration_s or chars > config.max_chars


def _cue(words: Sequence[tuple[str, float, float]]) -> Cue:
    start = words[0][1]
    return Cue(start=start, end=max(words[-1][2], start), text=" ".join(w for w, _, _ in words))


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, blank-line separated."""
    blocks = [
        f"{index}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n{cue.text}\n"
        for index, cue in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``."""
    blocks = [
        f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n{cue.text}\n" for cue in cues
    ]
    return "\n".join(["WEBVTT\n", *blocks])
