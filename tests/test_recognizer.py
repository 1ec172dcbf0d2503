"""asr.recognizer (+ asr.confidence, asr.endpoint) on a monophone yesno bundle.

Oracles: the decoder run by hand on the data dir's own features (``asr features compute``
output, each utterance its own CMVN speaker); Stream.finalize vs transcribe with random
chunk sizes, for speaker CMVN (two-pass) and for sliding/no CMVN (incremental path);
brute-force loops for the confidence pooling; Kaldi's rule table for endpointing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from asr.audio import read_audio
from asr.bundle import export_bundle
from asr.confidence import group_posteriors, pdf_groups
from asr.data import read_kaldi_map
from asr.decode import DecoderConfig, DecodingGraph, decode
from asr.endpoint import EndpointConfig, endpoint_detected, final_relative_cost
from asr.errors import AudioError, DecodeError
from asr.features.functional import compute_cmvn_stats
from asr.features.io import read_matrix
from asr.features.pipeline import FeaturePipelineConfig, apply_pipeline
from asr.lang.symbols import read_symbol_table
from asr.recognizer import Recognizer, Result
from asr.scoring import read_text_file, score
from tests.support.yesno_data import build_yesno_model

SCALE = 0.07


@pytest.fixture(scope="module")
def model(yesno_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    paths = build_yesno_model(yesno_dir, root)
    paths["bundle"] = export_bundle(
        paths["model"], graph_dir=paths["graph"], out_dir=root / "bundle",
        decoder_config=DecoderConfig(beam=13.0, acoustic_scale=SCALE),
    ).root  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def rec(model):
    return Recognizer.from_dir(model["bundle"], device="cpu")


def _variant(model, tmp_path, **changes) -> Recognizer:
    """The same GMMs with another feature pipeline (plumbing for the online paths)."""
    model_dir = tmp_path / "variant"
    shutil.copytree(model["model"], model_dir, ignore=shutil.ignore_patterns("ali", "graph"))
    pipe = FeaturePipelineConfig.load(model_dir)
    dataclasses.replace(pipe, **changes).save(model_dir)
    bundle = export_bundle(
        model_dir, graph_dir=model["graph"], out_dir=tmp_path / "vbundle",
        decoder_config=DecoderConfig(beam=13.0, acoustic_scale=SCALE),
    )  # fmt: skip
    return Recognizer.from_dir(bundle.root, device="cpu")


def test_transcribe_equals_decoder_on_data_dir_features(rec, model):
    wavs = read_kaldi_map(model["test"] / "wav.scp")
    graph = DecodingGraph.from_fst(
        model["graph"] / "HCLG.fst", model["graph"] / "ilabel_to_pdf.int"
    )
    words = read_symbol_table(model["graph"] / "words.txt")
    pipe = FeaturePipelineConfig.load(model["model"])
    feats_scp = read_kaldi_map(model["test"] / "feats.scp")
    hyps, expected = {}, {}
    for utt_id, path in wavs.items():
        result = rec.transcribe(path)
        raw = read_matrix(feats_scp[utt_id])
        feats = apply_pipeline(raw, pipe)  # no speaker stats: the utterance's own
        ll = rec.acoustic_model.log_likelihoods(feats)
        expected[utt_id] = decode(graph, ll, DecoderConfig(beam=13.0, acoustic_scale=SCALE),
                                  word_symbols=words).text  # fmt: skip
        hyps[utt_id] = result.text
        duration = read_audio(path)[0].shape[0] / 8000
        assert result.duration_s == pytest.approx(duration)
        assert result.rtf is not None and result.rtf > 0
        starts = [w.start for w in result.words]
        assert starts == sorted(starts)
        assert all(0 <= w.start < w.end <= duration for w in result.words)
        assert all(0.0 <= w.confidence <= 1.0 for w in result.words)
        assert " ".join(w.word for w in result.words) == result.text
    assert hyps == expected
    wer = score(read_text_file(model["test"] / "text"), hyps).wer
    assert wer < 20.0  # a 6-iteration model; the recipe model is better


def test_transcribe_speaker_pools_cmvn_and_skips_bad_inputs(rec, model):
    """Oracle: the decoder on the data dir's features with the summed Kaldi CMVN stats of the
    speaker's good utterances (what ``asr decode`` reads from cmvn.scp)."""
    wavs = read_kaldi_map(model["test"] / "wav.scp")
    names = list(wavs)[:5]
    graph = DecodingGraph.from_fst(
        model["graph"] / "HCLG.fst", model["graph"] / "ilabel_to_pdf.int"
    )
    words = read_symbol_table(model["graph"] / "words.txt")
    pipe = FeaturePipelineConfig.load(model["model"])
    feats_scp = read_kaldi_map(model["test"] / "feats.scp")
    raws = {n: read_matrix(feats_scp[n]) for n in names}
    stats = np.sum([compute_cmvn_stats(raw) for raw in raws.values()], axis=0)
    inputs = [wavs[names[0]], np.zeros(10, np.float32), *(wavs[n] for n in names[1:])]
    outcomes = rec.transcribe_speaker(inputs)
    assert isinstance(outcomes[1], AudioError) and "too short" in str(outcomes[1])
    for name, outcome in zip(names, outcomes[:1] + outcomes[2:], strict=True):
        ll = rec.acoustic_model.log_likelihoods(apply_pipeline(raws[name], pipe, cmvn_stats=stats))
        expected = decode(graph, ll, DecoderConfig(beam=13.0, acoustic_scale=SCALE),
                          word_symbols=words).text  # fmt: skip
        assert outcome.text == expected and outcome.rtf > 0


def test_samples_at_another_rate_are_resampled(rec, model):
    path = next(iter(read_kaldi_map(model["test"] / "wav.scp").values()))
    samples, _ = read_audio(path)
    at_16k = read_audio(path, sampling_rate=16000)[0]
    a = rec.transcribe(samples, sampling_rate=8000)
    b = rec.transcribe(at_16k, sampling_rate=16000)
    assert a.text == rec.transcribe(path).text
    assert b.text == a.text and b.duration_s == pytest.approx(a.duration_s, abs=1e-3)


def test_bad_input_raises_audio_error(rec):
    with pytest.raises(AudioError, match="too short"):
        rec.transcribe(np.zeros(100, np.float32))
    with pytest.raises(AudioError, match="no samples"):
        rec.transcribe(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="1-D"):
        rec.transcribe(np.zeros((2, 8000), np.float32))


def _stream_through(rec: Recognizer, samples: np.ndarray, seed: int) -> Result:
    rng = np.random.default_rng(seed)
    stream = rec.stream()
    pos = 0
    while pos < samples.shape[0]:
        n = int(rng.integers(1, 3000))
        stream.accept_waveform(samples[pos : pos + n])
        pos += n
        if rng.random() < 0.05:
            partial = stream.partial()
            assert all(0 <= w.start <= w.end <= stream.duration_s + 1e-9 for w in partial.words)
    return stream.finalize()


@pytest.mark.parametrize("cmvn", ["speaker", "sliding", "none"])
def test_stream_finalize_equals_transcribe(model, rec, tmp_path, cmvn):
    recognizer = rec if cmvn == "speaker" else _variant(model, tmp_path, cmvn=cmvn)
    wavs = list(read_kaldi_map(model["test"] / "wav.scp").values())[:3]
    for seed, path in enumerate(wavs):
        samples, _ = read_audio(path)
        offline = recognizer.transcribe(samples)
        online = _stream_through(recognizer, samples, seed)
        assert online.text == offline.text
        assert online.duration_s == pytest.approx(offline.duration_s)
        assert [(w.word, w.start, w.end) for w in online.words] == [
            (w.word, w.start, w.end) for w in offline.words
        ]
        np.testing.assert_allclose(
            [w.confidence for w in online.words], [w.confidence for w in offline.words], atol=1e-3
        )


def test_split_hooks_equal_accept_waveform_and_reset_keeps_time(model, tmp_path):
    rec = _variant(model, tmp_path, cmvn="sliding")
    samples, _ = read_audio(next(iter(read_kaldi_map(model["test"] / "wav.scp").values())))
    a, b = rec.stream(), rec.stream()
    for chunk in np.array_split(samples, 7):
        a.accept_waveform(chunk)
        feats = b.accept_samples(chunk)
        b.advance(rec.acoustic_model.log_likelihoods(feats))
    assert a.partial() == b.partial()
    first = a.finalize()
    with pytest.raises(DecodeError, match="finalized"):
        a.accept_waveform(samples[:100])
    a.reset()
    a.accept_waveform(samples)
    second = a.finalize()
    offset = samples.shape[0] / 8000
    assert second.text == first.text
    assert [w.start for w in second.words] == pytest.approx(
        [w.start + offset for w in first.words], abs=2e-3
    )


def test_endpoint_after_trailing_silence(rec, model):
    samples, _ = read_audio(next(iter(read_kaldi_map(model["test"] / "wav.scp").values())))
    last_word_end = rec.transcribe(samples).words[-1].end
    # the yesno files start with ~0.8 s of silence: no endpoint there (rule1 needs 5 s)
    stream = rec.stream()
    stream.accept_waveform(samples[:4000])
    assert not stream.is_endpoint()
    # up to just after the last word: speech, then < 0.5 s of silence: no endpoint yet
    stream = rec.stream()
    cut = int((last_word_end + 0.1) * 8000)
    stream.accept_waveform(samples[:cut])
    assert not stream.is_endpoint()
    # then the recording's tail and its own leading silence, repeated: rule2..4 fire
    rest = np.concatenate([samples[cut:], np.tile(samples[:4000], 6)])
    fired_at = None
    for chunk in np.array_split(rest, rest.shape[0] // 400):
        stream.accept_waveform(chunk)
        if stream.is_endpoint():
            fired_at = stream.duration_s - last_word_end
            break
    assert fired_at is not None and 0.45 <= fired_at <= 2.2
    assert len(stream.finalize().words) >= 8  # the eight yes/no words (+ insertions)


def test_endpoint_rules_follow_kaldi_table():
    cfg = EndpointConfig()

    def fires(frames, trailing, relative, speech=True):
        return endpoint_detected(cfg, num_frames=frames, trailing_silence_frames=trailing,
                                 contains_nonsilence=speech, final_relative_cost=relative,
                                 frame_shift_s=0.01)  # fmt: skip

    assert not fires(100, 49, 0.0)  # rule2 needs 0.5 s
    assert fires(100, 50, 2.0) and not fires(100, 50, 2.5)  # rule2: relative cost <= 2
    assert fires(200, 100, 8.0) and not fires(200, 100, 8.5)  # rule3
    assert fires(300, 200, math.inf)  # rule4
    assert not fires(400, 499, math.inf, speech=False) and fires(600, 500, math.inf, speech=False)
    assert fires(2000, 0, math.inf) and not fires(1999, 0, math.inf)  # rule5: 20 s
    assert final_relative_cost(np.array([1.0, 2.0]), np.array([np.inf, 0.5])) == 1.5
    assert final_relative_cost(np.array([1.0]), np.array([np.inf])) == math.inf


def test_confidence_pooling_matches_brute_force():
    rng = np.random.default_rng(0)
    log_likes = rng.normal(0, 20, (6, 5))
    groups = np.array([0, 1, 1, 2, 0])
    post = group_posteriors(log_likes, groups, acoustic_scale=0.1)
    for t in range(6):
        p = np.exp(0.1 * log_likes[t] - np.logaddexp.reduce(0.1 * log_likes[t]))
        np.testing.assert_allclose(post[t], [p[groups == g].sum() for g in range(3)], rtol=1e-5)
    got = pdf_groups(arc_pdf=np.array([0, 1, -1, 2]), arc_ilabel=np.array([1, 2, 0, 3]),
                     ilabel_to_phone=np.array([-1, 7, 7, 9]), num_pdfs=4)  # fmt: skip
    assert got[0] == got[1] != got[2] and got[3] not in got[:3]


def test_result_to_dict_is_json(rec, model):
    path = next(iter(read_kaldi_map(model["test"] / "wav.scp").values()))
    record = json.loads(json.dumps(rec.transcribe(path).to_dict()))
    assert set(record) == {"text", "words", "confidence", "duration", "rtf"}
    assert set(record["words"][0]) == {"word", "start", "end", "confidence"}


def _with_backend(rec: Recognizer, backend: str) -> Recognizer:
    return Recognizer(
        rec.bundle, acoustic_model=rec.acoustic_model, graph=rec.graph, device=rec.device,
        search_backend=backend,
    )  # fmt: skip


def test_decode_streams_scores_all_streams_at_once_and_torch_search_equals_numba(model, tmp_path):
    """Recognizer.decode_streams: one acoustic-model call for the new frames of all streams,
    then every search advanced; with the batched torch search (forced on CPU) the partials
    and finals equal the compiled search's, and both equal offline transcription."""
    numba_rec = _variant(model, tmp_path, cmvn="sliding")  # the incremental path
    torch_rec = _with_backend(numba_rec, "torch")
    assert numba_rec.search_backend == "numba" and torch_rec.search_backend == "torch"
    wavs = list(read_kaldi_map(model["test"] / "wav.scp").values())[:3]
    audio = [read_audio(path)[0] for path in wavs]
    finals, partials = {}, {}
    for name, rec in (("numba", numba_rec), ("torch", torch_rec)):
        streams = [rec.stream() for _ in audio]
        pos, seen = 0, []
        while pos < max(a.shape[0] for a in audio):
            chunks = [a[pos : pos + 800] for a in audio]  # 100 ms; empty once a file is over
            batch = rec.decode_streams(streams, chunks)
            assert batch.errors == [None] * len(streams)
            seen.append(batch.num_frames_scored)
            pos += 800
            if pos % 8000 == 0:
                partials.setdefault(name, []).append([s.partial().text for s in streams])
        assert sum(seen) == sum(s.num_frames_decoded for s in streams)
        assert max(seen) > max(s.num_frames_decoded for s in streams) / len(seen)  # batched
        finals[name] = [s.finalize() for s in streams]
    assert partials["torch"] == partials["numba"]
    for offline, a, b in zip(
        (numba_rec.transcribe(x) for x in audio), finals["numba"], finals["torch"], strict=True
    ):
        for online in (a, b):
            assert online.text == offline.text
            assert [(w.word, w.start, w.end) for w in online.words] == [
                (w.word, w.start, w.end) for w in offline.words
            ]
            np.testing.assert_allclose(
                [w.confidence for w in online.words],
                [w.confidence for w in offline.words],
                atol=1e-3,
            )


def test_decode_streams_reports_bad_input_per_stream(model, rec):
    samples, _ = read_audio(next(iter(read_kaldi_map(model["test"] / "wav.scp").values())))
    good, bad = rec.stream(), rec.stream()
    batch = rec.decode_streams([good, bad], [samples, np.full(100, np.nan, np.float32)])
    assert batch.errors[0] is None and isinstance(batch.errors[1], AudioError)
    assert good.num_frames_decoded > 0


def test_transcribe_with_the_torch_search_equals_numba(model, rec):
    torch_rec = _with_backend(rec, "torch")
    for path in list(read_kaldi_map(model["test"] / "wav.scp").values())[:3]:
        a, b = rec.transcribe(path), torch_rec.transcribe(path)
        assert a.text == b.text and a.words == b.words
