"""Scenario a) of ``server_faults.py``: malformed streams and calls, round-robin over 22 kinds,
each with the status it must get, and the tally of what they got."""

from __future__ import annotations

import numpy as np
from faults_common import EXHAUSTED, INVALID, OK, OUT_OF_RANGE, Case, FaultPlan
from server_load import LINEAR16, Clip, audio_request, config_request, pb, pcm16, stream_requests

# ---- requests as bytes


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: int | bytes) -> bytes:
    """One protobuf field: a varint (int payload) or length-delimited (bytes payload)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _recognize(content: bytes, **config) -> bytes:
    return pb.RecognizeRequest(
        config=pb.RecognitionConfig(**config), audio=pb.RecognitionAudio(content=content)
    ).SerializeToString()


def _extreme_pcm(rng: np.random.Generator, num_samples: int, clip: Clip) -> bytes:
    kind = int(rng.integers(6))
    if kind == 0:  # int16 min/max square wave of a random period
        half = int(rng.integers(1, 200))
        values = np.where((np.arange(num_samples) // half) % 2, 32767, -32768)
    elif kind == 1:
        values = np.where(np.arange(num_samples) % 2, 32767, -32768)
    elif kind == 2:
        values = np.full(num_samples, -32768 if rng.random() < 0.5 else 32767)
    elif kind == 3:
        values = rng.integers(-32768, 32768, num_samples)
    elif kind == 4:  # real speech driven far into clipping
        speech = np.frombuffer(clip.pcm, "<i2").astype(np.int64) * 64
        values = np.resize(np.clip(speech, -32768, 32767), num_samples)
    else:
        values = np.zeros(num_samples)
        values[rng.integers(0, num_samples, 20)] = -32768
    return values.astype("<i2").tobytes()


def malformed_cases(plan: FaultPlan, clips: list[Clip]) -> list[Case]:
    """``plan.malformed`` cases, round-robin over the kinds below (deterministic in the seed)."""
    from asr.audio import resample

    rng = np.random.default_rng(plan.seed)
    rate = clips[0].sampling_rate
    big = plan.max_message_bytes
    enc = pb.RecognitionConfig.AudioEncoding

    def clip() -> Clip:
        return clips[int(rng.integers(len(clips)))]

    def garbage(size: int) -> bytes:
        return rng.integers(0, 256, size, dtype=np.uint8).tobytes()

    def silence(seconds: float) -> bytes:
        return b"\0\0" * int(round(seconds * rate))

    def garbage_first():
        return [garbage(int(rng.integers(1, 4096)))], INVALID

    def garbage_after_audio():
        chunks = clip().chunks()[: int(rng.integers(0, 6))]
        # 0x0f: field 1 with wire type 7, which does not exist: never parses
        return [config_request(rate), *map(audio_request, chunks), b"\x0f" + garbage(50)], INVALID

    def empty_first_request():
        return [b"", *stream_requests(rate, clip().pcm)], INVALID

    def audio_before_config():
        chunks = list(map(audio_request, clip().chunks()))
        if rng.random() < 0.5:  # one message, config then audio: the oneof's last field wins
            return [config_request(rate) + chunks[0], *chunks[1:]], INVALID
        return [chunks[0], config_request(rate), *chunks[1:]], INVALID

    def second_config():
        requests = stream_requests(rate, clip().pcm)
        requests.insert(int(rng.integers(1, len(requests) + 1)), config_request(rate))
        return requests, INVALID

    def odd_length_audio():
        requests = stream_requests(rate, clip().pcm)
        odd = audio_request(silence(0.05) + b"\0")
        requests.insert(int(rng.integers(1, len(requests) + 1)), odd)
        return requests, INVALID

    def unsupported_encoding():
        names = [n for n in enc.keys() if n != "LINEAR16"]  # noqa: SIM118 (proto enum)
        code = 99 if rng.random() < 0.1 else enc.Value(names[int(rng.integers(len(names)))])
        return stream_requests(rate, clip().pcm, encoding=code), INVALID

    def bad_sample_rate():
        bad = [0, 1, 4000, 7999, 48001, 96000, 192000, -8000, 2**31 - 1, -(2**31)]
        return stream_requests(int(bad[int(rng.integers(len(bad)))]), clip().pcm), INVALID

    def bad_config_field():
        pcm, k = clip().pcm, int(rng.integers(7))
        if k == 6:  # Google's speech_contexts (6), which we do not declare: an unknown field
            first = config_request(rate) + _field(1, _field(1, _field(6, b"")))
            return [first, *map(audio_request, Clip(pcm, rate).chunks())], INVALID
        if k == 5:
            empty = pb.StreamingRecognizeRequest(streaming_config=pb.StreamingRecognitionConfig())
            return [empty.SerializeToString()], INVALID
        fields = [
            {"audio_channel_count": 2}, {"max_alternatives": 31}, {"model": "no-such-model"},
            {"enable_automatic_punctuation": True}, {"alternative_language_codes": ["de-DE"]},
        ][k]  # fmt: skip
        return stream_requests(rate, pcm, **fields), INVALID

    def silence_over_max_duration():
        pcm = silence(plan.max_stream_s + float(rng.uniform(0.01, 1.0)))
        return stream_requests(rate, pcm, chunk_s=1.0), OUT_OF_RANGE

    def oversized_audio_message():
        size = big + 2 * int(rng.integers(1, 32768))
        return [config_request(rate), audio_request(b"\0" * size)], EXHAUSTED

    def oversized_config_message():
        return [config_request(rate, language_code="x" * (big + 16))], EXHAUSTED

    def recognize_garbage():
        return [garbage(int(rng.integers(1, 4096)))], INVALID

    def recognize_invalid():
        pcm, k = clip().pcm, int(rng.integers(4))
        request = [
            _recognize(pcm + b"\0", encoding=LINEAR16, sample_rate_hertz=rate),
            pb.RecognizeRequest(audio=pb.RecognitionAudio(content=pcm)).SerializeToString(),
            pb.RecognizeRequest(
                config=pb.RecognitionConfig(encoding=LINEAR16, sample_rate_hertz=rate),
                audio=pb.RecognitionAudio(uri="gs://bucket/a.raw"),
            ).SerializeToString(),
            _recognize(pcm, encoding=enc.FLAC, sample_rate_hertz=rate),
        ][k]
        return [request], INVALID

    def recognize_over_max_duration():
        pcm = silence(plan.max_stream_s + float(rng.uniform(0.1, 1.0)))
        return [_recognize(pcm, encoding=LINEAR16, sample_rate_hertz=rate)], OUT_OF_RANGE

    def recognize_oversized():
        pcm = b"\0" * (big + 2 * int(rng.integers(1, 32768)))
        return [_recognize(pcm, encoding=LINEAR16, sample_rate_hertz=rate)], EXHAUSTED

    def reversed_field_order():
        interim = int(rng.integers(2))
        config = _field(3, b"en-US") + _field(2, rate) + _field(1, int(LINEAR16))
        first = _field(1, _field(3, interim) + _field(1, config))
        parsed = pb.StreamingRecognizeRequest.FromString(first).streaming_config
        if parsed.config.sample_rate_hertz != rate or parsed.interim_results != bool(interim):
            raise RuntimeError("the hand-encoded config does not parse as meant")
        chunks = list(map(audio_request, clip().chunks()))
        if rng.random() < 0.5:  # audio then config in one message: the config wins
            first = chunks[0] + first
        return [first, *chunks], OK

    def merged_duplicate_config():
        first = _field(1, _field(1, _field(1, int(LINEAR16)))) + _field(
            1, _field(1, _field(2, rate))
        )
        return [first, *map(audio_request, clip().chunks())], OK

    def extreme_samples():
        pcm = _extreme_pcm(rng, int(rate * rng.uniform(0.3, 2.0)), clip())
        return stream_requests(rate, pcm), OK

    def silence_max_duration():
        return stream_requests(rate, silence(plan.max_stream_s), chunk_s=1.0), OK

    def edge_sample_rates():
        new_rate = int([8000, 11025, 16000, 22050, 44100, 48000][int(rng.integers(6))])
        samples = np.frombuffer(clip().pcm, "<i2").astype(np.float32) / 32768
        pcm = pcm16(resample(samples, orig_rate=rate, new_rate=new_rate))
        return stream_requests(new_rate, pcm), OK

    def no_audio():
        k = int(rng.integers(3))
        empty = [config_request(rate), audio_request(b""), audio_request(b"")]
        return [[], [config_request(rate)], empty][k], OK

    kinds = [
        garbage_first, garbage_after_audio, empty_first_request, audio_before_config,
        second_config, odd_length_audio, unsupported_encoding, bad_sample_rate, bad_config_field,
        silence_over_max_duration, oversized_audio_message, oversized_config_message,
        recognize_garbage, recognize_invalid, recognize_over_max_duration, recognize_oversized,
        reversed_field_order, merged_duplicate_config, extreme_samples, silence_max_duration,
        edge_sample_rates, no_audio,
    ]  # fmt: skip
    cases = []
    for index in range(plan.malformed - plan.realtime_silence):
        make = kinds[index % len(kinds)]
        requests, expected = make()
        unary = make.__name__.startswith("recognize")
        cases.append(Case(make.__name__, tuple(requests), expected, unary=unary))
    for index in range(plan.realtime_silence):  # the maximum duration of silence, at real time
        over = index % 2 == 1
        pcm = silence(plan.max_stream_s + (0.5 if over else 0.0))
        kind = "silence_realtime_over_max" if over else "silence_realtime_max"
        cases.append(
            Case(kind, tuple(stream_requests(rate, pcm)), OUT_OF_RANGE if over else OK, gap_s=0.1)
        )
    return cases


def tally(cases: list[Case], got: list[tuple[str, str]]) -> dict:
    kinds: dict[str, dict] = {}
    wrong = []
    for case, (code, details) in zip(cases, got, strict=True):
        row = kinds.setdefault(case.kind, {"count": 0, "expected": case.expected, "as_expected": 0})
        row["count"] += 1
        if code == case.expected:
            row["as_expected"] += 1
        else:
            wrong.append(f"{case.kind}: expected {case.expected}, got {code}: {details[:160]}")
    as_expected = sum(row["as_expected"] for row in kinds.values())
    return {
        "total": len(cases),
        "as_expected": as_expected,
        "wrong": len(cases) - as_expected,
        "by_kind": kinds,
        "wrong_examples": wrong[:10],
    }
