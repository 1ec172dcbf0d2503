"""asr.recognizer.subtitles: cues split at pauses, durations and lengths; SRT and WebVTT that
independent parsers (the ``srt`` and ``webvtt-py`` packages) read back to the same cues."""

from __future__ import annotations

import datetime

import pytest
import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from asr.errors import AsrError
from asr.recognizer.subtitles import Cue, SubtitleConfig, make_cues, to_srt, to_vtt


def _words(spec):
    """``[(word, start, end)]`` from ``[(word, gap_before, duration)]``."""
    out, t = [], 0.0
    for word, gap, length in spec:
        t += gap
        out.append((word, round(t, 3), round(t + length, 3)))
        t += length
    return out


def _vtt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_splits_at_pauses_longer_than_half_a_second():
    words = _words([("NO", 0.1, 0.3), ("YES", 0.5, 0.3), ("NO", 0.51, 0.3), ("YES", 0.0, 0.2)])
    cues = make_cues(words)
    assert [c.text for c in cues] == ["NO YES", "NO YES"]
    assert (cues[0].start, cues[0].end) == (words[0][1], words[1][2])
    assert (cues[1].start, cues[1].end) == (words[2][1], words[3][2])


def test_splits_at_five_seconds_and_42_characters():
    steady = _words([(f"W{i}", 0.1, 0.8) for i in range(12)])  # no pause splits
    cues = make_cues(steady)
    assert all(c.end - c.start <= 5.0 for c in cues) and len(cues) == 3
    assert [c.text.split() for c in cues] == [[w for w, _, _ in steady[:5]],
                                              [w for w, _, _ in steady[5:10]],
                                              [w for w, _, _ in steady[10:]]]  # fmt: skip
    fast = _words([("ABCDEFGHI", 0.0, 0.05)] * 10)  # 9 letters: 4 words + spaces = 39 chars
    texts = [c.text for c in make_cues(fast)]
    assert all(len(t) <= 42 for t in texts) and [len(t.split()) for t in texts] == [4, 4, 2]
    long_word = make_cues([("X" * 50, 0.0, 6.0), ("Y", 6.1, 6.2)])
    assert [c.text for c in long_word] == ["X" * 50, "Y"]  # one word over both limits: alone
    assert make_cues([]) == [] and to_srt([]) == "" and to_vtt([]) == "WEBVTT\n"
    with pytest.raises(AsrError):
        SubtitleConfig(max_chars=0)


@st.composite
def word_lists(draw):
    n = draw(st.integers(0, 40))
    spec = [
        (
            draw(st.sampled_from(["YES", "NO", "SEVENTY", "A", "ENTER", "RUBOUT"])),
            draw(st.floats(0.0, 1.5)),
            draw(st.floats(0.01, 1.2)),
        )
        for _ in range(n)
    ]
    return _words(spec)


@settings(max_examples=150, deadline=None)
@given(word_lists())
def test_srt_and_vtt_parse_back_to_the_cues(words):
    config = SubtitleConfig()
    cues = make_cues(words, config)
    assert " ".join(c.text for c in cues) == " ".join(w for w, _, _ in words)
    for cue in cues:
        assert cue.end >= cue.start
        assert cue.end - cue.start <= config.max_duration_s or " " not in cue.text
        assert len(cue.text) <= config.max_chars or " " not in cue.text
    for before, after in zip(cues, cues[1:], strict=False):
        assert after.start >= before.end
    parsed = list(srt.parse(to_srt(cues)))
    assert [p.index for p in parsed] == list(range(1, len(cues) + 1))
    assert [p.content for p in parsed] == [c.text for c in cues]
    for p, cue in zip(parsed, cues, strict=True):
        assert p.start == datetime.timedelta(milliseconds=round(cue.start * 1000))
        assert p.end == datetime.timedelta(milliseconds=round(cue.end * 1000))
    captions = webvtt.from_string(to_vtt(cues), strict=True).captions if cues else []
    assert [c.text for c in captions] == [c.text for c in cues]
    for caption, cue in zip(captions, cues, strict=True):
        assert _vtt_seconds(caption.start) == pytest.approx(cue.start, abs=5e-4)
        assert _vtt_seconds(caption.end) == pytest.approx(cue.end, abs=5e-4)


def test_timestamps_past_an_hour():
    text = to_srt([Cue(3725.0625, 3726.5, "NO")])
    assert "01:02:05,062 --> 01:02:06,500" in text or "01:02:05,063 --> 01:02:06,500" in text
    assert "01:02:06.500" in to_vtt([Cue(3725.0, 3726.5, "NO")])
