"""``asr transcribe`` on yesno files mixed with bad input.

Oracles: Recognizer.transcribe per file (the library path); asr.scoring on the ``kaldi``
output; the documented JSON schema (docs/transcribe_json_schema.json) checked by a small
validator here (type/required/properties/additionalProperties/items/minimum/maximum/oneOf);
every bad file reported with its name, every good one transcribed, exit code 1.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import read_audio
from asr.bundle import export_bundle
from asr.cli.main import main
from asr.data import read_kaldi_map
from asr.decode import DecoderConfig
from asr.recognizer import Recognizer
from asr.scoring import read_text_file, score
from tests.support.yesno_data import build_yesno_model

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "docs" / "transcribe_json_schema.json").read_text()
)
_TYPES = {"object": dict, "array": list, "string": str, "number": (int, float)}


def validate(value, schema, where="$") -> None:
    """Raise AssertionError when ``value`` does not follow ``schema`` (the subset we use)."""
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                validate(value, option, where)
                matches += 1
            except AssertionError:
                pass
        assert matches == 1, f"{where}: matches {matches} of the oneOf options"
        return
    kind = schema.get("type")
    if kind:
        assert isinstance(value, _TYPES[kind]) and not isinstance(value, bool), f"{where}: {kind}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: < minimum"
    if "maximum" in schema:
        assert value <= schema["maximum"], f"{where}: > maximum"
    if kind == "object":
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where}: missing {missing}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: extra {set(value) - set(props)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, f"{where}.{key}")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")


def test_validator_rejects_bad_records():
    good = {"file": "a", "utt_id": "a", "text": "", "words": [], "confidence": 0.5, "duration": 1}
    validate(good, SCHEMA)
    validate({"file": "a", "error": "a: bad"}, SCHEMA)
    for bad in [
        {**good, "confidence": 1.5},
        {k: v for k, v in good.items() if k != "text"},
        {**good, "words": [{"word": "X", "start": 0, "end": 1}]},
        {"file": "a", "error": "x", "text": ""},
    ]:
        with pytest.raises(AssertionError):
            validate(bad, SCHEMA)


@pytest.fixture(scope="module")
def setup(yesno_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("transcribe")
    paths = build_yesno_model(yesno_dir, root)
    bundle = export_bundle(
        paths["model"], graph_dir=paths["graph"], out_dir=root / "bundle",
        decoder_config=DecoderConfig(beam=13.0, acoustic_scale=0.07),
    )  # fmt: skip
    wavs = read_kaldi_map(paths["test"] / "wav.scp")
    good_dir = root / "inputs"
    good_dir.mkdir()
    names = list(wavs)[:4]
    x, _ = read_audio(wavs[names[0]])
    sf.write(good_dir / "stereo.wav", np.stack([x, x], axis=1), 8000, subtype="PCM_16")
    sf.write(good_dir / "rate16k.wav", read_audio(wavs[names[1]], sampling_rate=16000)[0], 16000)
    long = np.concatenate([read_audio(wavs[n])[0] for n in list(wavs)[:6]])
    sf.write(good_dir / "long.wav", long, 8000, subtype="PCM_16")
    (good_dir / "empty.wav").write_bytes(b"")
    (good_dir / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    header_only = good_dir / "truncated.wav"
    sf.write(header_only, x[:4000], 8000, subtype="PCM_16")
    header_only.write_bytes(header_only.read_bytes()[:3000])
    sf.write(good_dir / "tiny.wav", x[:50], 8000, subtype="PCM_16")
    return {**paths, "bundle": bundle.root, "wavs": wavs, "names": names, "inputs": good_dir}


def run(argv: list[str]) -> tuple[int, str, str]:
    with (
        contextlib.redirect_stdout(io.StringIO()) as out,
        contextlib.redirect_stderr(io.StringIO()) as err,
    ):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_mixed_good_and_bad_files_json(setup):
    inputs = setup["inputs"]
    good = [str(setup["wavs"][n]) for n in setup["names"][2:]] + [
        str(inputs / "stereo.wav"), str(inputs / "rate16k.wav"), str(inputs / "long.wav"),
    ]  # fmt: skip
    bad = [str(inputs / n) for n in ("empty.wav", "corrupt.wav", "truncated.wav", "tiny.wav")]
    bad.append(str(inputs / "missing.wav"))
    files = [f for pair in zip(good, bad, strict=False) for f in pair] + good[len(bad) :]
    code, out, err = run(["transcribe", "--model", str(setup["bundle"]), "--format", "json",
                          "--no-progress", *files])  # fmt: skip
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in records] == files  # input order, one line per file
    rec = Recognizer.from_dir(setup["bundle"], device="cpu")
    for record in records:
        validate(record, SCHEMA)
        if record["file"] in bad:
            assert record["error"].startswith(record["file"])
            assert f"asr transcribe: {record['error']}" in err
            continue
        expected = rec.transcribe(record["file"])
        assert record["text"] == expected.text and record["text"]
        assert record["duration"] == pytest.approx(expected.duration_s)
        starts = [w["start"] for w in record["words"]]
        assert starts == sorted(starts)
        assert all(0 <= w["start"] <= w["end"] <= record["duration"] for w in record["words"])
    reasons = {Path(r["file"]).name: r["error"] for r in records if "error" in r}
    assert "empty" in reasons["empty.wav"] and "too short" in reasons["tiny.wav"]
    assert (
        "truncated" in reasons["truncated.wav"] and "no such audio file" in reasons["missing.wav"]
    )
    assert f"{len(good)} files transcribed, {len(bad)} failed" in err and "RTF" in err


def test_kaldi_format_scores_and_nj2_equals_nj1(setup, tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{n} {setup['wavs'][n]}\n" for n in setup["names"]))
    outs = []
    for nj in ("1", "2"):
        hyp = tmp_path / f"hyp{nj}.txt"
        code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), "--wav-scp", str(scp),
                            "--format", "kaldi", "--nj", nj, "--output", str(hyp)])  # fmt: skip
        assert code == 0 and out == ""
        outs.append(hyp.read_text())
    assert outs[0] == outs[1]
    hyps = read_text_file(tmp_path / "hyp1.txt")
    rec = Recognizer.from_dir(setup["bundle"], device="cpu")
    assert hyps == {n: rec.transcribe(setup["wavs"][n]).text for n in setup["names"]}
    refs = {k: v for k, v in read_text_file(setup["test"] / "text").items() if k in hyps}
    (tmp_path / "ref.txt").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    code, out, _ = run(["score", str(tmp_path / "ref.txt"), str(tmp_path / "hyp1.txt")])
    assert code == 0 and f"%WER {score(refs, hyps).wer:.2f}" in out


def test_ctm_and_text_formats(setup, tmp_path):
    path = str(setup["wavs"][setup["names"][0]])
    code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), "--format", "ctm", path])
    result = Recognizer.from_dir(setup["bundle"]).transcribe(path)
    lines = [line.split() for line in out.splitlines()]
    assert code == 0 and len(lines) == len(result.words)
    for fields, word in zip(lines, result.words, strict=True):
        assert fields[0] == Path(path).stem and fields[1] == "1" and fields[4] == word.word
        assert float(fields[2]) == pytest.approx(word.start, abs=0.006)
        assert float(fields[2]) + float(fields[3]) == pytest.approx(word.end, abs=0.011)
    code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), path])
    assert out == result.text + "\n"
    code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), "--dir",
                        str(setup["inputs"]), "--no-progress"])  # fmt: skip
    assert code == 1 and "stereo.wav\t" in out
    code, _, err = run(["transcribe", "--model", str(tmp_path / "none"), path])
    assert code == 2 and "bundle directory not found" in err


def test_data_dir_pools_speaker_cmvn_and_equals_asr_decode(setup, tmp_path):
    """--data-dir (wav.scp + utt2spk): the speaker's pooled CMVN stats, so the hypotheses of
    `asr decode` on the same data dir (oracle: the recipe's decode stage) -- and not those of
    per-file CMVN, which differ on yesno (one speaker, 30 utterances)."""
    data = setup["test"]
    hyp = tmp_path / "hyp.txt"
    code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), "--data-dir", str(data),
                        "--format", "kaldi", "--nj", "2", "--output", str(hyp)])  # fmt: skip
    assert code == 0 and out == ""
    decode_dir = tmp_path / "decode"
    code, _, _ = run(["decode", str(setup["model"]), str(data), "--graph", str(setup["graph"]),
                      "--beam", "13", "--acoustic-scale", "0.07", "--out", str(decode_dir)])  # fmt: skip
    assert code == 0
    decoded = read_text_file(decode_dir / "hyp.txt")
    transcribed = read_text_file(hyp)
    assert transcribed == decoded and len(decoded) == 30
    rec = Recognizer.from_dir(setup["bundle"], device="cpu")
    per_file = {utt: rec.transcribe(path).text for utt, path in setup["wavs"].items()}
    assert per_file != decoded  # the stats really are pooled (else this test proves nothing)


def test_library_transcribe_files_on_a_callers_executor_keeps_input_order(setup):
    """asr.batch.transcribe: any executor (here threads), speaker groups, records in input
    order; equal to the recognizer file by file (one file a group without a speaker map)."""
    from concurrent.futures import ThreadPoolExecutor

    from asr.batch.transcribe import TranscribeItem, transcribe_files

    items = [TranscribeItem(u, setup["wavs"][u]) for u in setup["names"]]
    items.append(TranscribeItem("bad", str(setup["inputs"] / "empty.wav")))
    with ThreadPoolExecutor(2) as pool:
        records = list(transcribe_files(setup["bundle"], items, num_jobs=2, executor=pool))
    assert [r["utt_id"] for r in records] == [item.utt_id for item in items]
    assert "error" in records[-1] and "empty.wav" in records[-1]["error"]
    rec = Recognizer.from_dir(setup["bundle"], device="cpu")
    assert [r["text"] for r in records[:-1]] == [rec.transcribe(i.path).text for i in items[:-1]]
    one_speaker = {item.utt_id: "spk" for item in items}
    pooled = list(transcribe_files(setup["bundle"], items[:-1], utt2spk=one_speaker))
    speaker = rec.transcribe_speaker([i.path for i in items[:-1]])
    assert [r["text"] for r in pooled] == [result.text for result in speaker]


def test_summary_has_one_rtf_for_one_job_and_no_nan_when_all_fail(setup):
    path = str(setup["wavs"][setup["names"][0]])
    code, _, err = run(["transcribe", "--model", str(setup["bundle"]), "--nj", "4", path])
    line = err.strip().splitlines()[-1]
    assert code == 0 and line.startswith("asr transcribe: 1 file transcribed, 0 failed; ")
    assert line.count("RTF") == 1 and "per job" not in line and "nan" not in line
    rtf = float(line.rsplit("RTF ", 1)[1])
    assert 0 < rtf < 5
    bad = [str(setup["inputs"] / n) for n in ("empty.wav", "corrupt.wav")]
    code, _, err = run(["transcribe", "--model", str(setup["bundle"]), "--no-progress", *bad])
    line = err.strip().splitlines()[-1]
    assert code == 1 and line == "asr transcribe: 0 files transcribed, 2 failed"


def test_cuda_without_cuda_is_one_line_exit_2(setup, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = str(setup["wavs"][setup["names"][0]])
    code, out, err = run(["transcribe", "--model", str(setup["bundle"]), "--device", "cuda", path])
    assert code == 2 and out == ""
    assert err.startswith("asr transcribe: error: device 'cuda': ") and err.count("\n") == 1


def _json_words(setup, path) -> list[dict]:
    code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), "--format", "json", path])
    assert code == 0
    return json.loads(out)["words"]


def test_srt_and_vtt_subtitles_parse_and_equal_the_json_words(setup, tmp_path):
    """--format srt|vtt: files the `srt` and `webvtt-py` parsers accept, whose cue texts joined
    are the JSON words, cue times the words' boundaries, split at pauses > 0.5 s."""
    import srt
    import webvtt

    inputs = [str(setup["inputs"] / "long.wav"), str(setup["wavs"][setup["names"][0]])]
    for path in inputs:
        words = _json_words(setup, path)
        assert len(words) >= 8
        code, out, _ = run(["transcribe", "--model", str(setup["bundle"]), "--format", "srt",
                            path])  # fmt: skip
        cues = list(srt.parse(out))
        assert code == 0 and cues
        assert " ".join(c.content for c in cues) == " ".join(w["word"] for w in words)
        starts = {round(w["start"], 3) for w in words}
        ends = {round(w["end"], 3) for w in words}
        for cue in cues:
            assert round(cue.start.total_seconds(), 3) in starts
            assert round(cue.end.total_seconds(), 3) in ends
            assert cue.end - cue.start <= srt.timedelta(seconds=5) or " " not in cue.content
        assert cues[0].start.total_seconds() == pytest.approx(words[0]["start"], abs=1e-3)
        pauses = [b["start"] - a["end"] for a, b in zip(words, words[1:], strict=False)]
        assert len(cues) >= 1 + sum(p > 0.5 for p in pauses)
        out_file = tmp_path / "sub.vtt"
        code, _, _ = run(["transcribe", "--model", str(setup["bundle"]), "--format", "vtt",
                          "--output", str(out_file), path])  # fmt: skip
        captions = webvtt.read(str(out_file)).captions
        assert code == 0 and [c.text for c in captions] == [c.content for c in cues]
    subs = tmp_path / "subs"
    code, _, _ = run(["transcribe", "--model", str(setup["bundle"]), "--format", "srt",
                      "--output-dir", str(subs), "--no-progress", *inputs])  # fmt: skip
    assert code == 0 and sorted(p.name for p in subs.iterdir()) == sorted(
        f"{Path(p).stem}.srt" for p in inputs
    )
    code, _, err = run(["transcribe", "--model", str(setup["bundle"]), "--format", "srt",
                        *inputs])  # fmt: skip
    assert code == 2 and "needs --output-dir" in err


def test_scoring_file_stem_ids_says_why_and_what_to_do(setup, tmp_path):
    """`asr transcribe FILES` names utterances by file stem; scoring that against the data
    dir's text explains the mismatch and points at --data-dir."""
    data = setup["test"]
    files = [str(setup["wavs"][n]) for n in setup["names"][:2]]
    hyp = tmp_path / "hyp.txt"
    code, _, _ = run(["transcribe", "--model", str(setup["bundle"]), "--format", "kaldi",
                      "--output", str(hyp), "--no-progress", *files])  # fmt: skip
    assert code == 0
    code, _, err = run(["score", str(data / "text"), str(hyp)])
    assert code == 2 and err.count("\n") == 1
    assert "2 hypothesis utterance(s) have no reference" in err
    assert "look like file stems" in err and f"--data-dir {data}" in err
    stem = Path(files[0]).stem
    assert f"{stem!r} is utterance {setup['names'][0]!r}" in err
    (tmp_path / "text").write_text("other1 YES\n")  # no wav.scp beside it: the general advice
    code, _, err = run(["score", str(tmp_path / "text"), str(hyp)])
    assert code == 2 and "--data-dir DIR" in err and "file stem" in err
